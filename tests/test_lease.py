"""The GPU lease queue: it covers the full preset in lease-sized parts; its imports work in an environment shaped like the
GPU machine (no papermill or Jupyter, fastcore only from `.lease/`); a lease's results round-trip through its archives,
the state advances and the next lease resumes; a damaged or foreign archive is refused."""
import json, os, shutil, subprocess, sys, tarfile, textwrap, time
from pathlib import Path
import pytest
import modmem
import modmem.lease as L
from modmem.lease import (lease_queue, next_parts, read_state, write_state, run_lease, ingest, prepare, pack, prune_cache,
                          lease_dir, LeaseError, PART_SECONDS, ORDER)
from modmem.manifest import notebooks
from modmem.sweep import TRAINING_HASH

ROOT = Path(__file__).resolve().parents[1]
# what a bare GPU machine lacks: these must not be needed by anything a lease runs
ABSENT = ('papermill', 'nbclient', 'nbformat', 'ipykernel', 'jupyter_client', 'jupyter_core', 'IPython', 'nbdev', 'execnb',
          'ipywidgets', 'fastcore')


def test_queue_covers_the_full_preset_in_lease_sized_parts():
    q = lease_queue('full')
    assert [p.name for p in q[:4]] == ['checks', 'p1_curves', 'p1_ipr', 'p2_transformer']
    assert {p.notebook for p in q} - {None} == set(notebooks())
    assert all(p.seconds <= PART_SECONDS for p in q)
    for n in notebooks():   # each notebook's parts are numbered 1..n in order, its figures on the last
        ps = [p for p in q if p.notebook == n]
        assert [p.index for p in ps] == list(range(1, len(ps) + 1)) and ps[-1].figures and not any(p.figures for p in ps[:-1])
    assert [p.index for p in q if p.notebook == 'p1_phase_diagrams'] == [1, 2]   # Figs. 3a and 3b: two parts


def _repo(tmp: Path) -> Path:
    "A repository-shaped folder: the experiment notebooks, the device checks, the tests (modmem itself comes from the install)."
    tmp.mkdir(parents=True, exist_ok=True)
    for d in ('experiments', 'benchmarks'): shutil.copytree(ROOT / d, tmp / d)
    return tmp


def _gpu_shaped_env(tmp: Path, root: Path) -> dict:
    "Environment of a process in which ABSENT cannot be imported, except fastcore from `root/.lease/site` (as on a GPU machine)."
    block = tmp / 'block'; block.mkdir()
    (block / 'sitecustomize.py').write_text(textwrap.dedent(f'''
        import sys, importlib.machinery
        ABSENT, SITE = {ABSENT!r}, {str(root / '.lease' / 'site')!r}
        class Block:
            def find_spec(self, name, path=None, target=None):
                top = name.split('.')[0]
                if top not in ABSENT: return None
                if top == 'fastcore' and name == top: return importlib.machinery.PathFinder.find_spec(name, [SITE]) or self._no(name)
                if top == 'fastcore': return None   # its submodules: from the package found in SITE
                self._no(name)
            def _no(self, name): raise ModuleNotFoundError(f"No module named {{name!r}} (not on a GPU machine)", name=name)
        sys.meta_path.insert(0, Block())
    '''))
    pkg = Path(modmem.__file__).parents[1]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(block), str(root / '.lease' / 'site'), str(pkg)]), OMP_NUM_THREADS='1',
                MPLBACKEND='Agg')


def test_a_lease_runs_where_the_gpu_machine_has_nothing_but_its_packages(tmp_path):
    "preflight and a notebook part run with papermill, Jupyter, nbdev and an installed fastcore unimportable; fastcore comes from .lease/."
    root = _repo(tmp_path / 'repo')
    prepare(root, data=[], preset='smoke')
    env = _gpu_shaped_env(tmp_path, root)
    probe = subprocess.run([sys.executable, '-c', 'import fastcore, papermill'], env=env, capture_output=True, text=True)
    assert 'papermill' in probe.stderr and 'not on a GPU machine' in probe.stderr, probe.stderr   # the blocker works
    where = subprocess.run([sys.executable, '-c', 'import fastcore; print(fastcore.__file__)'], env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(root / '.lease' / 'site')), where.stdout + where.stderr
    run = subprocess.run([sys.executable, '-m', 'modmem.lease', 'run', str(tmp_path / 'out'), '--root', str(root), '--preset', 'smoke',
                          '--device', 'cpu', '--only', 'p1_curves', '--seconds', '300'], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    s = json.loads((tmp_path / 'out' / 'lease.json').read_text())
    assert s['preflight']['ok'] and [(p['part'], p['status']) for p in s['parts']] == [('p1_curves', 'done')]
    bench = subprocess.run([sys.executable, '-m', 'modmem.cli', 'bench', '--help'], env=env, capture_output=True, text=True)
    assert bench.returncode == 0 and 'usage: modmem bench' in bench.stdout, bench.stdout + bench.stderr   # python -m modmem.cli works there
    assert (tmp_path / 'out' / 'log.txt').exists() and (tmp_path / 'out' / 'figures.tar.gz').exists()


def test_results_round_trip_and_the_next_lease_resumes(tmp_path):
    "Lease 1 runs one part; its files are ingested into a fresh repository, whose next lease runs only what is left; the cache is pruned once the notebooks finish."
    only = ['p2_transformer', 'p1_ipr']
    a = _repo(tmp_path / 'a')
    s1 = run_lease(tmp_path / 'out1', a, 'smoke', seconds=300, device='cpu', only=only[:1])
    assert [p['status'] for p in s1['parts']] == ['done']
    files = sorted(f.name for f in (tmp_path / 'out1').iterdir())
    assert len(files) <= 8 and sum(f.stat().st_size for f in (tmp_path / 'out1').iterdir()) < 64 * 2 ** 20, files
    b = _repo(tmp_path / 'b')
    r = ingest(tmp_path / 'out1', b)
    assert r['same_training_code'] and r['parts'][0][:2] == ('p2_transformer', 'done') and not r['damaged']
    assert (lease_dir(b, 'smoke') / 'p2-table3.json').exists()
    assert [p.notebook for p in next_parts('smoke', b, only)] == ['p1_ipr']   # the state advanced
    s2 = run_lease(tmp_path / 'out2', b, 'smoke', seconds=300, device='cpu', only=only)
    assert [(p['part'], p['status']) for p in s2['parts']] == [('p1_ipr', 'done')]   # resumed where lease 1 stopped
    assert next_parts('smoke', b, only) == []
    assert len(read_state(b, 'smoke')['leases']) == 2
    c = _repo(tmp_path / 'c')
    ingest(tmp_path / 'out1', c); ingest(tmp_path / 'out2', c)   # here, after both leases
    assert next_parts('smoke', c, only) == [] and len(read_state(c, 'smoke')['leases']) == 2
    assert not list((lease_dir(c, 'smoke') / 'cache').glob('*/done.json'))   # both notebooks finished: nothing left to carry


def test_a_part_that_fails_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    root = _repo(tmp_path / 'r')
    nb = root / 'experiments' / 'p1_ipr.ipynb'
    j = json.loads(nb.read_text())
    j['cells'].append(dict(cell_type='code', id='boom', metadata={}, execution_count=None, outputs=[], source=["raise RuntimeError('boom')"]))
    nb.write_text(json.dumps(j))
    s = run_lease(tmp_path / 'out', root, 'smoke', seconds=300, device='cpu', only=['p2_transformer', 'p1_ipr'])
    assert [(p['part'], p['status']) for p in s['parts']] == [('p1_ipr', 'failed'), ('p2_transformer', 'done')]
    assert 'boom' in s['parts'][0]['error']
    assert 'p1_ipr' not in [p.notebook for p in next_parts('smoke', root)]   # failed by today's source: left out
    assert [p.notebook for p in next_parts('smoke', root, ['p2_transformer', 'p1_ipr'])] == ['p1_ipr']   # unless named


def test_state_marks_a_paused_part_done_only_when_it_made_progress():
    q = lease_queue('full')
    p1, p2 = [p for p in q if p.notebook == 'p1_phase_diagrams']
    st = L._update_state({'parts': {}, 'leases': []}, p1, dict(status='paused', chunks_trained=[], code=TRAINING_HASH), 'full', PART_SECONDS)
    assert st['parts'] == {}
    st = L._update_state(st, p1, dict(status='paused', chunks_trained=['k'], code=TRAINING_HASH), 'full', PART_SECONDS)
    assert st['parts'][p1.name]['status'] == 'done' and p2.name not in st['parts']
    st = L._update_state(st, p2, dict(status='done', chunks_trained=['j'], code=TRAINING_HASH), 'full', PART_SECONDS)
    assert st['parts'][p2.name]['status'] == 'done'


def test_ingest_refuses_an_archive_with_paths_outside_its_folder(tmp_path):
    src = tmp_path / 'src'; src.mkdir()
    (src / 'lease.json').write_text(json.dumps(dict(preset='smoke', parts=[])))
    evil = tmp_path / 'evil.txt'; evil.write_text('x')
    with tarfile.open(src / 'figures.tar.gz', 'w:gz') as t: t.add(evil, arcname='figures/smoke/../../evil.txt')
    with pytest.raises(LeaseError, match='nothing of it is taken'): ingest(src, tmp_path / 'repo')
    assert not list((tmp_path / 'repo').rglob('evil.txt'))


def test_prune_keeps_what_unfinished_notebooks_need(tmp_path):
    d = lease_dir(tmp_path, 'full') / 'cache'
    for key, code in (('a', TRAINING_HASH), ('b', TRAINING_HASH), ('old', 'other code')):
        (d / key).mkdir(parents=True); (d / key / 'done.json').write_text(json.dumps(dict(training_hash=code)))
    q = lease_queue('full')
    last = [p for p in q if p.notebook == 'p1_curves'][-1]
    first = [p for p in q if p.notebook == 'p1_phase_diagrams'][0]
    write_state({'parts': {last.name: dict(status='done', code=TRAINING_HASH, chunks=['a']),
                           first.name: dict(status='done', paused=True, code=TRAINING_HASH, chunks=['b'])}, 'leases': []}, tmp_path)
    assert sorted(prune_cache(tmp_path)) == ['a', 'old']   # a: its only notebook finished; old: other training code; b: still needed
    assert (d / 'b').exists()


def test_the_lease_folder_is_ignored():
    r = subprocess.run(['git', 'check-ignore', '-q', '.lease/site/fastcore/basics.py'], cwd=ROOT)
    if r.returncode == 128: pytest.skip('not a git checkout')
    assert r.returncode == 0, '.lease/ (made by prepare, carried to the GPU) must be git-ignored'


def test_the_device_checks_run_and_bring_back_their_numbers(tmp_path):
    "The checks part at a tiny size on the CPU: every check runs and its numbers come back (a check that writes none fails)."
    root = _repo(tmp_path / 'r')
    (root / 'tests').mkdir()
    r = L.run_checks('cpu', root, small=True)
    assert all(r[k]['ok'] for k in ('sync', 'memory', 'bench')), {k: (v.get('ok'), v.get('error'), v.get('tail', '')[-300:]) for k, v in r.items() if not k.endswith('_data')}
    assert {'sync', 'memory'} <= set(r['checks_data']) and r['bench_data']['table'] and r['bench_data']['ops']


def test_a_part_no_lease_can_move_on_is_blocked(tmp_path):
    "A whole lease in which not even the next chunk fits (a chunk longer than a lease): 'blocked', and left out while the training code stays."
    root = _repo(tmp_path / 'r')
    part = lease_queue('smoke')[1]
    r = L.run_part(part, root, 'smoke', time.time() + L.MARGIN + 0.5, 'cpu', whole_lease=True)
    assert r['status'] == 'blocked' and 'the next takes about' in r['error'], r
    write_state(L._update_state(read_state(root, 'smoke'), part, L._record(part, r, 'cpu'), 'smoke', PART_SECONDS), root, 'smoke')
    assert part.name not in [p.name for p in next_parts('smoke', root)]


def test_the_revision_travels_to_a_machine_without_git(tmp_path, monkeypatch):
    "prepare writes down the revision; on the GPU machine (a working tree without .git) records name it."
    from modmem.experiments import git_revision
    monkeypatch.delenv('MODMEM_GIT_REVISION', raising=False)
    monkeypatch.delenv('MODMEM_DATA', raising=False)
    (tmp_path / '.lease').mkdir(); (tmp_path / '.lease' / 'revision').write_text('abc1234\n')
    assert git_revision(tmp_path) is None   # no git here, nothing recorded yet
    L.carried_data(tmp_path)
    assert git_revision(tmp_path) == 'abc1234'
