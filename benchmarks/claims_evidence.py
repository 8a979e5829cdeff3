"""Is a claim that fails at `quick` a matter of scale? Targeted runs between `quick` and `full`, printed as tables.

Each check takes the `quick` recipe of a figure whose claim fails there and changes the one thing the `full` preset
changes that is believed to matter (steps, batch size, α range, p), on the CPU in a few minutes. The experiment
notebooks cite these tables where they explain a failing claim (issue 23).

    python benchmarks/claims_evidence.py                  # every check
    python benchmarks/claims_evidence.py --only p2_steps  # one of: p2_steps, minibatch, pi_wd0, seeds
    OMP_NUM_THREADS=1 ... --cache DIR                     # sweeps are cached there (default /tmp/modmem-claims-evidence)
"""
import argparse, json, time
from dataclasses import replace
from pathlib import Path
import numpy as np
import pandas as pd
from modmem.claims import spearman
from modmem.filtration import filtration_accuracy_metric
from modmem.phases import add_phases
from modmem.recipes import lookup, study
from modmem.sweep import sweep

ROOT = Path(__file__).resolve().parents[1]


def p2_steps(cache):
    "p2-fig01 (Result 3.1): f's test accuracy against width at the quick recipe's 1000 steps and at 20× more (paper: 200k)."
    base, grid, _ = (lambda r: (r.base, r.grid, r.chunk_size))(lookup('p2_scaling', 'quick'))
    rows = []
    for steps in (1000, 20000):
        b = replace(base, steps=steps, log_every=steps // 10, weight_decay=0.1)
        res = sweep(b, {'noise': [0.2, 0.5], 'width': [9, 33, 129, 257, 513]}, cache=cache, progress=False)
        t = res.results
        for xi, g in t.groupby('noise'):
            g = g.sort_values('width')
            rows.append(dict(steps=steps, noise=xi, **{f'M={w}': round(a, 3) for w, a in zip(g.width, g.test_acc)},
                             spearman=round(spearman(g.width, g.test_acc), 2)))
    return pd.DataFrame(rows)


def minibatch(cache):
    "p1-fig10: inversion share with batch 32 (quick) and with batch 8 for 16000 steps (full: batch 8, 64000 steps at p = 97)."
    s = lookup('minibatch', 'quick')
    rows = []
    for bs, steps, lr in ((32, 3200, 0.01 / 8 ** 0.5), (8, 16000, 0.01 / 32 ** 0.5), (None, 400, 0.01)):
        res = sweep(replace(s.base, batch_size=bs, steps=steps, lr=lr, log_every=steps // 40),
                    {k: v for k, v in s.grid.items() if k in ('train_frac', 'noise')}, cache=cache, progress=False)
        t = add_phases(res.results)
        inv = t.phase.isin(['Partial Inversion', 'Full Inversion']).mean()
        rows.append(dict(batch=bs or 'full', steps=steps, runs=len(t), inversion_share=round(inv, 3),
                         mean_test_acc=round(t.test_acc.mean(), 3), **t.phase.value_counts().to_dict()))
    return pd.DataFrame(rows).fillna(0)


def pi_wd0(cache):
    "p1-fig03a: Partial Inversion at wd 0 for large α, at the paper's p = 97, N = 500, 2000 steps (quick grid: α ≤ 0.9, ξ ≥ 0.2 at p = 47)."
    s = study('weight_decay', 'full')
    res = sweep(replace(s.base, weight_decay=0.0), {'train_frac': [0.8, 0.85, 0.9], 'noise': [0.1, 0.15, 0.2, 0.3]},
                cache=cache, progress=False)
    t = add_phases(res.results)
    return t.pivot_table(index='train_frac', columns='noise', values='phase', aggfunc='first')


def seeds(cache):
    "p2-fig01: spread over 5 seeds of f's and f^G's test accuracy at the quick recipe (1000 steps), widths 129 and 257."
    base = lookup('p2_scaling', 'quick').base
    res = sweep(replace(base, weight_decay=0.1), {'noise': [0.5, 0.8], 'width': [129, 257], 'seed': [0, 1, 2, 3, 4]},
                cache=cache, progress=False, weights=False, final_metrics={'ff': filtration_accuracy_metric(loss=base.loss)})
    t = res.results.astype({'ff_test_acc': float})
    g = t.groupby(['width', 'noise'])
    return pd.DataFrame({f'{c} {s}': 100 * getattr(g[c], s)() for c in ('test_acc', 'ff_test_acc') for s in ('mean', 'std', 'min', 'max')}).round(1)


CHECKS = dict(p2_steps=p2_steps, minibatch=minibatch, pi_wd0=pi_wd0, seeds=seeds)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', nargs='*', choices=list(CHECKS), default=list(CHECKS))
    ap.add_argument('--cache', default='/tmp/modmem-claims-evidence')
    args = ap.parse_args()
    for name in args.only:
        t0 = time.time()
        out = CHECKS[name](args.cache)
        print(f'## {name} ({time.time() - t0:.0f} s): {CHECKS[name].__doc__}\n{out.to_string()}\n', flush=True)
