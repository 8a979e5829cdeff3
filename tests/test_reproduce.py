"`modmem reproduce` under faults: SIGTERM / Ctrl-C end every process it started, a broken notebook fails alone, bad settings are refused first, progress shows an estimate."
import contextlib, io, json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from modmem.reproduce import reproduce, read_record, index_table, check_settings, _alive
from modmem.provenance import source_hash

pytestmark = pytest.mark.skipif(os.name != 'posix', reason='signals and process groups are POSIX')
MODMEM = Path(sys.executable).parent / 'modmem'

# the slow notebook: a kernel that starts a process-pool worker, writes both pids, then sleeps
SLOW = """import concurrent.futures as cf, multiprocessing as mp
pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'))
job = pool.submit(time.sleep, 300)
open(os.environ['FAKE_PIDS'], 'w').write(' '.join(map(str, [os.getpid(), *pool._processes])))
time.sleep(300)"""


def _fake(path, name, body=''):
    cells = [dict(cell_type='code', metadata=dict(tags=['parameters']), execution_count=None, outputs=[], id='p',
                  source="preset = 'smoke'\nout = 'figures'\ncache = None\nexecutor = None\ndevice = None"),
             dict(cell_type='code', metadata={}, execution_count=None, outputs=[], id='b',
                  source="import os, time\nimport matplotlib.pyplot as plt\nfrom modmem.experiments import Experiment\n"
                         f"exp = Experiment({name!r}, preset, out, cache, executor, device)\n{body}\n"
                         "for i in exp.expected:\n    fig, ax = plt.subplots(); ax.plot([0, 1]); exp.save(fig, i, metrics=dict(test_acc=0.5))\n"
                         "exp.finish()")]
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(name='python3', display_name='python3', language='python')),
              nbformat=4, nbformat_minor=5)
    (path / f'{name}.ipynb').write_text(json.dumps(nb))


def _interrupt(tmp_path, sig, plain):
    "Run `modmem reproduce` on [quick, slow, never reached] notebooks, send `sig` while the slow one runs; return (rc, output, pids)."
    ex, out, pids = tmp_path / 'experiments', tmp_path / 'figs', tmp_path / 'pids'
    ex.mkdir()
    _fake(ex, 'p1_curves'); _fake(ex, 'p1_ipr', SLOW); _fake(ex, 'p2_partition')
    cmd = [str(MODMEM), 'reproduce', '--preset', 'smoke', '--only', 'p1_curves', 'p1_ipr', 'p2_partition', '--jobs', '1',
           '--out', str(out), '--experiments', str(ex)] + (['--plain'] if plain else [])
    proc = subprocess.Popen(cmd, env=dict(os.environ, FAKE_PIDS=str(pids)), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = []
    try:
        deadline = time.time() + 150
        while time.time() < deadline and not (pids.exists() and pids.read_text().split()[1:]):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
        found = [int(p) for p in pids.read_text().split()]
        time.sleep(1)
        t0 = time.time()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
        took = time.time() - t0
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        for p in found:
            if _alive(p): os.kill(p, signal.SIGKILL)
    return proc.returncode, output, found, took, out


@pytest.mark.parametrize('sig,plain', [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=['sigterm-papermill', 'sigint-plain'])
def test_signal_stops_everything_and_records_interrupted(tmp_path, sig, plain):
    rc, output, pids, took, out = _interrupt(tmp_path, sig, plain)
    assert rc != 0, output
    if sig == signal.SIGTERM: assert rc == -signal.SIGTERM, (rc, output)  # it ends as SIGTERM asked, after cleaning up
    assert took < 30, (took, output)
    time.sleep(0.5)
    alive = [p for p in pids if _alive(p)]
    assert not alive, f'kernel/pool worker {alive} outlived reproduce: {output}'
    rec = read_record(out, 'smoke', 'p1_ipr')
    assert rec['status'] == 'interrupted' and signal.Signals(sig).name in rec['error'], rec
    assert read_record(out, 'smoke', 'p1_curves')['status'] == 'ok'
    assert read_record(out, 'smoke', 'p2_partition') is None           # never started: it reads p2_filtration's networks, so it runs last
    idx = index_table(out, 'smoke').set_index('id')
    made_by = json.loads((out / 'smoke' / 'p1-fig01.json').read_text())['source_hash']
    fig01 = json.loads((out / 'smoke' / 'p1-fig01.json').read_text())
    assert fig01['cpu']['mkl_cbwr'] == os.environ.get('MKL_CBWR', 'AVX2'), fig01['cpu']   # notebooks run on MKL's portable code path
    assert [c['id'] for c in fig01['claims']][:1] == ['p1-fig01#1'], fig01['claims']
    assert idx.loc['p1-fig02', 'status'] == 'interrupted'
    assert idx.loc['p1-fig01', 'status'] == ('made' if made_by == source_hash() else 'stale')  # others may edit modmem meanwhile
    assert f'| interrupted: {signal.Signals(sig).name} after ' in (out / 'smoke' / 'index.md').read_text()
    assert 'start    p1_ipr (2/3)' in output and 'interrupted' in output, output


def test_broken_notebook_fails_alone(tmp_path):
    ex, out = tmp_path / 'experiments', tmp_path / 'figs'; ex.mkdir()
    _fake(ex, 'p1_curves')
    text = json.dumps(json.loads((ex / 'p1_curves.ipynb').read_text()))
    (ex / 'p1_ipr.ipynb').write_text(text[:len(text) // 2])           # truncated
    _fake(ex, 'p2_dynamics')
    t = reproduce('smoke', ['p1_curves', 'p1_ipr', 'p2_dynamics'], out=out, experiments=ex, progress=False, runner='plain')
    assert t.status.tolist() == ['ok', 'failed', 'ok']
    assert t.error[1].startswith('p1_ipr.ipynb is not valid notebook JSON'), t.error[1]
    assert index_table(out, 'smoke').set_index('id').loc['p1-fig02', 'status'] == 'failed'


@pytest.mark.parametrize('kw,msg', [
    (dict(executor='proceses'), "unknown executor 'proceses': use None"),
    (dict(executor=''), "unknown executor ''"),
    (dict(device='gpu'), "device 'gpu' is not allowed: use cpu, cuda, cuda:k or mps"),
    (dict(timeout=0), 'timeout 0 is not allowed: use a number of seconds > 0'),
    (dict(timeout=-1.5), 'timeout -1.5 is not allowed'),
    (dict(timeout=float('nan')), 'timeout nan is not allowed'),
] + ([(dict(device='cuda'), "device 'cuda': this torch")] if not torch.cuda.is_available() else []))
def test_bad_settings_refused_before_any_notebook(tmp_path, kw, msg):
    ex, out = tmp_path / 'experiments', tmp_path / 'figs'; ex.mkdir()
    _fake(ex, 'p1_curves')
    with pytest.raises(ValueError, match=None) as e:
        reproduce('smoke', ['p1_curves'], out=out, experiments=ex, progress=False, runner='plain', **kw)
    assert msg in str(e.value), str(e.value)
    assert not out.exists()                                            # nothing started, nothing written
    check_settings('tcp://10.0.0.1:8786', 'cpu', 1)


def test_progress_shows_estimate_from_last_run(tmp_path):
    ex, out = tmp_path / 'experiments', tmp_path / 'figs'; ex.mkdir()
    _fake(ex, 'p1_curves'); _fake(ex, 'p1_ipr')
    reproduce('smoke', ['p1_curves', 'p1_ipr'], out=out, experiments=ex, progress=False, runner='plain', jobs=1)
    with contextlib.redirect_stdout(io.StringIO()) as said:
        reproduce('smoke', ['p1_curves', 'p1_ipr'], out=out, experiments=ex, runner='plain', jobs=1, force=True)
    text = said.getvalue()
    assert 'the last runs of 2 of them took' in text, text
    assert 'start    p1_curves (1/2); its last run took' in text, text
    assert '(1/2 done); about ' in text and ' left' in text, text
    assert '(2/2 done)' in text, text


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='the supervisor needs PR_SET_PDEATHSIG and a subreaper (Linux)')
def test_sigkill_of_reproduce_leaves_no_kernel_or_pool_worker(tmp_path):
    "Even SIGKILL, which reproduce cannot catch, leaves no kernel and no process-pool worker behind."
    ex, out, pids = tmp_path / 'experiments', tmp_path / 'figs', tmp_path / 'pids'; ex.mkdir()
    _fake(ex, 'p1_ipr', SLOW)
    proc = subprocess.Popen([str(MODMEM), 'reproduce', '--preset', 'smoke', '--only', 'p1_ipr', '--out', str(out),
                             '--experiments', str(ex)], env=dict(os.environ, FAKE_PIDS=str(pids)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = []
    try:
        deadline = time.time() + 150
        while time.time() < deadline and not (pids.exists() and pids.read_text().split()[1:]):
            assert proc.poll() is None; time.sleep(0.3)
        found = [int(p) for p in pids.read_text().split()]
        proc.kill(); proc.wait()                       # reproduce alone, not its group
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in found): time.sleep(0.2)
        assert not [p for p in found if _alive(p)], f'{found} outlived a SIGKILLed reproduce'
    finally:
        if proc.poll() is None: proc.kill(); proc.wait()
        for p in found:
            if _alive(p): os.kill(p, signal.SIGKILL)
    assert read_record(out, 'smoke', 'p1_ipr')['status'] == 'running'   # no chance to record: the index says unfinished
    assert index_table(out, 'smoke').set_index('id').loc['p1-fig02', 'status'] == 'unfinished'


def test_timeout_stops_the_notebook_and_its_workers(tmp_path):
    ex, out, pids = tmp_path / 'experiments', tmp_path / 'figs', tmp_path / 'pids'; ex.mkdir()
    _fake(ex, 'p1_ipr', SLOW)
    os.environ['FAKE_PIDS'] = str(pids)
    try: t = reproduce('smoke', ['p1_ipr'], out=out, experiments=ex, progress=False, runner='plain', timeout=15)
    finally: del os.environ['FAKE_PIDS']
    assert t.status.tolist() == ['failed'] and t.error[0] == 'timed out after 15 s', t
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 2 and not [p for p in found if _alive(p)], found


@pytest.fixture
def no_fashion(tmp_path, monkeypatch):
    "Fashion-MNIST nowhere modmem looks: $MODMEM_DATA an empty folder, no $MODMEM_FASHION_MNIST, no Debian folder."
    from modmem.images import DATA_SETS
    monkeypatch.setenv('MODMEM_DATA', str(tmp_path / 'data'))
    monkeypatch.delenv('MODMEM_FASHION_MNIST', raising=False)
    monkeypatch.setitem(DATA_SETS['fashion_mnist'], 'deb_dir', str(tmp_path / 'no-debian'))
    return tmp_path / 'data'


def test_missing_data_refused_before_any_notebook(tmp_path, no_fashion, monkeypatch, capsys):
    import modmem.reproduce as rp
    from modmem.cli import main
    started = []
    monkeypatch.setattr(rp, 'run_notebook', lambda n, *a, **k: started.append(n) or dict(notebook=n, status='ok', seconds=0.0, error=None))
    ex, out = tmp_path / 'experiments', tmp_path / 'figs'; ex.mkdir()
    for n in ('p1_curves', 'p1_images'): _fake(ex, n)
    with pytest.raises(FileNotFoundError) as e:
        reproduce('quick', ['p1_curves', 'p1_images'], out=out, experiments=ex, progress=False, runner='plain')
    msg = str(e.value)
    assert msg.startswith('p1_images needs fashion_mnist at preset quick: Fashion-MNIST (fashion_mnist) is not on this machine'), msg
    assert 'run `modmem data fashion_mnist`' in msg and msg.endswith('Nothing has run.'), msg
    assert not started and not out.exists()
    argv = ['reproduce', '--preset', 'quick', '--only', 'p1_curves', 'p1_images', '--out', str(out), '--experiments', str(ex), '--plain']
    assert main(argv) == 2                                                   # the command: one line, status 2, nothing started
    err = capsys.readouterr().err
    err = ''.join(l for l in err.splitlines(True) if 'the source tree is modified' not in l)   # a developer's checkout may be dirty
    assert err.startswith('modmem: error: p1_images needs fashion_mnist') and err.count('\n') == 1 and not started, err
    reproduce('smoke', ['p1_images'], out=out, experiments=ex, progress=False, runner='plain')   # smoke: the bundled digits
    assert started == ['p1_images']
    (no_fashion / 'fashion_mnist').mkdir(parents=True)                        # the files where modmem reads them: it starts
    for f in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'):
        (no_fashion / 'fashion_mnist' / f'{f}.gz').write_bytes(b'')
    assert main(argv) == 0 and sorted(started[1:]) == ['p1_curves', 'p1_images']
