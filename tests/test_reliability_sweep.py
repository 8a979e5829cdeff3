"Sweeps that leave nothing running, refuse bad options and bad caches before work, and repair damaged cache layouts (issue 26)."
import errno, os, signal, socket, subprocess, sys, textwrap, time, warnings
from pathlib import Path

import pytest

import modmem.sweep as msweep
from modmem.data import UsageError
from modmem.executors import check_executor, check_counts
from modmem.storage import INCOMPLETE, SaveError, atomic_write, write_run
from modmem.store import CacheWarning, check_cache, chunk_done, chunk_problem
from modmem.sweep import sweep
from modmem.training import TrainConfig

BASE = TrainConfig(p=11, width=8, steps=10, log_every=5)
ENV = dict(os.environ, PYTHONPATH=str(Path(msweep.__file__).parents[1]), OMP_NUM_THREADS='1')


# --- processes that end with their parent ------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    "The child process ids of `pid` (from /proc: psutil may not be installed)."
    out = []
    for task in Path(f'/proc/{pid}/task').glob('*'):
        try: out += [int(c) for c in (task / 'children').read_text().split()]
        except OSError: pass
    return out


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for c in _children(todo.pop()): seen.append(c); todo.append(c)
    return seen


def _running(pid: int) -> bool:
    "Whether `pid` exists and is not a zombie (a dead child that PID 1 has not reaped yet)."
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


PARENT = '''
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even where this test runs with SIGINT ignored
from modmem.sweep import sweep
from modmem.training import TrainConfig
if __name__ == '__main__':
    sweep(TrainConfig(p=11, width=8, steps=10**7), dict(lr=[0.01, 0.02]), cache=sys.argv[1], executor='processes',
          n_workers=1, chunk_size=1, progress=False)
'''


@pytest.mark.skipif(not Path('/proc/self/task').exists(), reason='needs Linux /proc')
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_pool_workers_die_with_their_parent(tmp_path, sig):
    script = tmp_path / 'parent.py'; script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / 'cache')], env=ENV)
    try:
        t0, kids = time.time(), []
        while time.time() - t0 < 60 and parent.poll() is None:
            kids = _descendants(parent.pid)
            if any('spawn_main' in Path(f'/proc/{k}/cmdline').read_text(errors='replace') for k in kids if _running(k)): break
            time.sleep(0.2)
        assert kids, 'the sweep started no worker'
        time.sleep(1.0)
        kids = _descendants(parent.pid)
        parent.send_signal(sig); parent.wait(10)
        t0 = time.time()
        while time.time() - t0 < 15 and any(_running(k) for k in kids): time.sleep(0.2)
        left = [k for k in kids if _running(k)]
        assert not left, f"still running after the parent got {sig!r}: {[Path(f'/proc/{k}/cmdline').read_text() for k in left]}"
    finally:
        if parent.poll() is None: parent.kill()
        for k in _descendants(parent.pid): os.kill(k, signal.SIGKILL)


def test_missing_main_guard_is_a_clear_error_not_a_hang(tmp_path):
    script = tmp_path / 'noguard.py'
    script.write_text(PARENT.replace("if __name__ == '__main__':\n    ", '').replace('\n          n_workers', ' n_workers'))
    r = subprocess.run([sys.executable, str(script), str(tmp_path / 'cache')], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "outside `if __name__ == '__main__':`" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'cache').exists()  # refused before any work


# --- options checked at the start --------------------------------------------------------------------------------------

@pytest.mark.parametrize('kw, words', [
    (dict(n_workers=0), 'n_workers must be a whole number >= 1'), (dict(n_workers=-1), 'n_workers must be'),
    (dict(max_chunks=-1), 'max_chunks must be a whole number >= 0'), (dict(threads=0), 'threads must be a whole number >= 1'),
    (dict(threads=2.5), 'threads must be'), (dict(executor='threads'), "unknown executor 'threads'"),
    (dict(executor='foo:bar'), "'foo:bar' is not a scheduler address"),
    (dict(executor='tcp://127.0.0.1:99999'), 'port in 1..65535'),
    (dict(executor='tcp://127.0.0.1:1'), 'nothing answers at 127.0.0.1:1')])
def test_bad_options_are_refused_before_work(tmp_path, kw, words):
    t0 = time.time()
    with pytest.raises(UsageError, match=words.replace('(', r'\(').replace('.', r'\.')):
        sweep(BASE, dict(lr=[0.01]), cache=tmp_path / 'c', progress=False, device='cpu', **kw)
    assert time.time() - t0 < 10 and not (tmp_path / 'c').exists()


def test_shut_down_executor_and_tilde_cache(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    ex = ThreadPoolExecutor(1); ex.shutdown()
    with pytest.raises(UsageError, match='is shut down'): sweep(BASE, dict(lr=[0.01]), cache=tmp_path, executor=ex, progress=False)
    monkeypatch.setenv('HOME', str(tmp_path)); monkeypatch.chdir(tmp_path)
    r = sweep(BASE, dict(lr=[0.01]), cache='~/sweeps', progress=False, device='cpu', max_chunks=0)
    assert r.cache == tmp_path / 'sweeps' and not (tmp_path / '~').exists()


def test_check_executor_is_reusable():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
    try: assert check_executor(f'tcp://127.0.0.1:{s.getsockname()[1]}', timeout=2)
    finally: s.close()
    for ok in (None, 'processes'): assert check_executor(ok) == ok
    check_counts(n_workers=2, threads=1, max_chunks=0)


# --- file-system faults ------------------------------------------------------------------------------------------------

def test_cache_that_is_a_file_is_refused_before_work(tmp_path):
    f = tmp_path / 'file'; f.write_text('x')
    for cache in (f, f / 'sub'):
        with pytest.raises(UsageError, match='a file'): sweep(BASE, dict(lr=[0.01]), cache=cache, progress=False, device='cpu')
    with pytest.raises(UsageError, match='is a file, not a folder'): check_cache(f)


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write into a read-only folder')
def test_read_only_cache_is_refused_before_work(tmp_path):
    c = tmp_path / 'ro'; c.mkdir(); c.chmod(0o555)
    try:
        with pytest.raises(UsageError, match='not writable'): sweep(BASE, dict(lr=[0.01]), cache=c, progress=False, device='cpu')
    finally: c.chmod(0o755)


def test_folder_in_a_chunk_files_place_is_repaired(tmp_path):
    grid = dict(lr=[0.01, 0.02])
    first = sweep(BASE, grid, cache=tmp_path, chunk_size=1, progress=False, device='cpu')
    key = first.chunks[0].key
    (tmp_path / key / 'results.parquet').unlink(); (tmp_path / key / 'results.parquet').mkdir()
    (tmp_path / first.chunks[1].key / 'done.json').unlink(); (tmp_path / first.chunks[1].key / 'done.json').mkdir()
    assert 'is a folder' in chunk_problem(tmp_path, key)
    for _ in range(2):  # the repair holds: the next run reads both chunks
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', CacheWarning)
            again = sweep(BASE, grid, cache=tmp_path, chunk_size=1, progress=False, device='cpu')
        assert again.complete and chunk_done(tmp_path, key)
    assert again.cached == [c.key for c in first.chunks]
    assert again.results.drop(columns='chunk_seconds').equals(first.results.drop(columns='chunk_seconds'))
    assert list((tmp_path / key).glob('results.parquet.damaged-*'))  # moved aside, not deleted


def test_file_in_a_chunk_folders_place_is_repaired(tmp_path):
    grid = dict(lr=[0.01])
    first = sweep(BASE, grid, cache=tmp_path, progress=False, device='cpu', max_chunks=0)
    (tmp_path / first.chunks[0].key).write_text('not a folder')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', CacheWarning)
        res = sweep(BASE, grid, cache=tmp_path, progress=False, device='cpu')
    assert res.complete and chunk_done(tmp_path, first.chunks[0].key)


def test_stale_incomplete_run_folder_of_a_killed_save_is_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    stale = tmp_path / f'run{INCOMPLETE}{dead.pid}@{socket.gethostname()}-abcd1234'; stale.mkdir(); (stale / 'x').write_text('1')
    write_run(tmp_path / 'run', lambda f: (f / 'a.txt').write_text('1'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['run']


def test_full_disk_during_save_is_a_save_error(tmp_path):
    def full(f): raise OSError(errno.ENOSPC, 'No space left on device')
    for save in (lambda: write_run(tmp_path / 'run', lambda d: full(d)), lambda: atomic_write(tmp_path / 'x.json', full)):
        with pytest.raises(SaveError, match='No space left on device') as e: save()
        assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


# --- progress under quiet ----------------------------------------------------------------------------------------------

def test_quiet_sweep_shows_progress_lines(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(msweep, 'PROGRESS_EVERY', 0.3)
    slow = {'slow': lambda m, d: (time.sleep(1.0), m.W.norm(dim=1))[1]}
    sweep(BASE, dict(lr=[0.01]), cache=tmp_path, progress=False, device='cpu', neuron_metrics=slow)
    err = capfd.readouterr().err
    assert 'of 1 chunks done' in err, err
