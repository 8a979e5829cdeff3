"Sweep cache: keys follow the training code, checksummed chunks (damage is reported and retrained), per-chunk OS locks, checks before any chunk trains."
import hashlib, json, os, shutil, signal, subprocess, sys, textwrap, threading, time, warnings
import concurrent.futures as cf
from pathlib import Path

import pandas as pd
import pytest

import modmem.sweep as S
import modmem.plan as P
from modmem.training import TrainConfig
from modmem.sweep import (sweep, sweep_extra, plan_sweep, config_key, chunk_done, chunk_problem, chunk_lock, save_chunk, run_chunk,
                          CacheWarning, TRAINING_HASH, SCHEMA)

BASE = TrainConfig(p=11, width=16, steps=3, noise=0.2, log_every=1)
GRID = {'weight_decay': [0.0, 1.0], 'train_frac': [0.4, 0.6]}  # two chunks (two training-set sizes) of two members
COLS = ['run', 'weight_decay', 'train_frac', 'train_acc', 'test_acc', 'train_loss', 'test_loss', 'peak_test_acc', 'wn_mean']
KW = dict(progress=False, device='cpu', threads=1)
wn = lambda m, d: m.W.norm(dim=1)


def _run(cache, **kw):
    return sweep(BASE, GRID, cache, weights=True, neuron_metrics={'wn': wn}, **{**KW, **kw})


def _same(a, b):
    pd.testing.assert_frame_equal(a[COLS].reset_index(drop=True), b[COLS].reset_index(drop=True), rtol=1e-6)


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    "A finished sweep whose cache each test copies and damages."
    return _run(tmp_path_factory.mktemp('clean'))


# ---------------------------------------------------------------- keys and the training code

def test_key_changes_with_the_training_code(monkeypatch):
    _, (c,) = plan_sweep(BASE, {'lr': [0.01]})
    assert c.code == TRAINING_HASH and len(TRAINING_HASH) == 16 and config_key(c.config, c.members) == c.key
    assert config_key(c.config, c.members, code='0' * 16) != c.key
    monkeypatch.setattr(P, 'TRAINING_HASH', 'f' * 16)
    _, (d,) = plan_sweep(BASE, {'lr': [0.01]})
    assert d.key != c.key and d.code == 'f' * 16


def test_changed_code_retrains_instead_of_reading_old_numbers(tmp_path, monkeypatch):
    a = sweep(BASE, GRID, tmp_path, **KW)
    assert len(a.computed) == 2
    assert sweep(BASE, GRID, tmp_path, **KW).computed == []
    monkeypatch.setattr(P, 'TRAINING_HASH', 'e' * 16)  # as if data/models/training/sweep had changed
    b = sweep(BASE, GRID, tmp_path, **KW)
    assert len(b.computed) == 2 and b.cached == [] and not set(b.computed) & set(a.computed)
    for c in b.chunks:
        man = json.loads((tmp_path / c.key / 'done.json').read_text())
        assert man['training_hash'] == man['trained_with'] == 'e' * 16 and man['schema'] == SCHEMA
        assert json.loads((tmp_path / c.key / 'config.json').read_text())['training_hash'] == 'e' * 16


def test_editing_training_code_changes_the_key_but_a_comment_does_not(tmp_path):
    "End to end, in fresh interpreters: a copy of the package, its training.py edited."
    pkg = tmp_path / 'pkg'
    shutil.copytree(Path(S.__file__).parent, pkg / 'modmem', ignore=shutil.ignore_patterns('__pycache__'))
    script = ("from modmem.sweep import plan_sweep; from modmem.training import TrainConfig\n"
              "print(plan_sweep(TrainConfig(p=11, width=16, steps=3), {'lr': [0.01]})[1][0].key)")
    env = {**os.environ, 'PYTHONPATH': str(pkg), 'OMP_NUM_THREADS': '1'}
    key = lambda: subprocess.run([sys.executable, '-c', script], env=env, cwd=tmp_path, capture_output=True, text=True,
                                 check=True).stdout.strip()
    k0 = key()
    training = pkg / 'modmem' / 'training.py'
    training.write_text(training.read_text() + '\n# only a comment\n')
    k1 = key()
    training.write_text(training.read_text() + '\n_CHANGED = 1\n')
    k2 = key()
    assert len(k0) == 16 and k0 == k1 != k2


def test_a_worker_with_other_code_is_refused(tmp_path):
    class OtherCode(cf.Executor):  # runs the chunk here, but reports another training hash (an out-of-date worker)
        def submit(self, fn, *args):
            f = cf.Future()
            f.set_result({**fn(*args), 'code': '1' * 16})
            return f
    with pytest.raises(RuntimeError, match='another version of modmem'):
        sweep(BASE, GRID, tmp_path, executor=OtherCode(), **KW)
    assert not any(chunk_done(tmp_path, c.key) for c in plan_sweep(BASE, GRID)[1])


# ---------------------------------------------------------------- checksums

def test_manifest_lists_every_file_with_its_checksum(clean):
    for c in clean.chunks:
        d = clean.cache / c.key
        man = json.loads((d / 'done.json').read_text())
        assert set(man['files']) == {'results.parquet', 'history.parquet', 'neurons.parquet', 'weights.safetensors', 'config.json'}
        for name, f in man['files'].items():
            assert f['bytes'] == (d / name).stat().st_size and f['sha256'] == hashlib.sha256((d / name).read_bytes()).hexdigest()
        assert man['key'] == c.key and man['members'] == 2 and man['pid'] > 0
        assert chunk_problem(clean.cache, c.key) is None and chunk_done(clean.cache, c.key, weights=True)


def _truncate(f): f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
def _flip(f):
    b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 0x01; f.write_bytes(bytes(b))


FAULTS = {  # name: (file, damage, what the report says)
    'truncated results': ('results.parquet', _truncate, 'bytes, the manifest says'),
    'deleted history': ('history.parquet', Path.unlink, 'is missing'),
    'flipped weights byte': ('weights.safetensors', _flip, 'does not match its SHA-256'),
    'flipped neurons byte': ('neurons.parquet', _flip, 'does not match its SHA-256'),
    'emptied config': ('config.json', lambda f: f.write_text(''), 'bytes, the manifest says'),
    'garbage manifest': ('done.json', lambda f: f.write_bytes(b'\x00{not json'), 'is not a readable JSON manifest'),
    'truncated manifest': ('done.json', _truncate, 'is not a readable JSON manifest'),
    'manifest of another shape': ('done.json', lambda f: f.write_text('[1, 2]'), 'is not a schema-'),
    'manifest without checksums': ('done.json', lambda f: f.write_text(json.dumps({**json.loads(f.read_text()), 'files': {}})),
                                   'lists no'),
}


@pytest.mark.parametrize('fault', list(FAULTS))
def test_damaged_chunk_is_reported_by_path_and_retrained(fault, clean, tmp_path):
    name, damage, says = FAULTS[fault]
    cache = tmp_path / 'cache'
    shutil.copytree(clean.cache, cache)
    key = clean.chunks[1].key
    damage(cache / key / name)
    bad = str(cache / key / name)
    assert says in chunk_problem(cache, key) and bad in chunk_problem(cache, key)
    with pytest.warns(CacheWarning, match='damaged cache chunk') as w:
        assert not chunk_done(cache, key)
    assert str(cache / key) in str(w[0].message) and bad in str(w[0].message)
    assert chunk_done(cache, clean.chunks[0].key)  # the other chunk is fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        again = _run(cache)
    msgs = [str(x.message) for x in caught if issubclass(x.category, CacheWarning)]
    assert len(msgs) == 1 and bad in msgs[0], msgs  # reported once, by path
    assert again.computed == [key] and again.cached == [clean.chunks[0].key] and again.complete
    _same(again.results, clean.results)
    assert len(again.history()) == len(clean.history()) and len(again.neurons()) == 4 * 16
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # intact again: no warning anywhere
        assert chunk_problem(cache, key) is None and chunk_done(cache, key, weights=True)
        assert _run(cache).computed == []
        m, e = again.model(3)


def test_reading_a_damaged_chunk_warns_and_never_raises_a_parse_error(clean, tmp_path):
    cache = tmp_path / 'cache'
    shutil.copytree(clean.cache, cache)
    res = S.SweepResult(clean.grid, clean.chunks, clean.results, cache, [], [], 0.0)
    first, second = clean.chunks
    _truncate(cache / second.key / 'history.parquet')
    with pytest.warns(CacheWarning, match='history.parquet'):
        h = res.history()
    assert set(h.run) == set(first.runs)  # the damaged chunk's runs are left out, and said so
    _flip(cache / second.key / 'weights.safetensors')
    with pytest.raises(ValueError, match='weights.safetensors does not match'):
        res.model(second.runs[0])
    (cache / first.key / 'done.json').write_text('{"schema": ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert len(S._collect(clean.grid, clean.chunks, cache)) == 0  # no intact chunk left: no results, two warnings
    msgs = sorted(str(w.message) for w in caught if issubclass(w.category, CacheWarning))
    assert len(msgs) == 2 and 'done.json is not a readable JSON manifest' in msgs[0] + msgs[1] and 'history.parquet' in msgs[0] + msgs[1]


def test_missing_manifest_is_unfinished_not_damaged(clean, tmp_path):
    cache = tmp_path / 'cache'
    shutil.copytree(clean.cache, cache)
    key = clean.chunks[0].key
    (cache / key / 'done.json').unlink()  # a crash before the manifest: quietly not done
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert chunk_problem(cache, key) is None and not chunk_done(cache, key)
        assert _run(cache).computed == [key]


# ---------------------------------------------------------------- locks

def test_lock_is_exclusive_and_released():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        a = chunk_lock(d, 'k')
        assert a.held and chunk_lock(d, 'k', wait=False) is None
        assert a.holder().endswith(str(os.getpid()))
        a.release()
        b = chunk_lock(d, 'k', wait=False)
        assert b is not None and b.held
        b.release()


def test_sweep_trains_free_chunks_first_then_waits_for_and_reads_a_held_one(tmp_path):
    _, chunks = plan_sweep(BASE, GRID, extra=sweep_extra())
    held = chunk_lock(tmp_path, chunks[1].key)  # "another process" is training chunk 1
    box = {}
    t = threading.Thread(target=lambda: box.update(res=sweep(BASE, GRID, tmp_path, **KW)))
    t.start()
    deadline = time.time() + 60
    while not chunk_done(tmp_path, chunks[0].key) and time.time() < deadline: time.sleep(0.05)
    assert chunk_done(tmp_path, chunks[0].key) and t.is_alive()  # it trained the free chunk and now waits
    save_chunk(tmp_path, chunks[1], run_chunk(chunks[1], device='cpu'))  # the other process finishes ...
    held.release()  # ... and lets go
    t.join(60)
    res = box['res']
    assert res.computed == [chunks[0].key] and res.cached == [chunks[1].key] and res.complete


def test_released_lock_without_a_result_is_trained_by_the_waiter(tmp_path):
    _, chunks = plan_sweep(BASE, GRID, extra=sweep_extra())
    held = chunk_lock(tmp_path, chunks[0].key)
    box = {}
    t = threading.Thread(target=lambda: box.update(res=sweep(BASE, GRID, tmp_path, **KW)))
    t.start()
    time.sleep(0.5)
    held.release()  # the holder gave up (or died) without finishing
    t.join(60)
    assert sorted(box['res'].computed) == sorted(c.key for c in chunks) and box['res'].complete


SLOW = '''
import os, time
def slow(m, d):  # a per-neuron metric that takes a while (NAP seconds), so the two processes overlap
    time.sleep(float(os.environ.get('NAP', '0')))
    return m.W.norm(dim=1)
'''

WORKER = '''
import json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from slowmetric import slow  # one module for the workers and the test: the same metric, so the same cache keys
from modmem.training import TrainConfig
from modmem.sweep import sweep
cache, out, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
Path(str(out) + '.ready').write_text('')
while not go.exists(): time.sleep(0.01)
r = sweep(TrainConfig(p=11, width=16, steps=3, noise=0.2), {'weight_decay': [0.0, 1.0, 2.0], 'train_frac': [0.4, 0.6]},
          cache, chunk_size=1, neuron_metrics={'slow': slow}, progress=False, device='cpu', threads=1)
out.write_text(json.dumps(dict(computed=r.computed, cached=r.cached, results=r.results.drop(columns=['chunk_seconds', 'device']).to_dict('records'))))
'''


def _worker(tmp_path, name, cache, nap):
    (tmp_path / 'worker.py').write_text(WORKER)
    (tmp_path / 'slowmetric.py').write_text(SLOW)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'NAP': str(nap)}
    return subprocess.Popen([sys.executable, str(tmp_path / 'worker.py'), str(cache), str(tmp_path / name), str(tmp_path / 'go')],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, seconds=120):
    deadline = time.time() + seconds
    while not cond():
        if time.time() > deadline: raise TimeoutError('gave up waiting')
        time.sleep(0.05)


def test_two_processes_train_each_chunk_exactly_once(tmp_path):
    cache = tmp_path / 'cache'
    procs = [_worker(tmp_path, n, cache, 0.5) for n in ('a.json', 'b.json')]
    _wait_for(lambda: all((tmp_path / f'{n}.ready').exists() for n in ('a.json', 'b.json')))
    (tmp_path / 'go').write_text('')  # start both at once
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a, b = (json.loads((tmp_path / n).read_text()) for n in ('a.json', 'b.json'))
    keys = [d.name for d in cache.iterdir()]
    assert len(keys) == 6
    assert not set(a['computed']) & set(b['computed']) and sorted(a['computed'] + b['computed']) == sorted(keys)
    assert sorted(a['computed'] + a['cached']) == sorted(keys) == sorted(b['computed'] + b['cached'])
    assert a['computed'] and b['computed'], 'both processes did some of the work'
    pids = {json.loads((cache / k / 'done.json').read_text())['pid'] for k in keys}  # the stored metadata agrees
    assert pids == {procs[0].pid, procs[1].pid}
    assert a['results'] == b['results'] and len(a['results']) == 6


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    (tmp_path / 'go').write_text('')
    p = _worker(tmp_path, 'killed.json', cache, 600)  # would take ten minutes per chunk
    lock_files = lambda: [f for f in cache.glob('*/lock') if f.read_text().strip().endswith(f' {p.pid}')]
    _wait_for(lambda: lock_files())
    key = lock_files()[0].parent.name
    assert chunk_lock(cache, key, wait=False) is None  # held by the child
    p.send_signal(signal.SIGKILL); p.wait(30)
    lk = chunk_lock(cache, key, wait=False)  # the kernel dropped it
    assert lk is not None
    lk.release()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'slowmetric', raising=False)
    from slowmetric import slow  # the child's metric (NAP unset here: no nap), so the child's chunk keys
    r = sweep(TrainConfig(p=11, width=16, steps=3, noise=0.2), {'weight_decay': [0.0, 1.0, 2.0], 'train_frac': [0.4, 0.6]},
              cache, chunk_size=1, neuron_metrics={'slow': slow}, **KW)
    assert key in r.computed and r.complete and len(r.computed) == 6


# ---------------------------------------------------------------- checks before any chunk trains

@pytest.mark.parametrize('base, grid, says', [
    (BASE, {'width': [16, 24.5]}, 'width must be an integer >= 1, got 24.5'),
    (BASE, {'steps': [3, 4.0]}, 'steps must be an integer >= 0, got 4.0'),
    (BASE, {('batch_size', 'steps'): [(8, 3), (2.5, 3)]}, 'batch_size must be an integer >= 1'),
    (BASE, {'seed': [0, 1.5]}, 'seed must be an integer'),
    (BASE, {'widht': [16]}, "unknown setting 'widht' in the grid: use TrainConfig fields"),
    (TrainConfig(p=11, width=16, steps=3, batch_size=32), {'train_frac': [0.8, 0.5, 0.2]}, 'use batch_size <= 24'),
    (BASE, {'weight_decay': [0.0], 'norm': [None, 'group']}, "unknown norm 'group'"),
    (BASE, {'train_frac': [0.5, 1.5]}, 'train_frac must be a fraction in [0, 1]'),
])
def test_bad_settings_fail_before_any_chunk_trains(tmp_path, base, grid, says):
    with pytest.raises(ValueError) as e:
        plan_sweep(base, grid)
    assert says in str(e.value), str(e.value)
    with pytest.raises(ValueError, match=None):
        sweep(base, grid, tmp_path / 'cache', **KW)
    assert not (tmp_path / 'cache').exists()


def test_batch_error_names_the_runs_and_the_allowed_values():
    with pytest.raises(ValueError) as e:
        plan_sweep(TrainConfig(p=11, width=16, steps=3, batch_size=32), {'weight_decay': [0.0, 1.0], 'train_frac': [0.8, 0.2]})
    msg = str(e.value)
    assert 'batch_size=32' in msg and '2 run(s)' in msg and 'train_frac=0.2 gives 24 rows' in msg and 'None (full batch)' in msg


# ---------------------------------------------------------------- metric parameters are part of the key

def test_metric_parameters_join_the_chunk_key(tmp_path):
    "Two settings of one metric are two cache entries; the same setting again reads the cache."
    from modmem.fourier import ipr_metric
    keys = lambda **m: [c.key for c in plan_sweep(BASE, GRID, extra=sweep_extra(metrics=m))[1]]
    assert keys(ipr=ipr_metric()) == keys(ipr=ipr_metric())
    assert keys(ipr=ipr_metric()) != keys(ipr=ipr_metric(convention='fft'))
    assert keys(ipr=ipr_metric()) != keys(other=ipr_metric())
    a = sweep(BASE, {'weight_decay': [0.0]}, tmp_path, metrics={'ipr': ipr_metric()}, **KW)
    b = sweep(BASE, {'weight_decay': [0.0]}, tmp_path, metrics={'ipr': ipr_metric(convention='fft')}, **KW)
    c = sweep(BASE, {'weight_decay': [0.0]}, tmp_path, metrics={'ipr': ipr_metric()}, **KW)
    assert a.computed and b.computed and c.cached == a.computed and not c.computed
    with pytest.raises(TypeError, match=r'must take \(model, data\)'):
        sweep(BASE, GRID, tmp_path, metrics={'old': lambda model: model.W.norm()}, **KW)
