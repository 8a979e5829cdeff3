"""Write the docs site's figures page, nbs/figures.qmd, from the manifest and the saved figure records.

Every figure and table of both papers (`modmem.manifest.MANIFEST`, in manifest order) with its status (made at
the `full` or the `quick` preset, or not yet), what the paper claims with it and the verdict of each claim at each
preset (`modmem.claims`, saved in the record), what modmem measured (a few of the record's `metrics`) and the image. The records are figures/{full,quick}/<id>.json as
`modmem reproduce` writes them; `full` wins over `quick`.

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
MAX_METRICS = 8  # leaves of a record's `metrics` shown per figure
GIT_URL = 'https://github.com/modmem/modmem/blob/main'


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
    if isinstance(v, bool) or v is None: return str(v)
    if isinstance(v, float):
        if math.isnan(v): return 'NaN'
        return f'{v:.3g}' if abs(v) < 1e4 else f'{v:.0f}'
    if isinstance(v, list):
        return '[' + ', '.join(_fmt(x) for x in v) + ']' if len(v) <= 6 and all(not isinstance(x, (dict, list)) for x in v) \
            else f'{len(v)} values'
    return str(v)


def _leaves(d, prefix=()):
    "The (path, value) leaves of a nested metrics dict, in order."
    for k, v in d.items():
        if isinstance(v, dict) and v: yield from _leaves(v, prefix + (str(k),))
        else: yield prefix + (str(k),), v


def _cell(s: str) -> str:
    return str(s).replace('|', '\\|').replace('\n', ' ')


def _md(s: str) -> str:
    "Manifest text as Markdown: f^G / f^R as math (a bare ^ would start a superscript)."
    return re.sub(r'(?<![$\w])f\^([GR])(?!\w)', r'$f^\1$', str(s))


def _scalar(v) -> bool: return not isinstance(v, (dict, list)) or (isinstance(v, list) and len(v) <= 6)


def _pivot(d, max_rows: int = 12, max_cols: int = 6) -> str:
    "A dict of rows ({row: {column: value}}, all scalar) as a Markdown table, or '' when `d` is not one."
    if not isinstance(d, dict) or not 2 <= len(d) <= max_rows: return ''
    if not all(isinstance(r, dict) and r and all(_scalar(v) for v in r.values()) for r in d.values()): return ''
    cols = [c for c in dict.fromkeys(c for r in d.values() for c in r) if c != 'run'][:max_cols]
    rows = ['| | ' + ' | '.join(_cell(c) for c in cols) + ' |', '|:--|' + '--:|' * len(cols)]
    rows += [f'| {_cell(k)} | ' + ' | '.join(_cell(_fmt(r[c])) if c in r else '' for c in cols) + ' |' for k, r in d.items()]
    return '\n'.join(rows) + '\n'


def metrics_table(metrics: dict, limit: int = MAX_METRICS) -> str:
    """A few of a record's metrics as Markdown: a table of rows where the metrics are one ({member: {metric: value}});
    otherwise the first `limit` numbers as (metric, value) rows, then the first nested group that is such a table."""
    metrics = metrics or {}
    table = _pivot(metrics)
    if table: return table
    leaves = list(_leaves(metrics))
    if not leaves: return ''
    out = []
    top = [(k, v) for k, v in metrics.items() if _scalar(v)][:limit]
    group = next(((k, t) for k, v in metrics.items() if (t := _pivot(v))), None)
    if top or not group:
        shown = top or [(' · '.join(p), v) for p, v in leaves[:limit]]
        out += ['| measured | value |', '|:--|--:|'] + [f'| {_cell(k)} | {_cell(_fmt(v))} |' for k, v in shown]
        out.append('')
    if group: out += [f'`{group[0]}`:', '', group[1]]
    return '\n'.join(out).rstrip() + '\n'


def _n_shown(metrics: dict, limit: int = MAX_METRICS) -> int:
    "How many of the metric numbers `metrics_table` shows."
    metrics = metrics or {}
    if _pivot(metrics): return sum(min(len([c for c in r if c != 'run']), 6) for r in metrics.values())
    top = [k for k, v in metrics.items() if _scalar(v)][:limit]
    n = len(top) if top else 0
    group = next((v for v in metrics.values() if _pivot(v)), None)
    if group: n += sum(min(len([c for c in r if c != 'run']), 6) for r in group.values())
    return n or min(limit, len(list(_leaves(metrics))))


def csv_table(path: Path, limit: int = 12) -> str:
    "A saved table (CSV) as Markdown."
    with open(path, newline='') as f: rows = list(csv.reader(f))
    if not rows: return ''
    head, body = rows[0], rows[1:limit + 1]
    out = ['| ' + ' | '.join(map(_cell, head)) + ' |', '|' + '---|' * len(head)]
    out += ['| ' + ' | '.join(_cell(x) for x in r) + ' |' for r in body]
    return '\n'.join(out) + '\n'





def _status(e, found) -> str:
    "`full` or `quick` (the best preset it is made at), `not yet` (no notebook makes it) or `not run` (no record)."
    if found: return found[0]
    return 'not yet' if e.notebook is None else 'not run'


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
    data = figures / preset / rec['file']
    if data.suffix == '.csv': return out + [csv_table(data)], None
    tbl = metrics_table(rec.get('metrics', {}))
    if tbl: out.append(tbl)
    n, shown = len(list(_leaves(rec.get('metrics') or {}))), _n_shown(rec.get('metrics'))
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
    return rows + ['']


def render(figures: Path = FIGURES) -> str:
    "The figures page (Quarto markdown) for the manifest and the records under `figures`: a figure made at `full` and at `quick` shows both, side by side."
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
           'The heading says what the paper\'s figure shows, a **note** how modmem\'s version differs or why it is missing; **measured** lists the first '
           'numbers of the record that `modmem reproduce` saved beside the image (all of them are in its JSON file, '
           'with the config, device and wall time). The experiment notebook that makes each figure is linked; '
           '[Figure manifest](07_manifest.ipynb) explains the statuses and [Reproduce](07h_reproduce.ipynb) how to '
           'run them. A figure made at both presets shows both: its numbers at `full`, then at `quick`, and the two images side by side, `full` on the left. The `full` figures come from short GPU '
           'leases ([GPU leases](07j_lease.ipynb): a queue of lease-sized parts) or, for the cheapest notebooks, from a CPU; '
           'each names its device, wall time and git revision.', '',
           '**Claims.** Being made is not being reproduced: under each figure, the one to four things the paper says with it '
           'are checks with a margin chosen from the paper ([Claims](07b_claims.ipynb)), judged on the figure\'s own numbers at '
           'each preset — **holds**, **partly** (the direction holds, the margin does not), **fails**, or **not measurable** '
           '(the preset lacks the quantity). A claim marked *paper scale* needs the paper\'s $p$, widths or steps. '
           'Where a claim fails at `quick`, the figure\'s notebook says why that is believed to be the scale, or that it is not understood.', '',
           f'Status counts: {counts}.', ''] + [f'- **`{p}`**: {counts_text(claim_counts(c))}' for p, c in _verdicts(every).items()] + ['']
    for paper, heading in PAPERS.items():
        entries = [e for e in MANIFEST if e.paper == paper]
        if not entries: continue
        out += [f'## {heading}', '', '| id | figure | status | claims |', '|---|---|---|---|']
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
            if others: line += f' (also makes {", ".join(others)})'
            out += [line, '']
            if e.note: out += [f'**Note:** {_md(e.note)}', '']
            if not f:
                out.append('')
                continue
            both = every[e.id]
            out += claims_block(both)
            blocks = [_measured(e, preset, rec, figures) for preset, rec in both]
            out += [l for text, _ in blocks for l in text]
            images = [img for _, img in blocks if img]
            if len(images) > 1:   # the images side by side, full on the left
                out += ['::::: {.columns}', '']
                for img in images: out += ['::: {.column width="50%"}', '', img, '', ':::', '']
                out += [':::::', '']
            else: out += [l for img in images for l in (img, '')]
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
