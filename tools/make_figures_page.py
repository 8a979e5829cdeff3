"""Write the docs site's figures page, nbs/figures.qmd, from the manifest and the saved figure records.

Every figure and table of both papers (`modmem.manifest.MANIFEST`), grouped by theme (`GROUPS`: phases, IPR and
pruning, training curves, architectures, paper 2; a figure's theme is its experiment notebook's) under a contents table
that counts each theme's figures and claims' verdicts; per figure its status (made at the `full` or the `quick` preset,
or not yet), what the paper claims with it and the verdict of each claim at each preset (`modmem.claims`, saved in the
record), what modmem measured (the record's `metrics` as small tables whose headers are the keys in words, see
`measured` and `words`) and the image (a wide one at the page's full width). The records are
figures/{full,quick}/<id>.json as `modmem reproduce` writes them; `full` wins over `quick`.

    python tools/make_figures_page.py            # rewrite nbs/figures.qmd (commit it; tests/test_docs.py checks it is current)
    python tools/make_figures_page.py --check    # fail if nbs/figures.qmd is stale
    python tools/make_figures_page.py --build    # Quarto's pre-render step (nbs/_quarto.yml): page + images into
                                                 # $QUARTO_PROJECT_DIR (_proc/ under nbdev_docs)

The page shows the images from `figimg/<preset>/<id>.png` next to it: Quarto only publishes files inside its project,
and figures/ is outside it, so `--build` copies the PNGs there at every render (nbs/figimg/ is git-ignored).
"""
import csv, json, math, os, re, shutil, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modmem.claims import record_claims, short, counts as claim_counts, counts_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / 'figures'
PAGE = ROOT / 'nbs' / 'figures.qmd'
IMG_DIR = 'figimg'
PRESETS = ('full', 'quick')  # the presets whose figures the page shows, best first
PAPERS = {'p1': 'Paper 1: Doshi, Das, He, Gromov, *To grok or not to grok* (ICLR 2024)',
          'p2': 'Paper 2: Liu, Lu, *Unveiling Memorization–Generalization Coexistence* (2026)'}


def _git_url() -> str:
    "The repository's file address from settings.ini (`git_url`, `branch`): the one place it is set."
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    s = cfg['DEFAULT'] if 'DEFAULT' in cfg else {}
    return f"{s.get('git_url', 'https://github.com/modmem/modmem').rstrip('/')}/blob/{s.get('branch', 'main')}"


GIT_URL = _git_url()


def _all_records(figures: Path = FIGURES) -> dict:
    "{id: [(preset, record), ...]} for every saved figure whose data file exists, the best preset first."
    out = {}
    for preset in PRESETS:
        for f in sorted((figures / preset).glob('*.json')):
            try: rec = json.loads(f.read_text())
            except (OSError, ValueError): continue
            if isinstance(rec, dict) and 'id' in rec and rec.get('file') and (figures / preset / rec['file']).is_file():
                out.setdefault(rec['id'], []).append((preset, rec))
    return out


def _records(figures: Path = FIGURES) -> dict:
    "{id: (preset, record)}: the best preset of each saved figure."
    return {i: recs[0] for i, recs in _all_records(figures).items()}


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None: return {True: 'yes', False: 'no', None: '–'}[v]
    if isinstance(v, float):
        if math.isnan(v): return 'NaN'
        return f'{v:.3g}' if abs(v) < 1e4 else f'{v:.0f}'
    if isinstance(v, list): return ', '.join(_fmt(x) for x in v)
    return str(v)


def _leaves(d, prefix=()):
    "The (path, value) leaves of nested metrics (dicts and lists of dicts), in order."
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        if isinstance(v, dict) and v or isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            yield from _leaves(v, prefix + (str(k),))
        else: yield prefix + (str(k),), v


def _cell(s: str) -> str:
    return str(s).replace('|', '\\|').replace('\n', ' ')


def _md(s: str) -> str:
    "Manifest text as Markdown: f^G / f^R as math (a bare ^ would start a superscript)."
    return re.sub(r'(?<![$\w])f\^([GR])(?!\w)', r'$f^\1$', str(s))


# words of the records' snake_case keys as a reader says them
WORDS = {'acc': 'accuracy', 'ipr': 'IPR', 'mse': 'MSE', 'pct': '%', 'emb': 'embedding', 'ff': 'filtered', 'FF': 'filtered',
         'fG': '$f^G$', 'fR': '$f^R$', 'f^G': '$f^G$', 'f^R': '$f^R$', 'gamma': 'γ', 'xi': 'ξ', 'rho': 'ρ', 'alpha': 'α',
         'bn': 'BN', 'wd': 'wd', 'n': 'number of', 'q90': '90th percentile', 'init': 'at init', 'uvw': 'U, V, W',
         'G': 'G', 'R': 'R', 'spearman': 'Spearman ρ', 'vs': 'vs', 'pos': 'position'}


def words(key) -> str:
    """A record's key as a header a reader reads: 'low_first_corrupted_acc_at_50' → 'low first corrupted accuracy at 50',
    'ipr_below_015' → 'IPR below 0.15', 'gamma_G' → 'γ~G~'; keys already in words ('wd 5 (Partial Inversion)') keep them."""
    s = str(key)
    if '$' in s: return s
    s = re.sub(r'\bgamma_([GR])\b', r'γ~\1~', s)
    s = re.sub(r'(\d)pct(?![a-z])', r'\1 %', re.sub(r'\bxi=', 'ξ=', s))
    out = [WORDS.get(w, re.sub(r'^0(\d+)$', r'0.\1', w)) for w in re.split(r'[_ ]+', s.strip('_ '))]
    return _md(re.sub(r' at$', '', ' '.join(out)).replace(' = ', '=').replace('=', ' = '))


def _scalar(v) -> bool: return not isinstance(v, (dict, list)) or isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 6


def _rows(d) -> bool:
    "Whether `d` is a table: {row: {column: scalar}} or [{column: scalar}, ...] with at least one row."
    rows = list(d.values()) if isinstance(d, dict) else d if isinstance(d, list) else []
    return bool(rows) and all(isinstance(r, dict) and r and all(_scalar(v) for v in r.values()) for r in rows)


MAX_ROWS, MAX_COLS = 12, 7


def _grid(corner: str, rows: list, cols: list, value) -> tuple[str, int]:
    "A Markdown table (row labels on the left, `value(row, col)` in the cells), cut to MAX_ROWS × MAX_COLS; and how many numbers it shows."
    rows, cols = rows[:MAX_ROWS], cols[:MAX_COLS]
    out = [f'| {_cell(corner)} | ' + ' | '.join(_cell(words(c)) for c in cols) + ' |', '|:--|' + '--:|' * len(cols)]
    shown = 0
    for r in rows:
        cells = [value(r, c) for c in cols]
        shown += sum(c is not None for c in cells)
        out.append(f'| {_cell(words(r))} | ' + ' | '.join('' if c is None else _cell(_fmt(c)) for c in cells) + ' |')
    return '\n'.join(out) + '\n', shown


def _table(d, corner: str = '') -> tuple[str, int]:
    "A table-shaped metric (see `_rows`) as Markdown, rows the long way: a table wider than tall is turned."
    if isinstance(d, list):   # a list of records: `run`, or its leading fields up to the first text, name the row
        keys = list(d[0])
        ids = ['run'] if 'run' in keys else keys[:next((i + 1 for i, k in enumerate(keys) if isinstance(d[0][k], str)), 0)]
        names = [' · '.join(str(r.get(k)) if isinstance(r.get(k), str) else f'{words(k)} {_fmt(r.get(k))}' for k in ids)
                 or str(i + 1) for i, r in enumerate(d)]
        names = [f'{x} ({i + 1})' if names.count(x) > 1 else x for i, x in enumerate(names)]
        d = {x: {k: v for k, v in r.items() if k not in ids} for x, r in zip(names, d)}
    cols = [c for c in dict.fromkeys(c for r in d.values() for c in r) if c != 'run']
    rows = list(d)
    if len(cols) > len(rows) and len(cols) > 4:   # a few runs with many numbers: one row per number, one column per run
        return _grid(corner, cols, rows, lambda c, r: d[r].get(c))
    return _grid(corner, rows, cols, lambda r, c: d[r].get(c))


MAX_TABLES = 4


def _split_keys(keys: list):
    """(rows, columns, key of (row, column)) when `keys` read as '<row> <column>' over a grid they mostly fill
    ('f test_acc', 'f^G test_acc', ...: split at the last space; 'add relu test_acc at xi=0.8', 'sub relu ...': at the
    first), else None."""
    if len(keys) < 4: return None
    for last in (True, False):
        parts = [k.rsplit(' ', 1) if last else k.split(' ', 1) for k in keys]
        rows, cols = list(dict.fromkeys(r for r, _ in parts)), list(dict.fromkeys(c for _, c in parts))
        if 2 <= len(rows) and 2 <= len(cols) <= MAX_COLS and len(keys) >= 0.75 * len(rows) * len(cols):
            return rows, cols, {(r, c): k for (r, c), k in zip(parts, keys)}
    return None


def _grids(singles: dict) -> tuple[list, list]:
    "The single numbers whose keys form grids (see `_split_keys`; keys with as many words form a family), and the rest."
    fams = {}
    for k in singles: fams.setdefault(k.count(' '), []).append(k)
    grids, rest = [], []
    for n, keys in fams.items():
        g = _split_keys(keys) if n else None
        if g: grids.append(g)
        else: rest += keys
    return grids, [k for k in singles if k in rest]


def measured(metrics: dict) -> tuple[list[str], int]:
    """A record's metrics as a few small Markdown tables with worded headers: its single numbers as (quantity, value)
    rows; its dicts of numbers over the same keys side by side as columns of one table; its tables
    ({row: {column: value}} or lists of records) each under its name. Returns the Markdown lines and how many numbers they show."""
    metrics, out, n = metrics or {}, [], 0
    if _rows(metrics):
        t, n = _table(metrics)
        return ['::: {.mtable}', '', t, ':::', ''], n
    singles = {k: v for k, v in metrics.items() if _scalar(v)}
    series = {k: v for k, v in metrics.items() if isinstance(v, dict) and v and all(_scalar(x) for x in v.values())}
    tables = [(k, v) for k, v in metrics.items() if k not in series and isinstance(v, (dict, list)) and v and _rows(v)]
    deeper = [(f'{k}, {k2}', v2) for k, v in metrics.items() if isinstance(v, dict) and not _rows(v) and k not in series
              for k2, v2 in v.items() if _rows(v2)]   # {group: {row: {column: value}}}: one table per group
    blocks = []
    grids, rest = _grids(singles)
    if rest:
        t, m = _grid('measured', rest[:MAX_ROWS], ['value'], lambda r, c: singles[r])
        blocks.append(('', t, m))
    for rows, cols, key in grids:   # 'f test_acc', 'f^G test_acc', ...: a row per first part, a column per last
        if len(cols) > len(rows) and len(cols) > 4:   # turned, as `_table` turns a table wider than tall
            t, m = _grid('', cols, rows, lambda c, r: singles[key[r, c]] if (r, c) in key else None)
        else: t, m = _grid('', rows, cols, lambda r, c: singles[key[r, c]] if (r, c) in key else None)
        blocks.append(('', t, m))
    by_keys = {}
    for k, v in series.items(): by_keys.setdefault(tuple(v), []).append(k)
    for keys, names in by_keys.items():
        if len(names) == 1 and len(keys) <= MAX_COLS:   # one series: a row
            t, m = _grid('', [names[0]], list(keys), lambda r, c: series[r][c])
        else:                                           # series over the same keys: one column each
            t, m = _grid('', list(keys), names, lambda r, c: series[c][r])
        blocks.append(('', t, m))
    for name, v in tables + deeper:
        t, m = _table(v)
        blocks.append((words(name), t, m))
    for name, t, m in blocks[:MAX_TABLES + 1]:   # each table in its own block: the page sets them side by side
        out += ['::: {.mtable}', ''] + ([f'*{name}*', ''] if name else []) + [t, ':::', '']
        n += m
    return out, n


def csv_table(path: Path, limit: int = 12) -> str:
    "A saved table (CSV) as Markdown, its headers in words."
    with open(path, newline='') as f: rows = list(csv.reader(f))
    if not rows: return ''
    head, body = rows[0], rows[1:limit + 1]
    out = ['| ' + ' | '.join(_cell(words(h)) for h in head) + ' |', '|' + '---|' * len(head)]
    out += ['| ' + ' | '.join(_cell(x) for x in r) + ' |' for r in body]
    return '\n'.join(out) + '\n'


def _status(e, found) -> str:
    "`full` or `quick` (the best preset it is made at), `not yet` (no notebook makes it) or `not run` (no record)."
    if found: return found[0]
    return 'not yet' if e.notebook is None else 'not run'


def _current_source() -> str:
    from modmem.provenance import source_hash
    return source_hash()


def _measured(e, preset: str, rec: dict, figures: Path) -> tuple[list[str], str | None]:
    "The measured block of figure `e` at `preset` (how it was made, the numbers or the table) and its image's Markdown (None for a table)."
    tr = rec.get('training') or {}
    trained = (f"its notebook's {tr['chunks']} chunk(s) trained in {tr['seconds']:.0f} s on {', '.join(tr['devices'])}"
               if tr.get('chunks') and preset == 'full' else None)
    made = ', '.join(x for x in (rec.get('device'), f"{rec['seconds']:g} s" if isinstance(rec.get('seconds'), (int, float)) else None, trained,
                                  f"modmem {rec['modmem_version']}" if rec.get('modmem_version') else None,
                                  f"git {rec['git_revision']}" if preset == 'full' and rec.get('git_revision') else None,
                                  (rec.get('created') or '')[:10] or None) if x)
    out = [f'**Measured** at `{preset}`' + (f' ({made})' if made else '') + (f': {_md(rec["note"])}' if rec.get('note') else '.'), '']
    if rec.get('source_hash') and rec['source_hash'] != _current_source():
        out += [f"**Stale**: made by modmem code `{rec['source_hash']}`, not today's `{_current_source()}`: the library changed "
                f"since (`modmem reproduce --list` says so too); its notebook is first in the GPU lease queue to be made again.", '']
    data = figures / preset / rec['file']
    if data.suffix == '.csv': return out + [csv_table(data)], None
    tables, shown = measured(rec.get('metrics'))
    out += [':::: {.measured}', ''] + tables + ['::::', '']
    n = len(list(_leaves(rec.get('metrics') or {})))
    if n > shown: out += [f'(and {n - shown} more numbers in `figures/{preset}/{e.id}.json`)', '']
    alt = f'{e.id} ({preset}): {e.title}'.replace('"', "'")
    return out, f'![`{preset}`]({IMG_DIR}/{preset}/{rec["file"]}){{.lightbox fig-alt="{alt}"}}'


def _verdicts(every: dict) -> dict:
    "{preset: [verdict, ...]} over every saved figure's claims, presets in page order."
    out = {}
    for recs in every.values():
        for preset, rec in recs: out.setdefault(preset, []).extend(c['verdict'] for c in record_claims(rec))
    return {p: out[p] for p in PRESETS if p in out}


def _value(c) -> str:
    "A claim's measured value, short: numbers to 3 digits, a trend as its ρ, groups as 'name value' pairs."
    v = c.get('measured')
    if v is None: return 'n/a'
    if isinstance(v, dict):
        if set(v) == {'spearman'}: return f"ρ = {_fmt(v['spearman'])}"
        return '; '.join(f"{k} {_value(dict(measured=x))}" for k, x in v.items())
    if isinstance(v, list): return ' / '.join(map(str, v))
    return _fmt(v)


def claims_block(both) -> list[str]:
    "The claims of a figure as a Markdown table: statement, quantity and margin, then the verdict and value at each preset."
    per = [(p, record_claims(r)) for p, r in both]
    if not per or not per[0][1]: return []
    head = '| claim (*quantity; margin*) | ' + ' | '.join(f'`{p}`' for p, _ in per) + ' |'
    rows = [head, '|:--|' + ':--|' * len(per)]
    for k, c in enumerate(per[0][1]):
        cells = []
        for _, cs in per:
            x = cs[k] if k < len(cs) else None
            cells.append(f"**{x['verdict']}**: {_cell(_value(x))}" if x else '')
        scale = ' *(paper scale)*' if c.get('scale') == 'paper' else ''
        rows.append(f"| {_cell(_md(c['text']))}{scale}<br>*{_cell(_md(c['quantity']))}; {_cell(c['margin'])}* | " + ' | '.join(cells) + ' |')
    return ['::: {.claims}', ''] + rows + ['', ':::', '']


# The page's themes, in order: (heading, anchor, the experiment notebooks whose figures it holds, what it shows).
# A figure goes to the theme of its notebook; paper 2's figures all go to the last one.
GROUPS = (('Phases', 'phases', ('p1_phase_diagrams', 'p1_appendix_diagrams'),
           "Paper 1's phase diagrams over (α, ξ) and the phase tables: which regularization gives which phase."),
          ('IPR and pruning', 'ipr-and-pruning', ('p1_ipr', 'p1_pruning'),
           'Per-neuron IPR (how periodic a neuron is), and what pruning the low- or high-IPR neurons does.'),
          ('Training curves', 'curves', ('p1_curves',),
           'Accuracies and norms against step in each phase, with dropout, BatchNorm, LayerNorm and minibatches.'),
          ('Architectures', 'architectures', ('p1_transformer', 'p1_deep_mlp', 'p1_images'),
           'The same phases in transformers, deeper MLPs and image classifiers.'),
          ('Paper 2', 'paper-2', (),
           "Paper 2's width sweeps, noisy-first dynamics, frequency filtration ($f^G$, $f^R$) and partition."))


def group_of(e) -> str:
    "The anchor of the theme that manifest entry `e` belongs to (see `GROUPS`)."
    if e.paper == 'p2': return 'paper-2'
    return next((a for _, a, nbs, _ in GROUPS if e.notebook in nbs), 'phases' if 'diagram' in (e.notebook or '') else 'curves')


WIDE = 2.4  # an image at least this many times wider than tall takes the page's full width (panels in a row)


def _aspect(path: Path) -> float:
    "Width / height of a PNG (read from its header), 1.5 when it cannot be read."
    try:
        with open(path, 'rb') as f: head = f.read(24)
        w, h = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
        return w / h if head[:8] == b'\x89PNG\r\n\x1a\n' and h else 1.5
    except OSError: return 1.5


def images_block(images: list, figures: Path) -> list[str]:
    """The figure's images ([(preset, file, markdown)]): wide ones each at the page's full width (`column-page`), one
    under the other, so that their labels read without a click; others side by side, `full` on the left."""
    if not images: return []
    wide = max(_aspect(figures / p / f) for p, f, _ in images) >= WIDE
    if wide: return [l for _, _, img in images for l in ('::: {.column-page .figure-wide}', '', img, '', ':::', '')]
    if len(images) == 1:
        p, f, img = images[0]
        return ['::: {.figure-narrow}' if _aspect(figures / p / f) < 1.3 else '::: {.figure-one}', '', img, '', ':::', '']
    out = ['::::: {.columns .column-page}', '']
    for _, _, img in images: out += [f'::: {{.column width="{100 // len(images)}%"}}', '', img, '', ':::', '']
    return out + [':::::', '']


def _group_counts(entries, every, found) -> str:
    "A theme's row in the page's contents: its figures, how many are made at each preset, its claims' verdicts per preset."
    made = {p: sum(any(q == p for q, _ in every.get(e.id, [])) for e in entries) for p in PRESETS}
    made_txt = ', '.join(f'{n} at `{p}`' for p, n in made.items() if n) or 'none'
    ver = {p: [c['verdict'] for e in entries for q, r in every.get(e.id, []) if q == p for c in record_claims(r)] for p in PRESETS}
    return ' | '.join([str(len(entries)), made_txt] + [short(ver[p]) or '–' for p in PRESETS])


def render(figures: Path = FIGURES) -> str:
    """The figures page (Quarto markdown) for the manifest and the records under `figures`: the figures grouped by
    theme (`GROUPS`), a contents table with each theme's claim counts at the top; a figure made at `full` and at
    `quick` shows both."""
    from modmem.manifest import MANIFEST, figures_of
    every = _all_records(figures)
    recs = {i: r[0] for i, r in every.items()}
    found = {e.id: recs.get(e.id) for e in MANIFEST}
    n_by = {}
    for e in MANIFEST: n_by[_status(e, found[e.id])] = n_by.get(_status(e, found[e.id]), 0) + 1
    counts = ', '.join(f'{v} {k}' for k, v in sorted(n_by.items(), key=lambda kv: ('full', 'quick', 'not run', 'not yet').index(kv[0])))
    out = ['---', 'title: Figures', 'description: "Every figure and table of both papers: its status, what the paper shows, '
           'what modmem measured, and the image."', 'toc-depth: 2', 'body-classes: figures-page', '---', '',
           '<!-- Generated by tools/make_figures_page.py from the manifest (modmem.manifest) and figures/*/<id>.json: '
           'edit those, not this file. -->', '',
           'Each figure of the two papers as `modmem reproduce` last made it. **Status** says at which preset it is '
           'made: `full` is the paper\'s settings (a GPU job), `quick` a laptop-CPU version with smaller $p$, '
           'widths and grids (the same recipes, so the trends are comparable, the exact numbers not). '
           'The heading says what the paper\'s figure shows, a **note** how modmem\'s version differs or why it is missing; **measured** shows the '
           'numbers of the record that `modmem reproduce` saved beside the image as small tables (all of them are in its JSON file, '
           'with the config, device and wall time). The experiment notebook that makes each figure is linked; '
           '[Figure manifest](07_manifest.ipynb) explains the statuses and [Reproduce](07h_reproduce.ipynb) how to '
           'run them. A figure made at both presets shows both: its numbers at `full`, then at `quick`, and the two images side by side, `full` on the left '
           '(a wide figure, panels in a row, one under the other at the page\'s full width). The `full` figures come from short GPU '
           'leases ([GPU leases](07j_lease.ipynb): a queue of lease-sized parts) or, for the cheapest notebooks, from a CPU; '
           'each names its device, wall time and git revision. The figures are grouped by theme; the table below '
           'counts each theme\'s figures and its claims\' verdicts.', '',
           '**Claims.** Being made is not being reproduced: under each figure, the one to four things the paper says with it '
           'are checks with a margin chosen from the paper ([Claims](07b_claims.ipynb)), judged on the figure\'s own numbers at '
           'each preset — **holds**, **partly** (the direction holds, the margin does not), **fails**, or **not measurable** '
           '(the preset lacks the quantity). A claim marked *paper scale* needs the paper\'s $p$, widths or steps. '
           'Where a claim fails at `quick`, the figure\'s notebook says why that is believed to be the scale, or that it is not understood.', '',
           f'Status counts: {counts}.', ''] + [f'- **`{p}`**: {counts_text(claim_counts(c))}' for p, c in _verdicts(every).items()] + ['']
    groups = {a: [e for e in MANIFEST if group_of(e) == a] for _, a, _, _ in GROUPS}
    out += ['| theme | figures | made | ' + ' | '.join(f'claims at `{p}`' for p in PRESETS) + ' |',
            '|:--|--:|:--|' + ':--|' * len(PRESETS)]
    out += [f'| [{name}](#{a})<br><small>{about}</small> | ' + _group_counts(groups[a], every, found) + ' |'
            for name, a, _, about in GROUPS if groups[a]]
    out.append('')
    for name, a, _, about in GROUPS:
        entries = groups[a]
        if not entries: continue
        papers = sorted({e.paper for e in entries})
        out += [f'## {name} {{#{a}}}', '', about + ' ' + ' · '.join(PAPERS[p] for p in papers) + '.', '',
                '| id | figure | status | claims |', '|:--|:--|:--|:--|']
        out += [f'| [{e.id}](#{e.id}) | {_cell(_md(e.title))} | {_status(e, found[e.id])} | '
                + '<br>'.join(f'`{p}` {short(record_claims(r))}' for p, r in every.get(e.id, [])) + ' |' for e in entries]
        out.append('')
        for e in entries:
            f = found[e.id]
            out += [f'### {e.id}: {_md(e.title)} {{#{e.id}}}', '']
            nb = (f'[`{e.notebook}`]({GIT_URL}/experiments/{e.notebook}.ipynb)' if e.notebook else 'none yet')
            others = [i for i in figures_of(e.notebook) if i != e.id] if e.notebook else []
            made = ' and '.join(f'`{p}`' for p, _ in every.get(e.id, []))
            line = (f'**Status:** made at {made}' if f else f'**Status:** {_status(e, f)}') + f' · **notebook:** {nb}'
            if others: line += f' (also makes {", ".join(f"[{i}](#{i})" for i in others)})'
            out += [line, '']
            if e.note: out += [f'**Note:** {_md(e.note)}', '']
            if not f:
                out.append('')
                continue
            both = every[e.id]
            out += claims_block(both)
            blocks = [_measured(e, preset, rec, figures) for preset, rec in both]
            out += [l for text, _ in blocks for l in text]
            out += images_block([(p, r['file'], img) for (p, r), (_, img) in zip(both, blocks) if img], figures)
    return '\n'.join(out).rstrip() + '\n'


def copy_images(dest: Path, figures: Path = FIGURES) -> int:
    "Copy the images of the saved figures to `dest`/figimg/<preset>/ (what the page shows); return how many."
    n = 0
    for preset, rec in (pr for recs in _all_records(figures).values() for pr in recs):
        src = figures / preset / rec['file']
        if src.suffix != '.png': continue
        d = dest / IMG_DIR / preset / src.name
        d.parent.mkdir(parents=True, exist_ok=True)
        if not d.exists() or d.stat().st_mtime < src.stat().st_mtime or d.stat().st_size != src.stat().st_size:
            shutil.copy2(src, d)
        n += 1
    return n


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    args = sys.argv[1:]
    if '--check' in args:
        if not PAGE.exists() or PAGE.read_text() != render():
            sys.exit('nbs/figures.qmd is stale: run `python tools/make_figures_page.py`')
        print('nbs/figures.qmd is current')
    elif '--build' in args:  # Quarto pre-render: cwd and QUARTO_PROJECT_DIR are the project being rendered
        proj = Path(os.environ.get('QUARTO_PROJECT_DIR', Path.cwd()))
        page, text = proj / 'figures.qmd', render()
        if not page.exists() or page.read_text() != text: page.write_text(text)  # unchanged: no file event for `quarto preview`
        print(f'figures page and {copy_images(proj)} images written to {proj}')
    else:
        PAGE.write_text(render()); print(f'wrote {PAGE}')
