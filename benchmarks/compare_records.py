"""Compare the figure records (`<id>.json`) of two figure folders, number by number.

Two runs of `modmem reproduce` (two machines, two CPU capabilities, two thread counts, ...) write
`OUT/<preset>/<id>.json` records whose `metrics` hold the numbers a figure plots.  This script walks
the `metrics` of every record present in both folders and prints, per record, how many numeric
leaves it has, how many differ, the largest absolute difference (in the record's own units:
accuracy points, norms, ...) and where it is.

Usage:

    python benchmarks/compare_records.py A/quick B/quick            # one line per record
    python benchmarks/compare_records.py A/quick B/quick -v         # and every differing leaf
    python benchmarks/compare_records.py A/quick B/quick --only p2   # ids starting with p2
    python benchmarks/compare_records.py A/quick B/quick --tol 1e-9  # call |a - b| <= tol equal

A leaf is a number (bool excluded) in the `metrics` tree; lists and dicts are walked, keys and
positions form its path.  Strings that differ and leaves present on one side only are counted as
`other` differences.  Exit status: 0 when no record differs, 1 otherwise.
"""
from __future__ import annotations

import argparse, json, math, sys
from pathlib import Path


def leaves(x, path=()):
    "Yield (path, value) for every leaf of a JSON tree."
    if isinstance(x, dict):
        for k, v in x.items(): yield from leaves(v, path + (str(k),))
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from leaves(v, path + (str(i),))
    else: yield path, x


def is_num(v) -> bool: return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(a: dict, b: dict, tol: float = 0.0) -> dict:
    "Differences between two `metrics` trees: counts, the largest absolute difference and each differing leaf."
    A, B = dict(leaves(a)), dict(leaves(b))
    out = dict(n=0, differ=0, other=0, max_abs=0.0, where=None, diffs=[])
    for p in sorted(set(A) | set(B)):
        if p not in A or p not in B:
            out['other'] += 1; out['diffs'].append((p, A.get(p), B.get(p), None)); continue
        x, y = A[p], B[p]
        if is_num(x) and is_num(y):
            out['n'] += 1
            if math.isnan(x) and math.isnan(y): continue
            d = abs(x - y) if math.isfinite(x) and math.isfinite(y) else (0.0 if x == y else math.inf)
            if d > tol:
                out['differ'] += 1; out['diffs'].append((p, x, y, d))
                if d > out['max_abs']: out['max_abs'], out['where'] = d, p
        elif x != y: out['other'] += 1; out['diffs'].append((p, x, y, None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('a', type=Path, help='first figures folder (e.g. figures/quick)')
    ap.add_argument('b', type=Path, help='second figures folder')
    ap.add_argument('--only', default='', help='compare only record ids starting with this')
    ap.add_argument('--tol', type=float, default=0.0, help='absolute differences up to this count as equal')
    ap.add_argument('-v', '--verbose', action='store_true', help='print every differing leaf')
    args = ap.parse_args(argv)
    ids = lambda d: {f.stem for f in d.glob(f'{args.only}*.json') if f.stem not in ('index', 'provenance')}
    common, only_a, only_b = sorted(ids(args.a) & ids(args.b)), ids(args.a) - ids(args.b), ids(args.b) - ids(args.a)
    print(f"{'record':<16} {'numbers':>7} {'differ':>6} {'other':>5} {'max |a-b|':>10}  where")
    n_diff = 0
    for i in common:
        ra, rb = (json.loads((d / f'{i}.json').read_text()) for d in (args.a, args.b))
        if 'metrics' not in ra or 'metrics' not in rb: continue
        c = compare(ra['metrics'], rb['metrics'], args.tol)
        bad = c['differ'] or c['other']
        n_diff += bool(bad)
        print(f"{i:<16} {c['n']:>7} {c['differ']:>6} {c['other']:>5} {c['max_abs']:>10.4g}  {'/'.join(c['where'] or ())}")
        if args.verbose and bad:
            for p, x, y, d in c['diffs']: print(f"    {'/'.join(p)}: {x!r} vs {y!r}" + ('' if d is None else f"  ({d:.4g})"))
    for side, rest in (('first', only_a), ('second', only_b)):
        if rest: print(f"only in the {side} folder: {', '.join(sorted(rest))}")
    print(f"{n_diff} of {len(common)} records differ")
    return 1 if n_diff else 0


if __name__ == '__main__': sys.exit(main())
