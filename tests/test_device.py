"""Device-correctness: every public function that makes tensors puts them on the model's device (or a `device=` it
takes), never on torch's default device.

The checks run with the default device set to `meta` (see `conftest.meta_default`): a tensor made on the default
device instead of the model's becomes a meta tensor, and mixing it with real ones raises. The models and data live on
the `device` fixture ($MODMEM_TEST_DEVICE, default 'cpu'), so `MODMEM_TEST_DEVICE=cuda pytest tests/test_device.py`
runs the same checks on a GPU."""
import math
import numpy as np
import pandas as pd
import pytest
import torch
import modmem.dynamics as dynamics
import modmem.filtration as filtration
from modmem.data import ModularTask, make_data, split_mask, corrupt_labels, authors_split, EnsembleData
from modmem.models import EnsembleMLP, analytic_solution
from modmem.training import TrainConfig, train, evaluate, metric_values
from modmem.fourier import (neuron_ipr, mean_ipr, ipr_metric, power_spectrum, dominant_frequency, reindex, discrete_log,
                            dlog_order, spectrum, initial_model)
from modmem.filtration import (frequency_filtration, filtration_accuracy, filtration_metric, phase_alignment,
                               frequency_sparsity, split_neurons)
from modmem.pruning import neuron_scores, masked_copies, member_data, prune_order, pruning_curves, corrupted_logits
from modmem.partition import partition_masks, partition_sweep, partition_table, activation_swap
from modmem.dynamics import per_example_grad_norms, grad_norm_metrics
from modmem.images import noisy_image_run


def _same(dev, t):
    "Whether tensor `t` lives on `dev` (cuda and cuda:0 count as the same)."
    return t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)


@pytest.fixture(scope='module')
def task():
    return ModularTask('add', 13)


def _model(device, **kw):
    return EnsembleMLP(13, 16, n_members=2, act='relu', init='paper2', out_bias=True, seeds=[0, 1], device=device, **kw)


def _data(task, device):
    return make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1]).to(device)


# ---------------------------------------------------------------------------------------------------- data

def test_data_construction_under_meta(on_meta, device):
    "Tasks, splits, corruption and ensemble data are made on the CPU whatever the default device; `to` moves them once."
    with on_meta():
        for op in ('add', 'sub', 'mul', 'div', lambda a, b, p: (a * a + b) % p):
            t = ModularTask(op, 7)
            assert t.pairs.device.type == 'cpu' and t.labels.device.type == 'cpu'
        t = ModularTask('add', 11)
        tr = split_mask(len(t), 0.5, 0)
        for mode in ('uniform', 'wrong', 'symmetric'):
            la, co = corrupt_labels(t, tr, 0.4, mode, 1)
            assert la.device.type == co.device.type == 'cpu' and co.sum() == int(0.4 * tr.sum())
        assert all(x.device.type == 'cpu' for x in authors_split(t, 0.5, 0.3))
        d = make_data(t, [0.5, 0.3], [0.2, 0.0], 'symmetric')
        assert make_data(t, 0.5, 0.3, scheme='authors').train.device.type == 'cpu'
        idx, valid = d.train_index()
        assert idx.device.type == valid.device.type == 'cpu'
        dd = d.to(device)
        assert all(_same(device, x) for x in (dd.train, dd.labels, dd.corrupted, dd.pairs, dd.true_labels))
        assert all(_same(device, x) for x in dd.train_index())
        assert dd.summary().n_corrupted.tolist() == d.summary().n_corrupted.tolist()


def test_pairs_and_true_labels_are_cached(task, device):
    "`pairs` / `true_labels` are moved at `to(device)`, not on every access; data over one task shares one copy per device."
    d = _data(task, device)
    assert d.pairs is d.pairs and d.true_labels is d.true_labels
    assert _same(device, d.pairs) and _same(device, d.true_labels)
    assert d.to(device) is d
    other = make_data(task, 0.5, 0.1).to(device)
    assert other.pairs is d.pairs, 'the task keeps one copy of its table per device'
    assert member_data(d, 1, 3).pairs is d.pairs
    with pytest.raises(ValueError, match=r'\[E, 169\]'): EnsembleData(task, d.train[:, :5], d.labels, d.corrupted)
    with pytest.raises(ValueError, match='one shape and device'): EnsembleData(task, d.train, d.labels[:1], d.corrupted)


# ---------------------------------------------------------------------------------------------------- Fourier

def test_fourier_under_meta(on_meta, device):
    "IPR, spectra, dominant frequencies and discrete-log re-indexing stay on the model's device."
    with on_meta():
        sol = analytic_solution(31, 16, n_members=2, device=device)
        for t in (neuron_ipr(sol), mean_ipr(sol), ipr_metric()(sol, None), power_spectrum(sol), dominant_frequency(sol),
                  neuron_ipr(sol, index='dlog'), power_spectrum(sol, index='dlog'), dominant_frequency(sol, 'vector', 'dlog'),
                  spectrum(sol.U, 'fft'), discrete_log(31, device=device), dlog_order(31, device=device)):
            assert _same(device, t), t.device
        assert (neuron_ipr(sol) - 1).abs().max() < 1e-6
        assert reindex(sol.U, 'dlog').shape[-1] == 30 and _same(device, reindex(sol.U, 'dlog'))
        assert discrete_log(31).device.type == 'cpu'
        fake = type('R', (), dict(config=TrainConfig(p=31, width=16), model=sol,
                                  members=pd.DataFrame(dict(seed=[0, 1], dropout=[0.0, 0.0]))))()
        init = initial_model(fake)
        assert _same(device, init.emb_a) and init.n_members == 2


# ---------------------------------------------------------------------------------------------------- filtration

def test_filtration_under_meta(on_meta, task, device):
    "f^G / f^R, their accuracy table and metric, phase alignment and sparsity: all on the model's device."
    with on_meta():
        m, d = _model(device), _data(task, device)
        ff = frequency_filtration(m)
        assert _same(device, ff.G.emb_a) and _same(device, ff.R.unemb) and _same(device, ff.freq)
        assert (ff.G.U + ff.R.U - m.U).abs().max() < 1e-5
        mul = EnsembleMLP(13, 16, n_members=2, seeds=[3, 4], device=device)
        ffd = frequency_filtration(mul, index='dlog', keep_dc=True, bias='drop')
        assert (ffd.G.W + ffd.R.W - mul.W).abs().max() < 1e-5
        t = filtration_accuracy(m, make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1]))  # CPU data
        assert len(t) == 6 and t.test_acc.between(0, 1).all()
        metric = filtration_metric('R', 'train_acc')
        v = metric(m, make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1]))  # CPU data
        assert _same(device, v) and v.shape == (2,)
        assert torch.equal(v, evaluate(ff.R, d, 'ce')['train_acc'])
        pa = phase_alignment(m)
        assert all(_same(device, pa[k]) for k in ('phase', 'error', 'mse', 'weighted_mse'))
        assert _same(device, phase_alignment(mul, 'mul')['mse'])
        assert _same(device, frequency_sparsity(mul, index='dlog'))
        G, R = split_neurons(filtration.neuron_vectors(mul), dominant_frequency(mul, index='dlog'), index='dlog', zero='R')
        assert _same(device, G) and _same(device, R)


def test_filtration_metric_builds_once_and_copies_nothing(task, device, monkeypatch):
    "The metric builds its f^G model at the first call only; later calls update that model in place; the trainer's data never moves."
    dd = make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1]).to(device)  # as the trainer holds it
    built = []
    real_like = filtration._like
    monkeypatch.setattr(filtration, '_like', lambda model, state: built.append(1) or real_like(model, state))
    moved = []
    real_to = EnsembleData.to
    monkeypatch.setattr(EnsembleData, 'to', lambda self, dev: (torch.device(dev) != self.device and moved.append(1)) or real_to(self, dev))
    m = _model(device)
    metric = filtration_metric()
    first = metric(m, dd).clone()
    with torch.no_grad(): m.unemb.mul_(-1)  # what an optimizer step does: an update in place
    second = metric(m, dd)
    assert len(built) == 1 and len(moved) == 0
    assert torch.equal(second, evaluate(real_like(m, filtration._filtered_states(m, 'G')[0]['G']), _data(task, device), 'ce')['test_acc'])
    assert first.shape == second.shape


def test_filtered_and_masked_models_need_no_random_init(task, device, monkeypatch):
    "f^G, f^R, masked copies and the activation swap are built from weights: the random init is never drawn."
    m, d = _model(device), _data(task, device)
    def no_init(*a, **k): raise AssertionError('a random init was drawn')
    monkeypatch.setattr(EnsembleMLP, '_draw', no_init)
    frequency_filtration(m)
    masked_copies(m, 1, torch.ones(3, 16, dtype=torch.bool))
    activation_swap(m, d, acts=('quad',))
    filtration_metric()(m, d)


# ---------------------------------------------------------------------------------------------------- pruning

def test_pruning_under_meta(on_meta, task, device):
    "Scores, orders, masked copies, pruning curves, partitions, logits and the activation swap on the model's device."
    with on_meta():
        m, d = _model(device), _data(task, device)
        s = neuron_scores(m)
        assert _same(device, s) and _same(device, neuron_scores(m, 'strength'))
        for o in ('low', 'high', 'random'): assert _same(device, prune_order(s[0], o, 3))
        assert torch.equal(prune_order(s[0], 'random', 3).cpu(), prune_order(s[0].cpu(), 'random', 3)), 'seeded alike everywhere'
        keep = partition_masks(s[0], (0.25, 0.5), 'G')
        assert _same(device, keep) and keep.sum(1).tolist() == [4, 8]
        mc = masked_copies(m, 1, keep)
        assert _same(device, mc.emb_a) and mc.n_members == 2
        assert (mc.U[1] - m.U[1] * keep[1, :, None]).abs().max() == 0
        pc = pruning_curves(m, make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1]), fractions=(0, 0.5, 1), loss='ce')
        ref = evaluate(m, d, 'ce')['test_acc'].cpu()
        assert pc.query('fraction == 0').groupby('member').test_acc.first().tolist() == pytest.approx(ref.tolist())
        assert len(partition_sweep(m, d, 1, gammas=(0.5, 1.0))) == 4
        tbl, sel = partition_table(m, d, 0, gammas=(0.5, 1.0))
        assert len(tbl) == 4 and 0 < sel['gamma_G'] <= 1
        sw = activation_swap(m, d, acts=('relu', 'quad'))
        assert sw.query("act == 'relu'").test_acc.tolist() == pytest.approx(ref.tolist()) and m.act == 'relu'
        cl = corrupted_logits(m, d, 1)
        assert len(cl) == int(d.corrupted[1].sum())


def test_pruning_matches_a_loop_reference(task, device):
    "The batched device masks give the same curves as pruning neuron by neuron in the order, on the CPU."
    m, d = _model(device), _data(task, device)
    pc = pruning_curves(m, d, members=[1], orders=('low',), fractions=(0.25,), loss='ce')
    cpu = _model('cpu')
    order = prune_order(neuron_scores(cpu)[1], 'low')
    keep = torch.ones(1, 16, dtype=torch.bool); keep[0, order[:4]] = False
    ref = evaluate(masked_copies(cpu, 1, keep), member_data(_data(task, 'cpu'), 1, 1), 'ce')
    assert pc.test_acc.item() == pytest.approx(ref['test_acc'].item(), abs=1e-6)
    assert pc.corrupted_loss.item() == pytest.approx(ref['corrupted_loss'].item(), rel=1e-4)


# ---------------------------------------------------------------------------------------------------- dynamics

def test_dynamics_under_meta(on_meta, task, device):
    "Per-example gradient norms and the two gradient-norm metrics, with CPU data and a model on `device`."
    with on_meta():
        m = _model(device)
        cpu_data = make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1])
        g = per_example_grad_norms(m, cpu_data)
        assert _same(device, g) and g.shape == (2, 169) and g[~cpu_data.train.to(device)].isnan().all()
        mets = metric_values(grad_norm_metrics(), m, cpu_data)
        noisy, clean = mets['grad_norm_noisy'], mets['grad_norm_clean']
        assert _same(device, noisy) and _same(device, clean) and (noisy > 0).all() and (clean > 0).all()


def test_grad_norms_once_per_log(task, device, monkeypatch):
    "Both gradient-norm numbers of one logged step come from one pass; the trainer's data never moves."
    m, d = _model(device), make_data(task, [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1]).to(device)
    calls, moved = [], []
    real = dynamics.per_example_grad_norms
    monkeypatch.setattr(dynamics, 'per_example_grad_norms', lambda *a, **k: calls.append(1) or real(*a, **k))
    real_to = EnsembleData.to
    monkeypatch.setattr(EnsembleData, 'to', lambda self, dev: (torch.device(dev) != self.device and moved.append(1)) or real_to(self, dev))
    mets = grad_norm_metrics()
    a = metric_values(mets, m, d)
    assert len(calls) == 1, 'one pass for both numbers'
    with torch.no_grad(): m.unemb.mul_(1.5)  # an optimizer step
    b = metric_values(mets, m, d)
    assert len(calls) == 2 and not torch.allclose(a['grad_norm_noisy'], b['grad_norm_noisy'])
    assert not moved, 'the data was already on the device'
    norms = real(m, d).nan_to_num()
    assert torch.allclose(b['grad_norm_clean'], (norms * d.clean).sum(1) / d.clean.sum(1))


# ---------------------------------------------------------------------------------------------------- images

def test_noisy_image_run_under_meta(on_meta, device):
    "The image run is the engine's: it trains on `device` and makes nothing on another one."
    with on_meta():
        run = noisy_image_run('digits', noise=0.2, width=8, steps=2, seeds=(0, 1), device=device)
    assert len(run) == 6 and list(run.columns) == ['seed', 'step', 'corrupted_acc', 'clean_acc', 'test_acc']
    assert run.seed.tolist() == [0, 0, 0, 1, 1, 1] and run[['corrupted_acc', 'clean_acc', 'test_acc']].stack().between(0, 1).all()
    ref = noisy_image_run('digits', noise=0.2, width=8, steps=2, seeds=(0, 1), device='cpu')
    np.testing.assert_allclose(run.test_acc.to_numpy()[[0, 3]], ref.test_acc.to_numpy()[[0, 3]])  # step 0: the same init


@pytest.mark.parametrize('model', ['deep', 'transformer', 'image'])
def test_family_init_under_meta(on_meta, device, model):
    "Every family draws its initial weights on the CPU from the seed, whatever torch's default device is."
    kw = dict(op='digits', p=10, model='deep') if model == 'image' else dict(p=11, model=model)
    with on_meta():
        res = train(TrainConfig(width=16, steps=1, **kw), device=str(device), progress=False)
    assert all(_same(device, v) for v in res.model.state_dict().values())


# ---------------------------------------------------------------------------------------------------- the lead's engine

def test_train_under_meta(on_meta, device):
    with on_meta():
        res = train(TrainConfig(p=11, width=16, steps=3), device=str(device), progress=False)
    assert _same(device, res.model.emb_a) and len(res.results) == 1


def test_evaluate_under_meta(on_meta, device):
    with on_meta():
        m = EnsembleMLP(11, 16, n_members=2, seeds=[0, 1], device=device)
        out = evaluate(m, make_data(ModularTask('add', 11), 0.5, [0.0, 0.3]).to(device))
    assert all(_same(device, v) for v in out.values())


def test_run_chunk_under_meta(on_meta, device):
    from modmem.sweep import plan_sweep, run_chunk
    _, chunks = plan_sweep(TrainConfig(p=11, width=16, steps=3), {'weight_decay': [0.0, 1.0]})
    with on_meta():
        out = run_chunk(chunks[0], device=str(device), weights=True)
    assert len(out['results']) == 2 and all(v.device.type == 'cpu' for v in out['weights'].values())


def test_experiment_network_on_its_device(on_meta, device, tmp_path):
    "`Experiment.network` returns the model and the data on the experiment's device."
    from modmem.experiments import Experiment
    exp = Experiment('p1_curves', 'smoke', out=tmp_path, device=str(device))
    res = exp.sweep(TrainConfig(p=11, width=16, steps=3, log_every=3), {'weight_decay': [0.0, 1.0]})
    with on_meta():
        model, member, data = exp.network(res, 1)
        assert member == 1 and _same(device, model.emb_a) and _same(device, data.train) and _same(device, data.pairs)
        assert evaluate(model, data)['test_acc'].shape == (2,)


def test_a_metric_sees_every_training_step(device):
    "The trainer's metrics are computed afresh at each logged step (an old cache keyed on parameter versions missed the engine's updates)."
    from modmem.dynamics import paper2_config
    cfg = paper2_config(p=11, width=16, noise=0.3, steps=20, log_every=5, lr=1e-2)
    r = train(cfg, device=device, progress=False, metrics=grad_norm_metrics())
    h = r.history[r.history.metric == 'grad_norm_noisy'].sort_values('step')
    assert h.value.nunique() == len(h) == 5, 'one new value per logged step'
    last = metric_values(grad_norm_metrics(), r.model, r.data)['grad_norm_noisy']
    assert abs(float(h.value.iloc[-1]) - float(last[0])) <= 1e-4 * abs(float(last[0]))
