"Reliability v2 (issue 26), the CLI, reproduce options and explorers: every option checked before work, file-system faults, divergence."
import contextlib, errno, io, json, time, tempfile
from pathlib import Path
import pytest
from modmem.cli import main
EXIT_DIVERGED, EXIT_NOT_SAVED = 3, 4  # modmem.cli.EXIT_DIVERGED, EXIT_NOT_SAVED (literal: this file also runs against an older modmem)
import modmem.cli as cli
from modmem.training import TrainResult

TINY = ['train', '--p', '11', '--width', '8', '--steps', '10', '--device', 'cpu', '--quiet']


def run(argv):
    "(exit status, stdout, stderr, seconds) of `modmem ARGV`."
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(argv)
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0


# --- problem 1 (item 5): every option checked before any notebook or benchmark starts
@pytest.mark.parametrize('executor, words', [('tcp://127.0.0.1:1', 'nothing answers at 127.0.0.1:1'),    # modmem.executors.check_executor
                                             ('foo:bar', "'foo:bar' is not a scheduler address"), ('foo', "unknown executor 'foo'"),
                                             ('tcp://:8786', 'is not a scheduler address'), ('tcp://h:99999', 'is not a scheduler address')])
def test_reproduce_executor_checked_first(tmp_path, executor, words):
    rc, out, err, s = run(['reproduce', '--plain', '--only', 'p1_curves', '--out', str(tmp_path / 'f'), '--executor', executor])
    assert rc == 2 and words in err and err.count('\n') == 1 and s < 10, (rc, err, s)
    assert not (tmp_path / 'f').exists()  # nothing started


def test_reproduce_cache_file_refused(tmp_path):
    (tmp_path / 'c').write_text('x')
    rc, out, err, s = run(['reproduce', '--plain', '--only', 'p1_curves', '--out', str(tmp_path / 'f'), '--cache', str(tmp_path / 'c')])
    assert rc == 2 and "--cache" in err and 'is a file' in err and not (tmp_path / 'f').exists()


def test_reproduce_out_under_file_refused(tmp_path):
    (tmp_path / 'c').write_text('x')
    rc, out, err, s = run(['reproduce', '--plain', '--only', 'p1_curves', '--out', str(tmp_path / 'c' / 'f')])
    assert rc == 2 and 'a file' in err


def _read_only(monkeypatch, folder):
    "Make `tempfile.mkstemp` in `folder` fail as on a read-only file system (the tests run as root, who may write anywhere)."
    real = tempfile.mkstemp
    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(Path(folder).resolve()):
            raise OSError(errno.EROFS, 'Read-only file system', str(dir))
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(tempfile, 'mkstemp', mkstemp)


def test_reproduce_read_only_out_refused(tmp_path, monkeypatch):  # problem 2 (item 6)
    _read_only(monkeypatch, tmp_path)
    rc, out, err, s = run(['reproduce', '--plain', '--only', 'p1_curves', '--out', str(tmp_path / 'f')])
    assert rc == 2 and 'not writable' in err and 'Read-only' in err and not (tmp_path / 'f').exists()


@pytest.mark.parametrize('opt', ['--json', '--csv'])
def test_bench_paths_checked_first(tmp_path, opt):
    (tmp_path / 'file').write_text('x')
    for bad, words in [(tmp_path / 'file' / 'b.out', 'is a file'), (tmp_path, 'is a folder')]:
        rc, out, err, s = run(['bench', '--p', '11', '--width', '8', '--device', 'cpu', '--quiet', opt, str(bad)])
        assert rc == 2 and words in err and s < 5 and 'PASS' not in out, (rc, err, s)


BENCH = ['bench', '--p', '11', '--width', '8', '--steps', '1', '--sizes', '1', '--runs', '4', '--compare', '2', '--sequential', '1',
         '--alphas', '0.5', '--min-seconds', '0', '--warmup', '0', '--device', 'cpu', '--quiet']


def test_bench_writes_into_missing_folder(tmp_path):
    rc, out, err, s = run(BENCH + ['--json', str(tmp_path / 'new' / 'b.json'), '--csv', str(tmp_path / 'new2' / 'b.csv')])
    assert rc == 0, err
    assert json.loads((tmp_path / 'new' / 'b.json').read_text())['table'] and (tmp_path / 'new2' / 'b.csv').exists()


def test_bench_full_disk_keeps_table_printed(tmp_path, monkeypatch):
    import modmem.storage
    def full(path, write): raise OSError(errno.ENOSPC, 'No space left on device', str(path))
    monkeypatch.setattr(modmem.storage, 'atomic_write', full)
    rc, out, err, s = run(BENCH + ['--csv', str(tmp_path / 'b.csv')])
    assert rc == 4 and 'model_steps_per_s' in out and 'NOT saved' in err and 'No space left' in err


# --- problem 2 (item 6): a full disk during `modmem train --out`
def test_train_full_disk_prints_results(tmp_path, monkeypatch):
    def full(self, *a, **k): raise OSError(errno.ENOSPC, 'No space left on device', str(tmp_path / 'run'))
    monkeypatch.setattr(TrainResult, 'save', full)
    rc, out, err, s = run(TINY + ['--out', str(tmp_path / 'run')])
    assert rc == EXIT_NOT_SAVED and 'train_acc' in out and 'wrote' not in out
    assert 'NOT saved' in err and 'No space left' in err and not (tmp_path / 'run').exists()
    rc, out, err, s = run(TINY + ['--json', '--out', str(tmp_path / 'run')])
    assert rc == EXIT_NOT_SAVED and json.loads(out.splitlines()[0])['train_acc'] is not None


# --- problem 3 (item 1, CLI side): divergence named, with its step; status 3 when every member diverged
def _diverging(monkeypatch, which, steps=None):
    real = cli.train
    def fake(cfg, **kw):
        r = real(cfg, **kw)
        r.results['diverged'] = [m in which for m in r.results.member]
        if steps is not None: r.results['diverged_step'] = [steps.get(m) for m in r.results.member]
        return r
    monkeypatch.setattr(cli, 'train', fake)


def test_train_all_diverged_exit_status(monkeypatch):
    _diverging(monkeypatch, {0, 1}, {0: 7, 1: 3})
    rc, out, err, s = run(TINY + ['--lr', '0.01', '0.02'])
    assert rc == EXIT_DIVERGED == 3 and 'every member 0 (at step 7), 1 (at step 3) diverged' in err, err
    rc, out, err, s = run(TINY + ['--lr', '0.01', '0.02', '--json'])
    assert rc == 3 and [json.loads(l)['diverged_step'] for l in out.splitlines()] == [7, 3]


def test_train_some_diverged_status_0(monkeypatch):
    _diverging(monkeypatch, {1}, {1: None})
    rc, out, err, s = run(TINY + ['--lr', '0.01', '0.02'])
    assert rc == 0 and 'member(s) 1 diverged' in err and '(at step' not in err and 'diverged' in out


def test_train_nan_divergence_real():
    rc, out, err, s = run(TINY + ['--lr', '1e6', '--optimizer', 'sgd'])
    assert rc == EXIT_DIVERGED and 'every member 0' in err, (rc, err)


def test_train_help_documents_exit_status():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit): main(['train', '--help'])
    assert '3 every member diverged' in ' '.join(buf.getvalue().split())


# --- problem 4 (item 7): the explorers name what they accept
@pytest.fixture(scope='module')
def tiny():
    from modmem.training import TrainConfig, train
    return {p: train(TrainConfig(p=p, width=8, steps=3), device='cpu', progress=False) for p in (11, 13)}


def test_explorers_refuse_clearly(tiny):
    pytest.importorskip('ipywidgets')
    import pandas as pd
    from modmem.training import TrainConfig, train
    from modmem.sweep import SweepResult
    from modmem.explorers import PhaseExplorer, NeuronExplorer, FiltrationExplorer
    r = tiny[11]
    with pytest.raises(TypeError, match=r'pass its \.model'): NeuronExplorer(r)
    with pytest.raises(TypeError, match=r'pass its \.model'): FiltrationExplorer(r, r.data)
    with pytest.raises(TypeError, match='member must be an integer in 0 … 0, got 1.0'): NeuronExplorer(r.model, 1.0)
    with pytest.raises(ValueError, match='member must be in 0 … 0'): NeuronExplorer(r.model, 3)
    with pytest.raises(ValueError, match='data is for p=13, the model for p=11'): FiltrationExplorer(r.model, tiny[13].data)
    with pytest.raises(TypeError, match=r'pass its \.data'): FiltrationExplorer(r.model, r)
    with pytest.raises(ValueError, match='unknown loss'): FiltrationExplorer(r.model, r.data, loss='l1')
    t = train(TrainConfig(p=11, width=8, steps=2, model='transformer'), device='cpu', progress=False)
    with pytest.raises(TypeError, match='EnsembleMLP.*transformer'): NeuronExplorer(t.model)
    empty = SweepResult(grid=pd.DataFrame({'run': [0, 1]}), chunks=[], results=pd.DataFrame(), cache=Path('.'), computed=[],
                        cached=[], seconds=0.0)
    with pytest.raises(ValueError, match='no finished runs'): PhaseExplorer(empty, 'lr')
    with pytest.raises(TypeError, match='reads a SweepResult'): PhaseExplorer(r, 'lr')


# --- problem 5 (item 8): the index marks a figure left by an older run under a failed row
def test_index_marks_older_figure_of_failed_run(tmp_path):
    from modmem.manifest import entry, record_path
    from modmem.index import write_index
    nb = entry('p1-fig01').notebook
    (tmp_path / 'smoke').mkdir()
    (tmp_path / 'smoke' / 'p1-fig01.png').write_bytes(b'\x89PNG old')
    (tmp_path / 'smoke' / 'p1-fig01.json').write_text(json.dumps(dict(id='p1-fig01', file='p1-fig01.png', source_hash='old', metrics={})))
    record_path(tmp_path, 'smoke', nb).parent.mkdir(parents=True)
    record_path(tmp_path, 'smoke', nb).write_text(json.dumps(dict(notebook=nb, status='failed', error='ValueError: boom\nmore')))
    md, page = (p.read_text() for p in write_index(tmp_path, 'smoke'))
    sec = md[md.index('## p1-fig01'):]
    assert sec.index('OLDER one') < sec.index('![p1-fig01]') and 'failed: ValueError: boom' in sec[:sec.index('![p1-fig01]')]
    row = page[page.index('<td>p1-fig01</td>'):]
    assert row.index('OLDER one') < row.index("<img src='p1-fig01.png'")


def test_reproduce_refuses_notebook_without_parameters_cell(tmp_path):
    from modmem.reproduce import reproduce
    ex = tmp_path / 'experiments'; ex.mkdir()
    src = "from pathlib import Path\nPath('cache').mkdir()\n"   # what a notebook's own defaults do: a cache beside itself
    nb = dict(cells=[dict(cell_type='code', metadata={}, execution_count=None, outputs=[], id='a', source=src)],
              metadata={}, nbformat=4, nbformat_minor=5)
    (ex / 'p1_curves.ipynb').write_text(json.dumps(nb))
    t = reproduce('smoke', ['p1_curves'], out=tmp_path / 'figs', experiments=ex, progress=False, runner='plain')
    assert t.status.tolist() == ['failed'] and "no code cell tagged 'parameters'" in t.error[0], t
    assert not (ex / 'cache').exists()


def test_quiet_runs_say_they_are_alive(monkeypatch, tmp_path):
    import modmem
    monkeypatch.setattr(getattr(modmem, 'options', cli), 'HEARTBEAT', 0.1, raising=False)   # modmem.options here; modmem.cli on main
    real = cli.train
    def slow(cfg, **kw): time.sleep(0.45); return real(cfg, **kw)
    monkeypatch.setattr(cli, 'train', slow)
    rc, out, err, s = run(TINY)
    assert rc == 0 and err.count('modmem train: still running after 0:00') >= 2, err
    rc, out, err, s = run(TINY[:-1])   # not quiet: the progress bar is the sign of life
    assert 'still running' not in err
    rc, out, err, s = run(['reproduce', '--quiet', '--list', '--out', str(tmp_path)])   # --quiet is an option of reproduce
    assert rc == 0


@pytest.mark.parametrize('cmd', [TINY[:-3] + ['--device', 'cpu:5'], ['bench', '--device', 'cpu:5'], ['reproduce', '--device', 'cpu:5']])
def test_cpu_index_refused(cmd):
    rc, out, err, s = run(cmd)
    assert rc == 2 and "device 'cpu:5' does not exist" in err and s < 5, err   # modmem.device.check_device (rel-engine)
