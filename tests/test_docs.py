"""The docs build, offline: everything `nbdev_docs` does before it calls Quarto.

`nbdev_docs` (nbdev 2.4.14) = `_pre_docs` (`refresh_quarto_yml`, `_build_modidx`, `nbdev_sidebar`, then `proc_nbs`:
nbs/ -> _proc/ through nbdev's processors; in each notebook with exports or `show_doc` it executes the exported cells,
the `show_doc` cells and every other cell that holds an import, `#| slow` ones included) ->
`nbdev_readme(chk_time=True)` -> `nbdev_contributing(chk_time=True)` -> `quarto render`.
These tests run that sequence on a copy of the working tree in a temporary folder (so neither _proc/ nor a rewritten
nbs/nbdev.yml or modmem/_modidx.py lands in the repository), with nbdev's Quarto installer and every Quarto call
switched off, and fail on any error or any warning (e.g. "Found cells containing imports and other code").
"""
import hashlib, json, os, re, shutil, subprocess, sys, textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds; about 10 s on 2 CPU cores

# nbdev_docs without Quarto. `_ensure_quarto` would download and install Quarto and pip-install the project;
# `_sprun` is how nbdev runs `quarto render`: here any call to it is an error.
NBDEV_DOCS_WITHOUT_QUARTO = textwrap.dedent('''
    import os, sys
    import nbdev.quarto as q

    def _no_quarto(cmd): raise RuntimeError(f'nbdev wanted to run Quarto: {cmd}')
    q._ensure_quarto = lambda: None
    q._sprun = _no_quarto
    step = sys.argv[1]
    if step == 'all': cache, cfg, path = q._pre_docs(n_workers=int(sys.argv[2]))  # = nbdev_proc_nbs
    else: path = q.get_config().nbs_path
    if step in ('all', 'readme'):
        # nbdev_docs renders README.md from settings.ini's readme_nb when that notebook is newer than README.md
        os.utime(path/'index.ipynb')
        q.nbdev_readme.__wrapped__(path=path, chk_time=True)
        q.nbdev_contributing.__wrapped__(path=path, chk_time=True)
''')


def _worktree_files() -> list:
    "The files a fresh checkout would have (tracked and untracked, not ignored), relative to the repository root."
    try:
        ls = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split('\0')
        return sorted(rel for rel in ls if rel and (ROOT / rel).is_file())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        skip = ('.git', '.venv', '_proc', '_docs', '__pycache__', 'runs', 'build', 'dist', '.ipynb_checkpoints',
                '.pytest_cache', '.lease')
        return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob('*') if p.is_file()
                      and not any(x in skip or x.endswith('.egg-info') for x in p.relative_to(ROOT).parts))


def _digests(root: Path, files) -> dict:
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in files}


def _copy_worktree(dest: Path) -> dict:
    "Copy the working tree as it is now to `dest`; return the copied files' digests."
    files = _worktree_files()
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return _digests(dest, files)


def _run(cwd: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONWARNINGS': 'always::UserWarning'}
    return subprocess.run([sys.executable, '-c', NBDEV_DOCS_WITHOUT_QUARTO, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_docs_processing(tmp_path):
    "nbdev_docs up to Quarto runs on every notebook with no error, no warning and nothing on stderr."
    proj = tmp_path / 'proj'
    copied = _copy_worktree(proj)
    repo_proc = (ROOT / '_proc').exists()
    r = _run(proj, 'all', min(4, os.cpu_count() or 1))
    assert r.returncode == 0, f'nbdev_docs (without Quarto) failed:\n{r.stderr[-6000:]}'
    assert not r.stderr.strip(), f'nbdev_docs (without Quarto) warned or wrote to stderr:\n{r.stderr[-6000:]}'
    assert (ROOT / '_proc').exists() == repo_proc, 'the docs processing wrote _proc/ into the repository'
    nbs = sorted(p.relative_to(proj / 'nbs') for p in (proj / 'nbs').rglob('*.ipynb')
                 if not any(x.startswith(('_', '.')) for x in p.relative_to(proj / 'nbs').parts))
    missing = [str(p) for p in nbs if not (proj / '_proc' / p).exists()]
    assert not missing, f'notebooks that the docs processing did not write to _proc/: {missing}'
    errors = [f'{p}[{i}]' for p in nbs for i, c in enumerate(json.loads((proj / '_proc' / p).read_text())['cells'])
              if any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
    assert not errors, f'cells whose traceback would appear on the docs site: {errors}'
    # nbdev_docs rewrites nbs/nbdev.yml and modmem/_modidx.py (and nbs/sidebar.yml where custom_sidebar is off): it must
    # leave the committed files as they are.
    after = _digests(proj, [rel for rel in copied if (proj / rel).exists()])
    changed = [rel for rel in copied if after.get(rel) != copied[rel]]
    assert not changed, f'files that nbdev_docs would change in the working tree: {changed}'


def test_nbdev_docs_leaves_readme_alone(tmp_path):
    "README.md has one generator, tools/make_readme.py: nbdev_docs/nbdev_prepare must not re-render it through Quarto."
    proj = tmp_path / 'proj'
    (proj / 'nbs').mkdir(parents=True)
    for rel in ('settings.ini', 'README.md', 'nbs/index.ipynb'): shutil.copy2(ROOT / rel, proj / rel)
    before = (proj / 'README.md').read_text()
    r = _run(proj, 'readme')
    assert r.returncode == 0, ('nbdev_docs would re-render README.md through Quarto (settings.ini `readme_nb` must stay '
                               '../README.md, which is never newer than itself, so nbdev_readme(chk_time=True) skips it; '
                               f'README.md comes from tools/make_readme.py):\n{r.stderr[-3000:]}')
    assert (proj / 'README.md').read_text() == before and not r.stderr.strip(), r.stderr


def _tool(name):
    sys.path.insert(0, str(ROOT / 'tools'))
    try: return __import__(name)
    finally: sys.path.remove(str(ROOT / 'tools'))


def test_figures_page_is_current():
    "nbs/figures.qmd is what tools/make_figures_page.py makes now from the manifest and figures/*/<id>.json."
    page = _tool('make_figures_page')
    assert page.PAGE.exists() and page.render() == page.PAGE.read_text(), \
        'nbs/figures.qmd is stale: run `python tools/make_figures_page.py`'


def test_figures_page_shows_every_figure(tmp_path):
    "Every manifest entry has a section; every image the page shows exists, and `--build` copies it where Quarto finds it."
    import re
    from modmem.manifest import MANIFEST
    page = _tool('make_figures_page')
    text = page.render()
    assert all(f'{{#{e.id}}}' in text for e in MANIFEST)
    imgs = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
    assert imgs and all(i.startswith(page.IMG_DIR + '/') for i in imgs)
    assert all((page.FIGURES / i.split('/', 1)[1]).is_file() for i in imgs)
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_figures_page.py'), '--build'], cwd=tmp_path,
                       env={**os.environ, 'QUARTO_PROJECT_DIR': str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'figures.qmd').read_text() == text
    assert all((tmp_path / i).is_file() for i in imgs)


def test_figures_page_in_site():
    "The figures page is in the sidebar, Quarto's pre-render step makes it, and its images stay out of git."
    quarto, sidebar = (ROOT / 'nbs' / '_quarto.yml').read_text(), (ROOT / 'nbs' / 'sidebar.yml').read_text()
    assert 'pre-render: ../tools/make_figures_page.py --build' in quarto
    assert '- figures.qmd' in sidebar
    r = subprocess.run(['git', 'check-ignore', '-q', 'nbs/figimg/quick/x.png'], cwd=ROOT)
    assert r.returncode in (0, 128), 'nbs/figimg/ (the copied images) must be git-ignored'


def test_readme_links_work_on_github():
    "Links to docs pages in nbs/index.ipynb point, in README.md, to the notebooks in nbs/ or to the docs site."
    readme = _tool('make_readme')
    md = readme.relink('[Training](02_training.ipynb), [Figures](figures.qmd#p1-fig01), [x](https://a.b/c.ipynb)')
    assert md == ('[Training](nbs/02_training.ipynb), [Figures](https://modmem.github.io/modmem/figures.html#p1-fig01), '
                  '[x](https://a.b/c.ipynb)')
    import re
    for target in re.findall(r'\]\((nbs/[^)#]+)', (ROOT / 'README.md').read_text()):
        assert (ROOT / target).exists(), f'README.md links to a missing file: {target}'


def test_every_lesson_in_the_sidebar():
    "custom_sidebar is on, so nbdev never adds a new lesson to the sidebar: every notebook in nbs/ must be listed (once)."
    sidebar = (ROOT / 'nbs' / 'sidebar.yml').read_text()
    listed = re.findall(r'^\s*-\s+(\S+\.ipynb)\s*$', sidebar, re.M)
    lessons = sorted(p.name for p in (ROOT / 'nbs').glob('*.ipynb'))
    assert sorted(listed) == lessons, f"missing: {sorted(set(lessons) - set(listed))}, extra or repeated: {sorted(set(listed) - set(lessons)) or [n for n in listed if listed.count(n) > 1]}"


def _readme_example():
    "The README's first-ensemble example: its code blocks, the output shown under them, and the machine it names."
    sec = (ROOT / 'README.md').read_text().split('## A first ensemble in Python', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'^```(python)?\n(.*?)^```', sec, re.M | re.S)
    code = '\n'.join(b for lang, b in blocks[:[lang for lang, _ in blocks].index('')])
    shown = next(b for lang, b in blocks if not lang)
    m = re.search(r'printed with torch ([0-9.]+) on an (\w+) CPU whose torch CPU kernels are (\w+)', sec)
    assert m, "README.md's first example must say on which torch and CPU it printed its table"
    return code, shown, m.groups()


# the example as the notebook runs it: the last line's value shown as IPython shows a DataFrame
RUN_EXAMPLE = textwrap.dedent('''
    import sys, pandas as pd, torch
    from modmem.experiments import cpu_model
    *body, last = sys.stdin.read().strip().splitlines()
    ns = {}
    exec('\\n'.join(body), ns)
    with pd.option_context('display.width', 80, 'display.max_columns', 20):
        print(repr(eval(last, ns)))
    print('@@', torch.__version__.split('+')[0], cpu_model(), torch.backends.cpu.get_cpu_capability())
''')


def test_readme_first_example_prints_what_it_shows():
    """The README's first example prints the table shown under it: digit for digit on the torch, CPU maker and kernel
    capability it names (the thread count does not matter), within a few points elsewhere (other vector instructions
    round differently, and the wd 5 network sits at a phase boundary)."""
    code, shown, (torch_v, maker, cap) = _readme_example()
    r = subprocess.run([sys.executable, '-c', RUN_EXAMPLE], input=code, cwd=ROOT, capture_output=True, text=True,
                       timeout=TIMEOUT, env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr[-3000:]
    printed, machine = r.stdout.rsplit('@@', 1)
    here_v, here_cap = machine.split()[0], machine.split()[-1]
    if (here_v, here_cap) == (torch_v, cap) and maker in machine:
        assert printed == shown, f'README.md shows\n{shown}\nbut the code prints\n{printed}'
    got, want = printed.split(), shown.split()
    assert len(got) == len(want), f'README.md shows\n{shown}\nbut the code prints\n{printed}'
    for g, w in zip(got, want):
        try: assert abs(float(g) - float(w)) <= 0.06, (g, w)
        except ValueError: assert g == w, (g, w)
