"Reliability v2 of the engine (issue 26): divergence as a measured state, member tables, sizes checked before work, clear errors."
import io, math

import numpy as np
import pandas as pd
import pytest
import torch

from modmem.data import ModularTask, UsageError
from modmem.dynamics import PAPER2
from modmem.metrics import DIVERGE_FACTOR, WEIGHT_DIVERGE_FACTOR, diverge_bound
from modmem.phases import add_phases, phases_from_history, DIVERGED
from modmem.training import TrainConfig, train, Heartbeat

TINY = dict(p=11, width=16)


def fit(progress=False, **kw):
    return train(TrainConfig(**{**TINY, **kw}), progress=progress, device='cpu')


# --- 1. divergence as a measured state ---------------------------------------------------------------------------------
@pytest.mark.parametrize('loss', ['mse', 'ce'])
def test_exploding_loss_is_diverged(loss):
    r = fit(steps=50, lr=1e3, loss=loss)
    row = r.results.iloc[0]
    assert bool(row.diverged) and 0 < row.diverged_step <= 50
    assert math.isfinite(row.train_loss), "finite, yet diverged: the bound, not NaN, marks it"
    assert np.isnan(row.train_acc) and np.isnan(row.test_acc)
    h = r.history[(r.history.metric == 'train_acc') & (r.history.step >= row.diverged_step)]
    assert h.value.isna().all(), "the history's accuracies are NaN from the diverged step on"
    assert add_phases(r).phase.tolist() == [DIVERGED]


def test_divergence_between_logged_steps_caught_by_weights():
    r = fit(steps=200, lr=1e3, loss='ce', log_every=[0, 200])  # the loss peaks at ~1e9 unlogged and comes back to ~0
    assert r.results.diverged.tolist() == [True] and r.results.diverged_step.tolist() == [200]


def test_small_init_not_marked():
    assert not fit(steps=300, lr=0.005, init=1e-3).results.diverged.any()


def test_diverged_step_per_member():
    r = fit(steps=20, lr=[0.01, 1e3], log_every=5)
    assert r.results.diverged.tolist() == [False, True]
    assert r.results.diverged_step.tolist() == [-1, 5]
    ph = phases_from_history(r.history, r.members.noise)
    assert ph.diverged.tolist() == [False, True] and ph.diverged_step.tolist() == [-1, 5]


def test_ordinary_runs_are_not_marked():
    # paper 1's shape: MSE, AdamW lr 0.005, weight decay up to 20 (Forgetting decays the weights to 0), with noise
    p1 = fit(steps=300, lr=0.005, weight_decay=[0.0, 1.0, 5.0, 20.0], noise=0.2, train_frac=0.6)
    assert not p1.results.diverged.any() and (p1.results.diverged_step == -1).all()
    assert DIVERGED not in add_phases(p1).phase.tolist()
    # paper 2's shape: cross-entropy, AdamW lr 1e-3 / 1e-2, and the optimizer variants of its recipes
    p2 = {k: v for k, v in PAPER2.items() if k not in ('p', 'width', 'steps', 'log_every')}
    for over in (dict(lr=1e-2), dict(lr=1e-3), dict(optimizer='sgd', lr=0.5, momentum=0.9, weight_decay=0.0),
                 dict(optimizer='muon', lr=0.02)):
        r = fit(steps=200, **{**p2, **over, 'noise': 0.3})
        assert not r.results.diverged.any(), over


def test_bound_is_documented_value():
    assert DIVERGE_FACTOR == 1e4 and WEIGHT_DIVERGE_FACTOR == 1e3
    assert diverge_bound(torch.tensor([0.05, 4.6])).tolist() == [1e4, pytest.approx(4.6e4)]


# --- 2. member tables: lists of dicts and DataFrames ----------------------------------------------------------------
@pytest.mark.parametrize('members', [[dict(lr=0.01)], pd.DataFrame(dict(lr=[0.01])), [dict(lr=0.01, seed=0)],
                                     pd.DataFrame(dict(lr=[0.01], seed=[0])), pd.DataFrame(dict(lr=[0.01], seed=[0.0]))])
def test_member_tables_train_like_the_explicit_run(members):
    ref = fit(steps=20, lr=0.01).results
    r = train(TrainConfig(steps=20, **TINY), members=members, progress=False, device='cpu').results
    assert r.train_loss.tolist() == ref.train_loss.tolist() and r.test_acc.tolist() == ref.test_acc.tolist()


def test_member_table_seed_column_kept():
    r = train(TrainConfig(steps=5, **TINY), members=pd.DataFrame(dict(lr=[0.01, 0.01], seed=[1, 2])), progress=False, device='cpu')
    assert r.results.seed.tolist() == [1, 2] and r.results.train_loss.iloc[0] != r.results.train_loss.iloc[1]
    with pytest.raises(UsageError, match='seed must be an integer'):
        train(TrainConfig(steps=5, **TINY), members=[dict(seed=1.5)], progress=False, device='cpu')


# --- 4. smaller: numpy values, float labels, devices, threads -------------------------------------------------------
def test_numpy_per_member_values():
    a = fit(steps=5, lr=np.array([0.01, 0.02]), seed=np.int64(1)).results
    b = fit(steps=5, lr=[0.01, 0.02], seed=1).results
    assert a.train_loss.tolist() == b.train_loss.tolist()
    assert TrainConfig(lr=np.array([0.1, 0.2])).to_dict()['lr'] == [0.1, 0.2]


def test_heartbeat_once_a_minute():
    buf = io.StringIO()
    hb = Heartbeat(10, every=0.0, file=buf)
    hb(3)
    assert buf.getvalue().startswith('modmem: train: step 3/10 after')
    quiet = io.StringIO(); Heartbeat(10, file=quiet)(3)
    assert quiet.getvalue() == ''


# --- 3. sizes checked before work -----------------------------------------------------------------------------------
def test_huge_table_refused_before_allocation():
    import time
    t = time.perf_counter()
    with pytest.raises(UsageError, match=r"p=46341 \(2147488281 pairs\) needs about 96 GiB to build.*use p <= \d+"):
        from modmem.data import check_table_memory
        check_table_memory('add', 46341, free=2 ** 34)
    from modmem.data import host_memory
    if (host_memory() or 0) < 90 * 2 ** 30:
        with pytest.raises(UsageError, match='needs about 96 GiB'): ModularTask('add', 46341)
    assert time.perf_counter() - t < 5.0   # refused before building anything (building takes minutes, or an OOM kill)


def test_long_quiet_train_shows_progress(capsys, monkeypatch):
    import modmem.training as mt
    monkeypatch.setattr(mt, 'HEARTBEAT_SECONDS', 0.0)
    fit(steps=3, lr=0.01)
    assert 'modmem: train: step' in capsys.readouterr().err
    fit(steps=3, lr=0.01, progress=True)  # a progress bar shows: no extra lines
    assert 'modmem: train: step' not in capsys.readouterr().err


# --- 4. smaller ------------------------------------------------------------------------------------------------------
def test_float_labels_refused():
    with pytest.raises(ValueError, match='must return integer labels'): ModularTask(lambda a, b, p: (a + b) % p / 2, 11)
    assert torch.equal(ModularTask(lambda a, b, p: ((a + b) % p).double(), 11).labels, ModularTask('add', 11).labels)


def test_device_and_thread_names():
    from modmem.device import check_device, check_threads
    with pytest.raises(UsageError, match="the CPU is one device, 'cpu'"): check_device('cpu:5')
    with pytest.raises(UsageError, match="the CPU is one device"): train(TrainConfig(steps=1, **TINY), progress=False, device='cpu:5')
    assert check_device('cpu:0') == torch.device('cpu:0')
    for bad in (0, -1, 2.0, True, '4'):
        with pytest.raises(UsageError, match='threads must be an integer >= 1'): check_threads(bad)
    check_threads(None); check_threads(1)


# --- probes: clear errors before work ----------------------------------------------------------------------------------
def test_member_table_mistakes_are_clear():
    cfg = TrainConfig(steps=2, **TINY)
    with pytest.raises(UsageError, match='members is empty'): train(cfg, members=[], progress=False, device='cpu')
    with pytest.raises(UsageError, match='no members'): fit(steps=2, lr=[])
    with pytest.raises(UsageError, match=r'dropout must be in \[0, 1\)'): train(cfg, members=[dict(dropout='0.1')], progress=False, device='cpu')
    with pytest.raises(UsageError, match=r"seed is missing \(NaN\) for member\(s\) \[1\]"):
        train(cfg, members=pd.DataFrame(dict(lr=[0.01, 0.01], seed=[1, np.nan])), progress=False, device='cpu')
    with pytest.raises(UsageError, match=r"\['width'\] are shared settings"): train(cfg, members=[dict(width=8)], progress=False, device='cpu')
    with pytest.warns(UserWarning, match=r"columns \['learning_rate'\] are not per-member knobs"):
        train(cfg, members=[dict(lr=0.01, learning_rate=0.5)], progress=False, device='cpu')


def test_metric_of_wrong_shape_refused_at_step_0():
    with pytest.raises(ValueError, match=r"metric 'm' must give one value per member"):
        train(TrainConfig(steps=2, **TINY), progress=False, device='cpu', metrics={'m': lambda m, d: torch.zeros(3)})


def test_phase_inputs_checked():
    r = fit(steps=2)
    with pytest.raises(ValueError, match=r"lacks \['noise'\]"): add_phases(r.results.drop(columns=['noise']))
    with pytest.raises(ValueError, match='needs a tidy history'): phases_from_history(pd.DataFrame(columns=['step', 'member', 'metric', 'value']), 0.1)


def test_classify_phase_flag_count_checked():
    from modmem.phases import classify_phase
    with pytest.raises(ValueError, match='diverged must have one flag per network: 3 flags'):
        classify_phase([0.9, 0.1], [0.9, 0.1], 0.1, diverged=[True, False, True])
    assert list(classify_phase([0.95, 0.1], [0.95, 0.1], 0.1, diverged=[False, True])) == ['Coexistence', DIVERGED]
