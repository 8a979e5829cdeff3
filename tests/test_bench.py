"""The benchmark table, the prepared device run and the parts of `modmem reproduce` it relies on (the plain runner,
one GPU per job). Plain pytest: no fastcore, papermill or Jupyter, so it also runs on a bare GPU machine."""
import json, math, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
import torch
import modmem.reproduce as reproduce_mod
from modmem.benchmark import benchmark, benchmark_checks, format_checks, phase_grid, engine_step, gemm_seconds, _per_step
from modmem.reproduce import job_slots, visible_gpus, run_plain, notebook_cells, NotebookError
from modmem.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
import device_checks  # noqa: E402


@pytest.fixture(scope='module')
def tiny(request):
    "The whole table at a tiny size on the test device (warm: the first AdamW step loads torch.optim's machinery)."
    dev = str(request.getfixturevalue('device'))
    benchmark(sizes=(1,), p=11, width=16, steps=1, device=dev, runs=4, sequential=1, min_seconds=0)
    t0 = time.perf_counter()
    tbl = benchmark(p=11, width=16, steps=2, device=dev, min_seconds=0)
    return tbl, time.perf_counter() - t0


def test_table_columns_and_ratios_are_finite(tiny):
    tbl, seconds = tiny   # no bound on seconds: speed targets live in benchmarks, not in timed tests
    assert tbl.case.tolist() == ['sequential'] + ['engine'] * 4 + ['phase diagram', 'mean α'] + ['gemm'] * 5
    cols = ['model_steps_per_s', 'ms_per_model_step', 'gemm_ms', 'x_gemm', 'gflops']
    assert all(math.isfinite(v) and v > 0 for v in tbl[cols].to_numpy().ravel())
    assert tbl[tbl.case == 'gemm'].x_gemm.tolist() == [1.0] * 5
    pd_row = tbl[tbl.case == 'phase diagram'].iloc[0]
    assert pd_row.members == 289 and pd_row.alpha == pytest.approx(0.6)
    # ms per model-step and model-steps/s are the same measurement
    assert all(abs(r.ms_per_model_step * r.model_steps_per_s - 1e3) < 1e-6 * 1e3 for r in tbl.itertuples())


def test_checks_read_the_four_criteria(tiny):
    tbl, _ = tiny
    ch = benchmark_checks(tbl)
    assert ch.check.tolist() == ['phase diagram vs mean α', 'E=289 vs E=16 in one α', 'every engine row vs its GEMM bound',
                                 'E=16 vs the sequential loop']
    eng = tbl[tbl.case == 'engine'].set_index('members')
    assert ch.value[1] == pytest.approx(eng.ms_per_model_step[289] / eng.ms_per_model_step[16])
    assert ch.value[3] == pytest.approx(eng.model_steps_per_s[16] / tbl.model_steps_per_s[0])
    lines = format_checks(ch).splitlines()
    assert len(lines) == 4 and all(l.split()[0] in ('PASS', 'FAIL') for l in lines)
    # a limit is a limit: loosen them all and every check passes, tighten them and none does
    assert benchmark_checks(tbl, limits=dict(phase_diagram=1e9, one_alpha=1e9, gemm=1e9, sequential=0)).ok.all()
    assert not benchmark_checks(tbl, limits=dict(phase_diagram=0, one_alpha=0, gemm=0, sequential=1e9)).ok.any()


def test_phase_grid_has_exactly_the_runs():
    g = phase_grid((0.3, 0.5, 0.7, 0.9), 289)
    pairs = g[('train_frac', 'seed')]
    assert len(pairs) == 289 and len(set(pairs)) == 289
    assert [sum(a == x for a, _ in pairs) for x in (0.3, 0.5, 0.7, 0.9)] == [73, 72, 72, 72]


def test_per_step_redoes_short_runs():
    calls = []
    t = _per_step(lambda: calls.append(1), 1, 'cpu', warmup=0, repeats=3, min_seconds=0.01)
    assert len(calls) > 3 and 0 < t < 0.01  # the first runs were too short to count: more calls were timed


def test_engine_step_and_gemm_on_device(device):
    step = engine_step(TrainConfig(p=11, width=16, seed=[0, 1]), device=device)
    for _ in range(2): step()
    assert 0 < gemm_seconds(60, 16, 11, device, steps=1) < 1


# --- one GPU, one job ---------------------------------------------------------------------------------------------

def test_job_slots_one_gpu_per_job():
    assert job_slots('cuda', None, 9, gpus=8) == (8, [str(i) for i in range(8)], None)
    assert job_slots(None, None, 9, gpus=3) == (3, ['0', '1', '2'], None)
    assert job_slots('cuda:2', None, 9, gpus=['5', '6', '7']) == (1, ['7'], None)
    jobs, slots, warn = job_slots('cuda', 3, 9, gpus=1)
    assert (jobs, slots) == (3, ['0', '0', '0']) and 'share a GPU' in warn
    assert job_slots('cpu', None, 9, gpus=8, cpus=4) == (2, [None, None], None)
    assert job_slots('cpu', 4, 9, gpus=8) == (4, [None] * 4, None)
    with pytest.raises(ValueError, match='no GPU is visible'): job_slots('cuda', None, 9, gpus=0)


def test_visible_gpus_follow_the_parents_list(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3,5')
    assert visible_gpus() == ['3', '5']
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    assert visible_gpus() == ['0', '1']
    assert job_slots(None, None, 4, None)[:2] == (2, ['0', '1'])


def test_child_gets_its_gpu_and_cuda_device(monkeypatch, tmp_path):
    "run_notebook puts the slot's GPU in the child's environment and calls the device `cuda` there."
    seen = {}
    class FakeProc:
        def __init__(self, cmd, env=None, **kw): seen.update(cmd=cmd, env=env)
        def wait(self, timeout=None): return 0
    monkeypatch.setattr(reproduce_mod.subprocess, 'Popen', FakeProc)
    ex = tmp_path / 'experiments'; ex.mkdir()
    params = dict(cell_type='code', metadata=dict(tags=['parameters']), source="preset = 'smoke'", outputs=[], execution_count=None)
    (ex / 'p1_curves.ipynb').write_text(json.dumps(dict(cells=[params], metadata={}, nbformat=4, nbformat_minor=5)))
    rec = reproduce_mod.run_notebook('p1_curves', 'smoke', tmp_path / 'figs', ex, device='cuda:1', runner='plain', gpu='6')
    assert seen['env']['CUDA_VISIBLE_DEVICES'] == '6'
    cmd = seen['cmd']
    child = cmd[6:] if cmd[1:4] == ['-m', 'modmem.runner', 'supervise'] else cmd  # under the Linux supervisor: its child's command
    assert child[1:4] == ['-m', 'modmem.runner', 'plain'] and json.loads(child[5])['device'] == 'cuda'
    assert rec['gpu'] == '6' and rec['runner'] == 'plain'


# --- the plain runner -----------------------------------------------------------------------------------------------

def _nb(path, cells):
    path.write_text(json.dumps(dict(cells=cells, metadata={}, nbformat=4, nbformat_minor=5)))
    return path


def _code(src, tags=None, id='x'):
    return dict(cell_type='code', id=id, metadata=dict(tags=tags) if tags else {}, outputs=[], execution_count=None, source=src)


def test_run_plain_injects_parameters_and_skips_magics(tmp_path):
    nb = _nb(tmp_path / 'n.ipynb', [_code("%load_ext autoreload\na = 1", id='0'), _code("b = 2", ['parameters'], 'p'),
                                    _code("if True:\n    %time c = 0\nc = a + b\nc", id='c'), _code("%%timeit\nx = 1", id='t')])
    ns = run_plain(nb, dict(b=40))
    assert ns['c'] == 41 and 'x' not in ns
    assert [l for l, _ in notebook_cells(nb, dict(b=40))] == ['cell 0 (id 0)', 'cell 1 (id p)', 'injected-parameters', 'cell 2 (id c)']
    assert run_plain(_nb(tmp_path / 'm.ipynb', [_code("y = z * 2")]), dict(z=4))['y'] == 8  # no parameters cell: first


def test_run_plain_names_the_failing_cell(tmp_path):
    nb = _nb(tmp_path / 'f.ipynb', [_code("x = 1", id='a'), _code("raise KeyError('nope')", id='b')])
    with pytest.raises(NotebookError, match=r"f.ipynb cell 1 \(id b\): KeyError"): run_plain(nb)


def test_experiment_notebook_runs_plain_at_smoke(tmp_path):
    "The real experiment notebook of Figs. 3a/3b through run_plain at `smoke`, on the CPU, saving through its Experiment."
    ns = run_plain(ROOT / 'experiments' / 'p1_phase_diagrams.ipynb',
                   dict(preset='smoke', cache=str(tmp_path / 'cache'), device='cpu'), out=tmp_path / 'figs')
    assert set(ns['exp'].saved) == set(ns['exp'].expected)
    for i in ('p1-fig03a', 'p1-fig03b'):
        rec = json.loads((tmp_path / 'figs' / 'smoke' / f'{i}.json').read_text())
        assert rec['file'] == f'{i}.png' and (tmp_path / 'figs' / 'smoke' / f'{i}.png').stat().st_size > 1000


# --- the prepared device run ----------------------------------------------------------------------------------------

def test_sync_check_small(device):
    "The sync-debug check at a tiny size (on CUDA, syncs inside the loop are errors; train()'s loop is the one checked)."
    res = device_checks.sync_check(str(device), small=True, steps=4)
    assert all(r['ok'] for r in res.values()), {k: r.get('error') for k, r in res.items()}
    assert len(res) == 6


def test_memory_check_small(device):
    res = device_checks.memory_check(str(device), small=True)
    assert all(r['ok'] for r in res.values()), res
