"""The built docs site in a real browser: every page at 1,400 px, as a reader sees it.

`nbdev_docs` builds the site from a copy of the working tree in a temporary folder (as tests/test_docs.py copies it),
then headless Chromium loads every page through tools/screenshots.py's local server (which swaps the CDN MathJax for
Debian's, these machines being offline) and the tests fail on

- a page wider than the window (it scrolls sideways),
- a formula left untypeset: `\\(`/`\\[` or `$...$` in the rendered text, or a TeX error,
- a local link or image that does not answer,
- a code cell shown without output, outside the allow-list in `quiet_by_design`,
- a lesson page taller than `MAX_PAGE_PX` (outside `TALL_BY_DESIGN`): a lesson reads as a tutorial, its helpers' API
  entries and hand-made examples folded under 'API' and 'Details' callouts.

Each test lists every page that fails it, with what failed. They need Quarto (`quarto` on PATH), Chromium and
Debian's MathJax 2 (`apt-get install chromium libjs-mathjax fonts-mathjax`); without them they are skipped, saying which
is missing (CI has neither Quarto nor Chromium). Building takes a few minutes; `MODMEM_SITE=<a built _docs folder>`
checks a site already built instead.

    source /tmp/quarto-offline/env.sh    # Quarto on these machines
    python -m pytest -q tests/test_site.py
"""
import ast, html, html.parser, os, re, shutil, subprocess, sys, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 1000
BUILD_TIMEOUT = 1200  # seconds for nbdev_docs (about 3 minutes on 2 busy cores)


def _tool(name):
    sys.path.insert(0, str(ROOT / 'tools'))
    try: return __import__(name)
    finally: sys.path.remove(str(ROOT / 'tools'))


shots = _tool('screenshots')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
MATHJAX = Path(shots.MATHJAX_DIR)


def _missing() -> str:
    "What this machine lacks to run these tests ('' when nothing)."
    need = [] if os.environ.get('MODMEM_SITE') or shutil.which('quarto') else ['Quarto (`quarto` on PATH)']
    if not CHROMIUM: need.append('Chromium')
    if not (MATHJAX / 'MathJax.js').exists(): need.append(f'MathJax 2 in {MATHJAX} (libjs-mathjax)')
    return ', '.join(need)


@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    "The built site: $MODMEM_SITE, or `nbdev_docs` run on a copy of the working tree (skipped where the tools are missing)."
    if _missing(): pytest.skip(f'the browser test needs {_missing()}')
    if os.environ.get('MODMEM_SITE'):
        docs = Path(os.environ['MODMEM_SITE'])
        assert (docs / 'index.html').exists(), f'MODMEM_SITE={docs} holds no built site'
        return docs
    sys.path.insert(0, str(ROOT / 'tests'))
    try: from test_docs import _copy_worktree
    finally: sys.path.remove(str(ROOT / 'tests'))
    proj = tmp_path_factory.mktemp('site') / 'proj'
    _copy_worktree(proj)
    env = {**os.environ, 'PYTHONPATH': str(proj), 'MPLBACKEND': 'Agg'}
    r = subprocess.run([str(Path(sys.executable).parent / 'nbdev_docs')], cwd=proj, env=env, capture_output=True,
                       text=True, timeout=BUILD_TIMEOUT)
    assert r.returncode == 0 and (proj / '_docs' / 'index.html').exists(), \
        f'nbdev_docs failed ({r.returncode}):\n{(r.stdout + r.stderr)[-5000:]}'
    return proj / '_docs'


@pytest.fixture(scope='module')
def pages(site) -> dict:
    "{page: its DOM after Chromium rendered it at 1,400 px} for every page of the site."
    srv, base = shots.serve(site.resolve(), MATHJAX.resolve())
    try:
        out = {}
        for f in sorted(site.glob('*.html')):
            dom = shots.chromium(CHROMIUM, base + f.name, '--dump-dom', width=WIDTH, height=HEIGHT)
            out[f.name] = dom
        yield out
    finally:
        srv.shutdown()


@pytest.fixture(scope='module')
def built(site) -> dict:
    "{page: its HTML as built} for every page of the site."
    return {f.name: f.read_text(encoding='utf-8') for f in sorted(site.glob('*.html'))}


def _report(failures: dict, what: str) -> str:
    return f'{len(failures)} page(s) with {what}:\n' + '\n'.join(f'  {p}: {v}' for p, v in sorted(failures.items()))


def test_site_has_its_pages(pages):
    "The site has a home page, the figures page and a page per lesson (a clash of names would drop one)."
    lessons = sorted((ROOT / 'nbs').glob('*.ipynb'))
    assert 'index.html' in pages and 'figures.html' in pages
    assert len(pages) >= len(lessons) + 1, f'{len(pages)} pages for {len(lessons)} notebooks and figures.qmd'


def test_no_page_wider_than_the_window(pages):
    "At 1,400 px no page scrolls sideways: its content is no wider than the window."
    bad = {}
    for page, dom in pages.items():
        wide, window = shots.layout(dom)
        if not window: bad[page] = 'the page never reported its width (did it load?)'
        elif wide > window: bad[page] = f'{wide} px wide in a {window} px window'
    assert not bad, _report(bad, 'sideways scrolling')


def test_lesson_figures_not_shrunk(pages):
    "Lesson figures are saved at 2× and shown at half their pixels (100 px per inch: 8 pt text ≈ 11 px), never shrunk further."
    bad = {}
    for page, dom in pages.items():
        if page == 'figures.html': continue   # the figures page links each figure to its full-size file
        small = [f'{n} px shown at {s}' for n, s in shots.figures(dom) if s < 0.49 * n]
        if small: bad[page] = ', '.join(small)
    assert not bad, _report(bad, 'figures shrunk below half their pixels (text under 10 px)')


MAX_PAGE_PX = 8500
TALL_BY_DESIGN = {'figures.html': 'every figure of both papers, grouped by theme',
                  'tour.html': 'the six steps of the story, one large figure each'}


def test_lesson_pages_not_too_long(pages):
    "No lesson page is taller than MAX_PAGE_PX at 1,400 px (its folds closed)."
    bad = {}
    for page, dom in pages.items():
        if page in TALL_BY_DESIGN: continue
        h = shots.height(dom)
        if not h: bad[page] = 'the page never reported its height (did it load?)'
        elif h > MAX_PAGE_PX: bad[page] = f'{h} px tall'
    assert not bad, _report(bad, f'more than {MAX_PAGE_PX} px')


def test_a_link_to_a_folded_entry_opens_its_fold(site, built):
    "A link to an API entry folded in a collapsed callout opens the fold (nbs/fold-links.html): else the reader lands at the top."
    page = 'fourier.html'
    fold = re.search(r'<div id="(callout-\d+)" class="[^"]*callout-collapse[^"]*">(.*?)<section id="([^"]+)"', built[page], re.S)
    assert fold, f'no folded API entry on {page}'
    folds_id, target = fold[1], fold[3]
    srv, base = shots.serve(site.resolve(), MATHJAX.resolve())
    try: dom = shots.chromium(CHROMIUM, f'{base}{page}#{target}', '--dump-dom', width=WIDTH, height=HEIGHT)
    finally: srv.shutdown()
    cls = re.search(rf'<div id="{folds_id}" class="([^"]*)"', dom)
    assert cls and 'show' in cls[1].split(), f'{page}#{target}: its fold {folds_id} stays closed ({cls and cls[1]})'


RAW_DOLLARS = re.compile(r'(?<![\\$])\$(?!\s)[^$\n]{0,200}?[\\^_{}][^$\n]{0,200}?(?<!\s)\$')


def test_every_formula_typeset(pages):
    "No TeX left as text: every formula MathJax typeset, no TeX error, no `\\(`, `\\[` or `$...$` in the text."
    bad = {}
    for page, dom in pages.items():
        m = shots.math_report(dom)
        text = html.unescape(re.sub(r'<[^>]+>', '', re.sub(
            r'<script[^>]*>.*?</script>|<style[^>]*>.*?</style>|<code[^>]*>.*?</code>|<pre[^>]*>.*?</pre>|<title>.*?</title>',
            '', dom, flags=re.S | re.I)))
        dollars = RAW_DOLLARS.findall(text)
        problems = ([f"{m['formulas'] - m['typeset']} of {m['formulas']} formulas not typeset"] if m['typeset'] < m['formulas'] else []) \
            + ([f"{m['errors']} TeX errors"] if m['errors'] else []) + ([f"{m['raw']} raw \\( or \\["] if m['raw'] else []) \
            + ([f"{len(dollars)} raw $...$, e.g. {dollars[0][:60]!r}"] if dollars else [])
        if problems: bad[page] = '; '.join(problems)
    assert not bad, _report(bad, 'untypeset math')


def test_no_broken_local_link(site, pages):
    "Every local href/src of every page (pages, images, anchors' pages, site files) exists in the built site."
    bad, seen = {}, {}
    for page, dom in pages.items():
        p = shots._Refs(); p.feed(dom)
        for ref in p.refs:
            u = urllib.parse.urlsplit(urllib.parse.urljoin('http://site/' + page, ref))
            if u.netloc != 'site' or u.path.startswith('/mathjax/'): continue
            path = urllib.parse.unquote(u.path).lstrip('/') or 'index.html'
            if path not in seen:
                f = site / path
                seen[path] = f.is_file() or (f.is_dir() and (f / 'index.html').is_file())
            if not seen[path]: bad.setdefault(page, []).append(ref)
        if page in bad: bad[page] = ', '.join(sorted(set(bad[page]))[:8]) + (f' (+{len(set(bad[page])) - 8} more)' if len(set(bad[page])) > 8 else '')
    assert not bad, _report(bad, 'broken local links')


class _Cells(html.parser.HTMLParser):
    "The code cells of a Quarto page: [(source, has output)] for each `div.cell` that shows its source."
    def __init__(self):
        super().__init__(); self.cells, self.stack, self.cur = [], [], None

    def handle_starttag(self, tag, attrs):
        cls = (dict(attrs).get('class') or '').split()
        if tag == 'div':
            if self.cur is None and 'cell' in cls:
                self.cur = dict(code=[], out=False, src=False, depth=len(self.stack))
            elif self.cur is not None:
                if any(c.startswith('cell-output') for c in cls): self.cur['out'] = True
                if 'cell-code' in cls or 'sourceCode' in cls and not self.cur['out']: self.cur['src'] = True
            self.stack.append(tag)
        elif self.cur is not None and tag in ('img', 'iframe', 'svg', 'table') and self.cur['src']: self.cur['out'] = True
        if self.cur is not None and tag == 'pre' and 'sourceCode' in cls and not self.cur['src']: self.cur['src'] = True

    def handle_endtag(self, tag):
        if tag != 'div' or not self.stack: return
        self.stack.pop()
        if self.cur is not None and len(self.stack) == self.cur['depth']:
            if self.cur['src']: self.cells.append((''.join(self.cur['code']), self.cur['out']))
            self.cur = None

    def handle_data(self, data):
        if self.cur is not None and self.cur['src'] and not self.cur['out']: self.cur['code'].append(data)


CHECKS = re.compile(r'^(test_\w*|check_\w*|assert\w*)$')   # fastcore.test's test_eq, test_fail, ...; the lessons' check_* validators


def _call_name(node) -> str:
    f = node.func if isinstance(node, ast.Call) else None
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ''


def quiet_by_design(source: str) -> bool:
    """Whether a code cell shows nothing by its nature, so that no output is right. The allow-list, kept short:

    - imports and definitions only (`import`, `def`, `class`, docstrings): nbdev wants imports in cells of their own,
      and a lesson defines a helper it then uses (the cell that uses it must show output);
    - checks: a cell with a check in it (`assert`, `test_eq(...)`, `test_fail(...)`, a `check_*(...)` validator, at
      the top or inside a `for`/`with`/`if`) that does not end in an expression. A passing check prints nothing and
      states in its source the value it checks; the project's rules put one after every example.

    Nothing else: a cell that ends in an expression (`pt`, `tab`, `plot_runs(runs)`: Jupyter shows its value), a
    cell of assignments without a check (`m = train(...)`), a call for its effect (`shutil.rmtree(tmp)`: hide it), or
    source that is not Python (`!modmem --help`, magics) shows output or is a defect: an example whose result the
    reader never sees."""
    try: body = ast.parse(source).body
    except SyntaxError: return False
    def check(s): return isinstance(s, ast.Assert) or isinstance(s, ast.Expr) and bool(CHECKS.match(_call_name(s.value)))
    def has_check(stmts):
        return any(check(x) or isinstance(x, (ast.For, ast.While, ast.With, ast.If, ast.Try)) and has_check(
            x.body + getattr(x, 'orelse', []) + getattr(x, 'finalbody', []) + [y for h in getattr(x, 'handlers', []) for y in h.body])
            for x in stmts)
    defs_only = all(isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    or isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str) for s in body)
    shows = isinstance(body[-1], ast.Expr) and not check(body[-1]) if body else False   # Jupyter displays a last expression
    return bool(body) and (defs_only or has_check(body) and not shows)


def test_every_code_cell_has_output(built):
    "Every code cell the site shows has output (a table, a figure, printed text), outside `quiet_by_design`."
    bad = {}
    for page, text in built.items():
        p = _Cells(); p.feed(text)
        silent = [html.unescape(src).strip() for src, out in p.cells if not out]
        silent = [s for s in silent if s and not quiet_by_design(s)]
        if silent:
            first = ' / '.join(repr(s.splitlines()[0][:70]) for s in silent[:3])
            bad[page] = f'{len(silent)} of {len(p.cells)} code cells without output, e.g. {first}'
    assert not bad, _report(bad, 'code cells without output')


@pytest.mark.parametrize('src,quiet', [
    ('import torch\nfrom modmem.data import ModData', True),
    ('def f(x):\n    "Double."\n    return 2 * x', True),
    ('@dataclass\nclass A:\n    x: int = 0', True),
    ('test_eq(f(2), 4)\nassert f(0) == 0', True),
    ('x = f(3)\ntest_eq(x, 6)', True),      # a check with its set-up
    ('with tempfile.TemporaryDirectory() as d:\n    p = save(d)\n    assert p.exists()', True),
    ('m = train(cfg)', False),                 # an example whose result is never shown
    ('m = train(cfg)\nm.plot()', False),
    ('pt = table(sol)\ntest_eq(len(pt), 3)\npt', False),   # ends in a value Jupyter shows: it must be there
    ('plot_runs(runs)', False),
    ('import torch\nx = torch.ones(3)', False),
    ('!modmem --help', False),
])
def test_quiet_by_design(src, quiet):
    assert quiet_by_design(src) == quiet
