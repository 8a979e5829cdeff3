"""Fold a lesson's reference material on the docs site, so that the page reads as prose → example → output.

    python tools/fold_api.py            # every lesson in FOLDS
    python tools/fold_api.py nbs/04_pruning.ipynb
    python tools/fold_api.py --check    # exit 1 if a lesson is not folded as FOLDS says (after editing one, say)

In each lesson named in FOLDS:

- every run of exported cells (with the check cells right after them) goes into a collapsed callout titled
  "API: `name`, `name`, …", unless the run defines one of the lesson's `keep` names (its main API stays open);
- each `details` range (first cell matching START, through the first cell matching END, and the checks after it) goes
  into a collapsed callout titled "Details: …" (hand-made examples, long tables);
- the `move` names' API entries go to a "Details" callout at the page's end (explicit `show_doc` cells there stop nbdev
  from adding the entries where the functions are defined).

Only markdown cells (the callout fences) and `show_doc` cells are added: `nbdev_export` writes the same modules. Running
it again gives the same notebook (the old fences are removed first). After a run: `nbdev_clean`. On the site a link to a
folded entry opens its fold (`nbs/fold-links.html`); `tests/test_site.py` fails on a lesson page over 8,500 px.
"""
import argparse, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN = '::: {.callout-note collapse="true" appearance="simple" icon="false"}'
MOVED = '  # folded here from above'
SHOW_DOC_IMPORT = '#| hide\nfrom nbdev.showdoc import show_doc  # folded entries below'

FOLDS = {
    '00_data': dict(keep='UsageError ModularTask split_mask authors_split make_data',
                    move='is_prime n_pairs check_task host_memory check_table_memory check_fraction check_train_rows check_mode'),
    '01_models': dict(keep='EnsembleMLP EnsembleMLP.forward Ensemble'),
    '02g_sweep': dict(keep='sweep SweepResult'),
    '03_fourier': dict(keep='ipr'),
    '03a_filtration': dict(keep='frequency_filtration filtration_accuracy'),
    '04_pruning': dict(keep='pruning_curves', details=[
        (r'^On the analytic solution', r'^#\| column: page', 'pruning curves of the analytic solution (every neuron has IPR 1)'),
        (r'^cl = corrupted_logits\(sol', r'^cl = corrupted_logits\(sol', "the analytic solution's corrupted logits"),
        (r'^fake = pd.DataFrame', r'^rows = pd.DataFrame', '`neurons_needed` and `plot_needed_by_width` on hand-made rows')]),
    '05_phases': dict(keep='classify_phase phases_from_history plot_phase_diagram', details=[
        (r'^Synthetic histories', r'^def synthetic', 'classifying synthetic histories'),
        (r'^What a phase diagram measures', r'^tab = pd.DataFrame', "a phase diagram's numbers on a hand-made table"),
        (r'^### The numbers of an IPR histogram', r'^runs = pd.DataFrame', 'the numbers of IPR histograms')]),
    '06_dynamics': dict(keep='noisy_lead'),
    '07_manifest': dict(keep='manifest_table', details=[
        (r'^status = figure_status', r'^status = figure_status', 'every figure, one row each')]),
    '07c_recipes': dict(keep='recipe'),
    '07e_experiments': dict(),
    '07h_reproduce': dict(keep='reproduce'),
}


def _src(c): return ''.join(c['source'])
def _md(text): return {'cell_type': 'markdown', 'metadata': {}, 'source': text.splitlines(keepends=True)}
def _code(text): return {'cell_type': 'code', 'metadata': {}, 'source': text.splitlines(keepends=True), 'outputs': [],
                         'execution_count': None}


def _kind(c) -> str:
    "E: exported, f: a folded check cell, c: other code, M: markdown."
    s = _src(c)
    if c['cell_type'] != 'code': return 'M'
    if re.match(r'#\|\s*export\b', s): return 'E'
    return 'f' if 'code-fold' in s[:60] else 'c'


def _names(c) -> list:
    "The public names a cell defines, as show_doc names them (`Class.method` for a patched method)."
    out = []
    for m in re.finditer(r'^(@patch[^\n]*\n)?(?:def|class) (\w+)(\(self: *(\w+))?', _src(c), re.M):
        n = m.group(2)
        if n.startswith('_') and not n.startswith('__'): continue
        out.append(f'{m.group(4)}.{n}' if m.group(1) and m.group(4) else n)
    return out


def _unfolded(cells) -> list:
    "The cells without this tool's fences and moved show_doc cells."
    def ours(c):
        s = _src(c)
        return (c['cell_type'] == 'markdown' and (s.startswith(OPEN) or s.strip() == ':::')
                or c['cell_type'] == 'code' and (s == SHOW_DOC_IMPORT or s.endswith(MOVED)))
    return [c for c in cells if not ours(c)]


def fold(cells, keep=(), move=(), details=()) -> list:
    "The cells of a lesson with its folds (see the module's docstring)."
    keep, move = set(keep), list(move)
    cells, out, i = _unfolded(cells), [], 0
    while i < len(cells):
        if _kind(cells[i]) != 'E': out.append(cells[i]); i += 1; continue
        j = i
        while j < len(cells) and _kind(cells[j]) in 'Ef': j += 1
        run, names = cells[i:j], [n for c in cells[i:j] for n in _names(c) if n not in move]
        if names and not keep & set(names):
            out += [_md(OPEN + '\n## API: ' + ', '.join(f'`{n}`' for n in names) + '\n'), *run, _md(':::')]
        else: out += run
        i = j
    for start, end, title in details:
        i = next((k for k, c in enumerate(out) if re.match(start, _src(c))), None)
        if i is None: raise ValueError(f'no cell matches {start!r}')
        j = next((k for k in range(i, len(out)) if re.match(end, _src(out[k]))), None)
        if j is None: raise ValueError(f'no cell after {start!r} matches {end!r}')
        depth = lambda: sum(_src(c).startswith(OPEN) for c in out[i:j + 1]) - sum(_src(c).strip() == ':::' for c in out[i:j + 1])
        while j + 1 < len(out) and (depth() > 0 or _kind(out[j + 1]) == 'f'): j += 1
        out[i:j + 1] = [_md(OPEN + '\n## Details: ' + title + '\n'), *out[i:j + 1], _md(':::')]
    if move:
        end = len(out)
        while end and 'nbdev_export' in _src(out[end - 1]): end -= 1
        title = ', '.join(f'`{n}`' for n in move)
        out[end:end] = ([_md(OPEN + f'\n## Details: the checks and helpers behind it ({title})\n'), _code(SHOW_DOC_IMPORT)]
                        + [_code(f'show_doc({n}){MOVED}') for n in move] + [_md(':::')])
    return out


def _text(cells) -> list:
    return [(c['cell_type'], _src(c)) for c in cells]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', type=Path)
    ap.add_argument('--check', action='store_true', help='change nothing; exit 1 if a lesson is not folded as FOLDS says')
    a = ap.parse_args(argv)
    paths = a.notebooks or [ROOT / 'nbs' / f'{n}.ipynb' for n in FOLDS]
    stale = []
    for p in paths:
        if p.stem not in FOLDS: sys.exit(f'{p.name} has no entry in FOLDS: lessons are {", ".join(FOLDS)}')
        cfg = FOLDS[p.stem]
        nb = json.loads(p.read_text())
        cells = fold(nb['cells'], cfg.get('keep', '').split(), cfg.get('move', '').split(), cfg.get('details', ()))
        if _text(cells) == _text(nb['cells']): continue
        stale.append(p.name)
        if not a.check:
            nb['cells'] = cells
            p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n'); print(f'folded {p.name}')
    if a.check and stale: print('not folded as FOLDS says: ' + ', '.join(stale) + ' (python tools/fold_api.py)'); return 1
    return 0


if __name__ == '__main__': sys.exit(main())
