"The experiment notebooks: every one runs at the smoke preset; reproduce resumes after a kill; the manifest matches the committed figures, which show as stale when other code made them."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
from modmem.manifest import MANIFEST, notebooks, figures_of, figure_status, saved
from modmem.reproduce import reproduce, read_record, index_table, write_index
from modmem.provenance import source_hash
from modmem.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / 'experiments'


def test_every_manifest_notebook_exists():
    missing = [n for n in notebooks() if not (EXPERIMENTS / f'{n}.ipynb').exists()]
    assert not missing, f'experiment notebooks named by the manifest are missing: {missing}'
    extra = sorted(p.stem for p in EXPERIMENTS.glob('*.ipynb') if p.stem not in notebooks())
    assert not extra, f'experiment notebooks not in the manifest: {extra}'


def test_notebooks_have_parameters_cell():
    for n in notebooks():
        nb = json.loads((EXPERIMENTS / f'{n}.ipynb').read_text())
        tagged = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, f'{n}: needs exactly one cell tagged parameters'
        src = ''.join(tagged[0]['source'])
        for name in ('preset', 'out', 'cache', 'executor', 'device'):
            assert f'{name} =' in src, f'{n}: parameters cell lacks {name}'
        assert not any(c.get('outputs') for c in nb['cells'] if c['cell_type'] == 'code'), f'{n}: commit it without outputs'


def _code(n):
    "The code cells of experiment notebook `n` (the parameters cell apart) as parsed modules."
    import ast
    cells = json.loads((EXPERIMENTS / f'{n}.ipynb').read_text())['cells']
    return [ast.parse(''.join(c['source'])) for c in cells
            if c['cell_type'] == 'code' and 'parameters' not in c.get('metadata', {}).get('tags', [])]


def _is_config(v):
    "A config: a non-empty dict, list or tuple display, or a dict(...) or TrainConfig(...) call."
    import ast
    if isinstance(v, ast.Dict): return bool(v.keys)
    if isinstance(v, (ast.List, ast.Tuple)): return bool(v.elts)
    return isinstance(v, ast.Call) and getattr(v.func, 'id', None) in ('dict', 'TrainConfig')


def test_no_helper_or_config_in_two_notebooks():
    "A function, class, or config built from literals or a TrainConfig, bound in two experiment notebooks, belongs in modmem."
    import ast, collections
    where = collections.defaultdict(set)
    for n in notebooks():
        for tree in _code(n):
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)): where[('def', node.name)].add(n)
                elif isinstance(node, ast.Assign) and _is_config(node.value):
                    for t in node.targets:
                        if isinstance(t, ast.Name): where[('config', t.id)].add(n)
    twice = {k: sorted(v) for k, v in where.items() if len(v) > 1}
    assert not twice, f'defined in more than one experiment notebook (move it into modmem): {twice}'


def test_recipe_users_are_the_notebooks_that_use_them():
    "`modmem reproduce` orders notebooks by `recipe_users`: it must name exactly the notebooks that sweep each recipe."
    import ast, collections
    from modmem.recipes import recipe_users
    used = collections.defaultdict(set)
    for n in notebooks():
        for tree in _code(n):
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                    f = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', None)
                    if f in ('sweep_recipe', 'recipe', 'phase_study', 'arch_study'): used[node.args[0].value].add(n)
    declared = recipe_users()
    wrong = {r: dict(declared=sorted(declared.get(r, ())), used=sorted(nbs)) for r, nbs in used.items()
             if set(declared.get(r, ())) != nbs}
    assert not wrong, f'recipes whose declared notebooks differ from those that use them: {wrong}'


def test_study_notes_at_full_are_the_papers():
    "Merging studies into recipes kept both notes: `study(n)` the paper's note on its settings, `recipe(n, 'full')` the registry's."
    from modmem.recipes import study, recipe, studies_table
    notes = {'dropout_curves': '[inferred] α = 0.5, ξ = 0.35', 'bn_gamma': 'paper: "Adam", i.e. AdamW with weight decay 0',
             'forgetting': '', 'norm_curves': '',
             'layernorm': 'post-activation LayerNorm; batch sizes [inferred]: the LayerNorm script was not released',
             'wide_weight_decay': 'N = 10 × 500 = 5000', 'ce_dropout': 'dropout rates [inferred]'}
    assert {n: study(n).note for n in notes} == notes
    assert studies_table().set_index('study').note[list(notes)].to_dict() == notes
    assert {n: recipe(n, 'full').note for n in ('forgetting', 'dropout_curves', 'norm_curves', 'bn_gamma')} == {
        'forgetting': 'paper 1 Fig. 8; quick: p = 71, N = 300, α = 0.6 stand in for p = 97, N = 500, α = 0.5',
        'dropout_curves': 'paper 1 Figs. 4b, 19', 'norm_curves': 'paper 1 Figs. 20-22', 'bn_gamma': 'paper 1 Fig. 5'}


def test_all_experiments_at_smoke(tmp_path):
    "CI runs every experiment notebook at the smoke preset; each saves exactly its manifest figures."
    t = reproduce('smoke', out=tmp_path, experiments=EXPERIMENTS, progress=False)
    failed = t[t.status != 'ok']
    assert failed.empty, failed.to_string()
    idx = index_table(tmp_path, 'smoke')
    made = idx[idx.notebook.notna()]
    assert (made.status == 'made').all(), made[made.status != 'made'][['id', 'status']].to_string()
    recs = [json.loads(f.read_text()) for f in (tmp_path / 'smoke').glob('*.json')]
    assert all(r['source_hash'] == source_hash() for r in recs)
    saved_ids = {p.stem for p in (tmp_path / 'smoke').glob('*.json')}
    assert saved_ids == {e.id for e in MANIFEST if e.notebook}
    assert (tmp_path / 'smoke' / 'index.md').exists() and (tmp_path / 'smoke' / 'index.html').exists()


def _fake(path, name, body):
    cells = [dict(cell_type='code', metadata=dict(tags=['parameters']), execution_count=None, outputs=[], id='p',
                  source="preset = 'smoke'\nout = 'figures'\ncache = None\nexecutor = None\ndevice = None"),
             dict(cell_type='code', metadata={}, execution_count=None, outputs=[], id='b',
                  source="import os, time\nimport matplotlib.pyplot as plt\nfrom modmem.experiments import Experiment\n"
                         f"exp = Experiment({name!r}, preset, out, cache, executor, device)\n{body}\n"
                         "for i in exp.expected:\n    fig, ax = plt.subplots(); ax.plot([0, 1]); exp.save(fig, i)\nexp.finish()")]
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(name='python3', display_name='python3', language='python')),
              nbformat=4, nbformat_minor=5)
    (path / f'{name}.ipynb').write_text(json.dumps(nb))


def test_killed_run_resumes_only_unfinished(tmp_path):
    "Kill `modmem reproduce` while its second notebook runs: the next run skips the first and redoes the second."
    ex = tmp_path / 'experiments'; ex.mkdir()
    _fake(ex, 'p1_curves', '')
    _fake(ex, 'p1_ipr', "time.sleep(float(os.environ.get('FAKE_SLEEP', '0')))")
    out = tmp_path / 'figs'
    exe = Path(sys.executable).parent / 'modmem'
    cmd = [str(exe), 'reproduce', '--preset', 'smoke', '--only', 'p1_curves', 'p1_ipr', '--jobs', '1',
           '--out', str(out), '--experiments', str(ex)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, FAKE_SLEEP='120'), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            rec = read_record(out, 'smoke', 'p1_ipr')
            if rec and rec['status'] == 'running' and (out / 'smoke' / 'logs' / 'p1_ipr.log').stat().st_size > 0: break
            time.sleep(0.5)
        else: pytest.fail('the second notebook never started')
        time.sleep(3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert read_record(out, 'smoke', 'p1_curves')['status'] == 'ok'
    assert read_record(out, 'smoke', 'p1_ipr')['status'] == 'running'
    assert saved(out, 'smoke', 'p1-fig02') is None
    first_fig = (out / 'smoke' / 'p1-fig01.png').stat().st_mtime_ns
    t = reproduce('smoke', ['p1_curves', 'p1_ipr'], out=out, experiments=ex, jobs=1, progress=False)
    assert t.status.tolist() == ['current', 'ok']
    assert (out / 'smoke' / 'p1-fig01.png').stat().st_mtime_ns == first_fig
    assert saved(out, 'smoke', 'p1-fig02') is not None


def test_manifest_matches_committed_figures():
    "Every figure a notebook makes is committed under figures/ at quick (or full), and nothing else is."
    st = figure_status(ROOT / 'figures')
    made = st[st.notebook.notna()]
    # stale (made by other code than today's) is checked against the records in test_committed_figures_stale_or_made
    bad = made[~(made.status.isin(['full', 'quick only']) | ((made.status == 'stale') & made.preset.isin(['quick', 'full'])))]
    assert bad.empty, f'figures without a committed quick/full output: {bad[["id", "status"]].to_string()}'
    ids = {e.id for e in MANIFEST}
    for preset in ('quick', 'full'):
        for f in (ROOT / 'figures' / preset).glob('*.json'):
            if f.name == 'lease.json': continue   # the GPU lease queue's state (modmem.lease)
            assert f.stem in ids, f'{f} is not a manifest figure'
            rec = json.loads(f.read_text())
            assert rec['preset'] == preset and rec['notebook'] == next(e.notebook for e in MANIFEST if e.id == f.stem)


def test_committed_figures_stale_or_made(tmp_path, capsys):
    """Each committed quick figure is 'made' in the index and `--list` when its record's source_hash is today's
    source_hash(), and 'stale' when it differs or is missing (figures made before the field existed)."""
    current = source_hash()
    src = ROOT / 'figures' / 'quick'
    recs = {f.stem: json.loads(f.read_text()) for f in src.glob('*.json')}
    assert recs, 'no committed quick figures'
    want = {i: 'made' if r.get('source_hash') == current else 'stale' for i, r in recs.items()}
    # a copy without local run records (figures/*/runs is not committed) and without the committed index
    shutil.copytree(src, tmp_path / 'quick', ignore=shutil.ignore_patterns('runs', 'logs', 'notebooks', 'index.*'))
    idx = index_table(tmp_path, 'quick').set_index('id')
    st = figure_status(tmp_path).set_index('id')
    md = write_index(tmp_path, 'quick')[0].read_text()
    assert main(['reproduce', '--list', '--out', str(tmp_path)]) == 0
    listed = {l.split()[0]: l for l in capsys.readouterr().out.splitlines()[1:] if l.strip()}
    for i, w in want.items():
        assert idx.loc[i, 'status'] == w, (i, idx.loc[i, 'status'], recs[i].get('source_hash'), current)
        assert st.loc[i, 'status'] == ('quick only' if w == 'made' else 'stale'), (i, st.loc[i, 'status'])
        row = next(l for l in md.splitlines() if l.startswith(f'| {i} |'))
        assert row.split(' | ')[3].startswith(w), row
        assert f'[json]({i}.json)' in row, row
        assert listed[i].split()[2] == ('quick' if w == 'made' else 'stale'), listed[i]
