"Sweep engine: grids, chunk planning, the results store, resuming, and executors (threads, processes, Dask)."
import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import torch

from modmem.training import TrainConfig, evaluate
from modmem.data import ModularTask, make_data
from modmem.sweep import expand_grid, plan_sweep, sweep, chunk_done, config_key, sweep_throughput

BASE = TrainConfig(p=11, width=16, steps=20, noise=0.2, log_every=5)
GRID = {'weight_decay': [0.0, 5.0], 'train_frac': [0.4, 0.6, 0.8], 'noise': [0.1, 0.3]}
COLS = ['run', 'weight_decay', 'train_frac', 'noise', 'train_acc', 'test_acc', 'train_loss', 'test_loss', 'peak_test_acc']


def _same(a, b):
    pd.testing.assert_frame_equal(a.results[COLS].reset_index(drop=True), b.results[COLS].reset_index(drop=True), rtol=1e-5)


@pytest.fixture(scope='module')
def inline(tmp_path_factory):
    return sweep(BASE, GRID, tmp_path_factory.mktemp('inline'), chunk_size=5, progress=False, device='cpu')


def test_grid_product_zip_and_base_lists():
    g = expand_grid({'train_frac': [0.3, 0.5], ('batch_size', 'steps', 'lr'): [(8, 64, 0.001), (None, 20, 0.01)]},
                    TrainConfig(seed=[0, 1, 2]))
    assert len(g) == 2 * 2 * 3
    assert set(map(tuple, g[['steps', 'lr']].values.tolist())) == {(64, 0.001), (20, 0.01)}
    assert g.batch_size.isna().sum() == 6 and (g[g.batch_size.isna()].steps == 20).all()
    assert sorted(g.seed.unique()) == [0, 1, 2]
    with pytest.raises(ValueError, match='weight_decay'): expand_grid({'weight_decy': [1.0]})
    with pytest.raises(ValueError, match='more than one grid axis'): expand_grid({'lr': [0.1], ('lr', 'steps'): [(0.1, 3)]})
    with pytest.raises(ValueError, match='list of values'): expand_grid({'lr': 0.1})


def test_shared_settings_split_into_separate_ensembles():
    table, chunks = plan_sweep(BASE, {'weight_decay': [0.0, 1.0], 'norm': [None, 'batch'], 'act': ['quad', 'relu'],
                                      'width': [8, 16]}, chunk_size=64)
    assert len(table) == 16 and len(chunks) == 8
    for c in chunks:
        assert len(c.runs) == 2 and c.members.weight_decay.tolist() == [0.0, 1.0]
        rows = table.set_index('run').loc[c.runs]
        assert rows.norm.map(lambda v: v == c.config.norm or (v is None and c.config.norm is None)).all()
        assert (rows.act == c.config.act).all() and (rows.width == c.config.width).all()
    with pytest.raises(ValueError, match='chunk_size'): plan_sweep(BASE, GRID, chunk_size=0)


def test_chunks_balanced_and_sorted_by_train_frac():
    _, chunks = plan_sweep(BASE, GRID, chunk_size=5)
    assert [len(c.runs) for c in chunks] == [4, 4, 4]
    fr = [c.members.train_frac for c in chunks]
    assert all(f.is_monotonic_increasing for f in fr) and fr[0].max() <= fr[1].min()


def test_key_ignores_member_chunk_but_not_settings():
    _, (c,) = plan_sweep(BASE, {'lr': [0.01]})
    _, (d,) = plan_sweep(TrainConfig(**{**BASE.to_dict(), 'member_chunk': 3}), {'lr': [0.01]})
    _, (e,) = plan_sweep(TrainConfig(**{**BASE.to_dict(), 'betas': [0.9, 0.99]}), {'lr': [0.01]})
    assert c.key == d.key != e.key
    assert config_key(c.config, c.members, extra='x') != c.key


def test_results_table_and_cache(inline, tmp_path):
    r = inline.results
    assert r.run.tolist() == list(range(12)) and inline.complete
    assert r.train_acc.between(0, 1).all() and (r.peak_test_acc >= r.test_acc).all()
    assert set(r.chunk) == {c.key for c in inline.chunks}
    for c in inline.chunks:
        d = inline.cache / c.key
        assert {'results.parquet', 'history.parquet', 'config.json', 'done.json'} <= {f.name for f in d.iterdir()}
        assert not [f for f in d.iterdir() if f.name.endswith('.tmp')]
    again = sweep(BASE, GRID, inline.cache, chunk_size=5, progress=False, device='cpu')
    assert again.computed == [] and len(again.cached) == 3
    pd.testing.assert_frame_equal(again.results, r)
    h = inline.history(runs=[0, 7])
    assert set(h.run) == {0, 7} and h.step.max() == BASE.steps
    c = inline.curves(runs=[3])
    assert c.test_acc.max() == pytest.approx(r.peak_test_acc[3])


def test_interrupted_sweep_resumes_only_unfinished_chunks(inline, tmp_path):
    calls = []

    def flaky(model, data):  # a per-neuron metric is called once per chunk: fail on the second chunk
        calls.append(1)
        if len(calls) == 2: raise RuntimeError('interrupted')
        return model.W.norm(dim=1)

    with pytest.raises(RuntimeError, match='interrupted'):
        sweep(BASE, GRID, tmp_path, chunk_size=5, neuron_metrics={'wn': flaky}, progress=False, device='cpu')
    done = [d for d in tmp_path.iterdir() if (d / 'done.json').exists()]
    assert len(done) == 1
    res = sweep(BASE, GRID, tmp_path, chunk_size=5, neuron_metrics={'wn': flaky}, progress=False, device='cpu')
    assert len(res.cached) == 1 and len(res.computed) == 2 and len(calls) == 4
    _same(res, inline)
    assert len(res.neurons()) == 12 * 16


def test_partial_write_is_not_done(tmp_path):
    s = sweep(BASE, {'weight_decay': [0.0, 1.0]}, tmp_path, progress=False, device='cpu')
    key = s.chunks[0].key
    (tmp_path / key / 'done.json').unlink()  # a crash after the tables, before the marker
    assert not chunk_done(tmp_path, key)
    again = sweep(BASE, {'weight_decay': [0.0, 1.0]}, tmp_path, progress=False, device='cpu')
    assert again.computed == [key]


def test_max_chunks_stops_and_resumes(tmp_path, inline):
    a = sweep(BASE, GRID, tmp_path, chunk_size=5, max_chunks=2, progress=False, device='cpu')
    assert len(a.computed) == 2 and not a.complete and len(a.results) == 8
    b = sweep(BASE, GRID, tmp_path, chunk_size=5, progress=False, device='cpu')
    assert len(b.computed) == 1 and b.complete
    _same(b, inline)


def test_thread_pool_matches_inline(tmp_path, inline):
    with ThreadPoolExecutor(2) as ex:
        t = sweep(BASE, GRID, tmp_path, chunk_size=5, executor=ex, progress=False, device='cpu')
    _same(t, inline)


def test_process_pool_matches_inline(tmp_path, inline):
    t = sweep(BASE, GRID, tmp_path, chunk_size=5, executor='processes', n_workers=2, progress=False, device='cpu')
    assert len(t.computed) == 3
    _same(t, inline)


def test_dask_local_cluster_matches_inline(tmp_path, inline):
    distributed = pytest.importorskip('dask.distributed')
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        d = sweep(BASE, GRID, tmp_path / 'client', chunk_size=5, executor=client, progress=False, device='cpu')
        _same(d, inline)
        # the scheduler address works as well (the sweep opens and closes its own client)
        e = sweep(BASE, GRID, tmp_path / 'address', chunk_size=5, executor=cluster.scheduler_address, progress=False, device='cpu')
        _same(e, inline)


def test_bad_executor_fails_before_work(tmp_path):
    with pytest.raises(ValueError, match='unknown executor'):
        sweep(BASE, GRID, tmp_path, executor='gpu-farm', progress=False)
    with pytest.raises(ValueError, match="use one of"):
        sweep(BASE, {'norm': ['group']}, tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_weights_roundtrip(tmp_path):
    s = sweep(BASE, {'weight_decay': [0.0, 5.0], 'norm': [None, 'batch']}, tmp_path, weights=True, progress=False, device='cpu')
    for run in range(4):
        m, e = s.model(run)
        row = s.results.iloc[run]
        data = make_data(ModularTask('add', 11), [row.train_frac] * m.n_members, [row.noise] * m.n_members)
        assert evaluate(m, data)['test_acc'][e].item() == pytest.approx(row.test_acc, abs=1e-6)
    assert json.loads((tmp_path / s.chunks[0].key / 'done.json').read_text())['members'] == 2


def test_throughput_positive():
    t = sweep_throughput(BASE, GRID, chunk_size=6, steps=2, device='cpu')
    assert len(t) == 3 and (t.model_steps_per_s > 0).all() and (t.est_chunk_hours > 0).all()
