"Fourier analysis and frequency filtration: IPR conventions, discrete logs, G/R split, phase alignment."
import math
import numpy as np
import pytest
import torch
from modmem.data import ModularTask, make_data
from modmem.models import EnsembleMLP, analytic_solution
from modmem.training import TrainConfig, train, evaluate
from modmem.fourier import (ipr, neuron_ipr, mean_ipr, ipr_metric, neuron_vectors, dominant_frequency, power_spectrum,
                            primitive_root, is_primitive_root, dlog_order, discrete_log, reindex, spectrum)
from modmem.filtration import (split_curves, split_neurons, frequency_filtration, filtration_accuracy,
                               phase_alignment, frequency_sparsity)


def _acc(model, task, rows=None):
    with torch.no_grad(): pred = model(task.pairs[:, 0], task.pairs[:, 1]).argmax(-1)
    hit = (pred == task.labels).double()
    return (hit if rows is None else hit[:, rows]).mean(1)


def _periodic(p, width, op='add', index='raw', seed=0):
    "Analytic x² network for add/sub (raw index) or mul (discrete-log index, residue 0 set to zero)."
    g = torch.Generator().manual_seed(seed)
    n = p if index == 'raw' else p - 1
    A = (2 / width) ** (1 / 3)
    freq = torch.randint(1, n, (1, width, 1), generator=g).double()
    pu, pv = [(torch.rand(1, width, 1, generator=g, dtype=torch.float64) * 2 - 1) * math.pi for _ in range(2)]
    pw = pu - pv if op == 'sub' else pu + pv
    j = torch.arange(n, dtype=torch.float64)[None, None]
    cu, cv, cw = [A * torch.cos(2 * math.pi * freq * j / n + ph) for ph in (pu, pv, pw)]
    if index == 'dlog':
        order = dlog_order(p)
        full = [torch.zeros(1, width, p, dtype=torch.float64) for _ in range(3)]
        for f, c in zip(full, (cu, cv, cw)): f[..., order] = c
        cu, cv, cw = full
    return EnsembleMLP(p, width, 1).set_weights(cu.float(), cv.float(), cw.transpose(1, 2).float())


def test_ipr_matches_authors_numpy_formula():
    "IPR = sum((a/|a|_2)^4) with a = |rfft(v)| (the authors' calculate_ipr), for random vectors and any scale."
    x = torch.randn(50, 97, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = np.abs(np.fft.rfft(x.numpy()))
    ref = ((a / np.linalg.norm(a, axis=1, keepdims=True)) ** 4).sum(1)
    np.testing.assert_allclose(ipr(x).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(ipr(7.5 * x).numpy(), ref, rtol=1e-12)
    b = np.abs(np.fft.fft(x.numpy()))
    np.testing.assert_allclose(ipr(x, convention='fft').numpy(), ((b / np.linalg.norm(b, axis=1, keepdims=True)) ** 4).sum(1), rtol=1e-12)


def test_analytic_solution_ipr_is_one():
    "Every U row, V row and W column of the analytic solution has rfft IPR 1 (±1e-6), full-FFT IPR 0.5."
    sol = analytic_solution(97, 500, n_members=3, seed=4)
    I = neuron_ipr(sol, per_vector=True)
    assert I.shape == (3, 500, 3)
    assert (I - 1).abs().max() < 1e-6
    assert (neuron_ipr(sol, convention='fft') - 0.5).abs().max() < 1e-6


@pytest.mark.parametrize('init', ['paper1', 'paper2'])
def test_random_weights_ipr_floor(init):
    "Gaussian random weights: mean neuron IPR in [0.035, 0.045] at p = 97 for every member."
    m = EnsembleMLP(97, 500, n_members=4, init=init, seeds=[0, 1, 2, 3])
    v = mean_ipr(m)
    assert ((v > 0.035) & (v < 0.045)).all(), v


def test_ipr_metric_in_training_history():
    "ipr_metric plugs into train(metrics=...) and its logged values equal mean_ipr of the final model."
    res = train(TrainConfig(p=13, width=32, steps=10, log_every=5, weight_decay=[0.0, 1.0]), progress=False, device='cpu',
                metrics={'ipr': ipr_metric()})
    cur = res.curves()
    last = cur[cur.step == 10].sort_values('member').ipr.to_numpy()
    np.testing.assert_allclose(last, mean_ipr(res.model).numpy(), rtol=1e-6)


def test_zero_neurons_are_skipped():
    "A pruned (all-zero) neuron has IPR NaN and does not enter the mean."
    sol = analytic_solution(31, 64)
    U, V, W = sol.U.detach().clone(), sol.V.detach().clone(), sol.W.detach().clone()
    U[0, :10], V[0, :10], W[0, :, :10] = 0, 0, 0
    sol.set_weights(U, V, W)
    assert neuron_ipr(sol)[0, :10].isnan().all()
    assert abs(mean_ipr(sol).item() - 1) < 1e-6


def test_dominant_frequency_choices():
    "shared takes the strongest summed power; vector each curve's own; w the output curve's."
    p, i = 31, torch.arange(31, dtype=torch.float64)
    u = 3 * torch.cos(2 * math.pi * 4 * i / p) + torch.cos(2 * math.pi * 9 * i / p)
    v = 3 * torch.cos(2 * math.pi * 4 * i / p)
    w = 2 * torch.cos(2 * math.pi * 9 * i / p) + torch.cos(2 * math.pi * 4 * i / p)
    X = torch.stack([u, v, w])[None, None]
    assert dominant_frequency(X, 'shared').flatten().tolist() == [4, 4, 4]
    assert dominant_frequency(X, 'vector').flatten().tolist() == [4, 4, 9]
    assert dominant_frequency(X, 'w').flatten().tolist() == [9, 9, 9]
    P = power_spectrum(X)
    assert P.shape == (1, 1, 3, 16) and abs(P[0, 0, 1, 4].item() - (3 * p / 2) ** 2) < 1e-6


@pytest.mark.parametrize('p', [2, 3, 7, 31, 97, 113])
def test_primitive_root_generates_group(p):
    g = primitive_root(p)
    assert is_primitive_root(g, p)
    assert sorted(dlog_order(p).tolist()) == list(range(1, p))
    log = discrete_log(p)
    assert log[0] == -1 and all(pow(g, int(log[x]), p) == x for x in range(1, p))


def test_discrete_log_turns_multiplication_into_addition():
    "log(ab) = log a + log b mod p−1, and log(a/b) = log a − log b, for every nonzero pair."
    for op, sign in (('mul', 1), ('div', -1)):
        t = ModularTask(op, 31)
        nz = (t.pairs > 0).all(1)
        log = discrete_log(31)
        a, b, c = t.pairs[nz, 0], t.pairs[nz, 1], t.labels[nz]
        assert (((log[a] + sign * log[b]) % 30) == log[c]).all()


def test_bad_arguments_raise_value_errors():
    sol = analytic_solution(11, 16)
    with pytest.raises(ValueError, match="'rfft', 'fft'"): ipr(torch.ones(5), convention='dct')
    with pytest.raises(ValueError, match='r must be > 0'): ipr(torch.ones(5), r=0)
    with pytest.raises(ValueError, match="'raw', 'dlog'"): neuron_ipr(sol, index='log')
    with pytest.raises(ValueError, match='prime'): reindex(torch.ones(3, 12), 'dlog')
    with pytest.raises(ValueError, match='not a primitive root'): dlog_order(11, g=3)
    with pytest.raises(ValueError, match="'shared', 'vector', 'w'"): frequency_filtration(sol, choice='max')
    with pytest.raises(ValueError, match="'keep', 'drop'"): frequency_filtration(sol, bias='some')
    with pytest.raises(ValueError, match="'G', 'R'"): frequency_filtration(sol, index='dlog', zero='both')
    with pytest.raises(ValueError, match="'add', 'div', 'mul', 'sub'"): phase_alignment(sol, op='pow')
    with pytest.raises(ValueError, match='tensor \\[E, N, 3, p\\]'): neuron_vectors(torch.ones(2, 3, 5))
    with pytest.raises(ValueError, match='must match'): neuron_vectors(EnsembleMLP(11, 8, n_out=5))


@pytest.mark.parametrize('choice', ['shared', 'vector', 'w'])
@pytest.mark.parametrize('keep_dc', [False, True])
@pytest.mark.parametrize('index,zero', [('raw', 'G'), ('dlog', 'G'), ('dlog', 'R')])
def test_g_plus_r_reconstructs_weights(choice, keep_dc, index, zero):
    "For random weights and every option, G + R is the weights, and R has no power at the split frequency."
    m = EnsembleMLP(31, 40, n_members=2, init='paper2', out_bias=True, seeds=[5, 6])
    X = neuron_vectors(m)
    freq = dominant_frequency(X, choice, index)
    G, R = split_neurons(X, freq, keep_dc, index, zero)
    assert (G + R - X).abs().max() < 1e-12
    Rr = reindex(R, index)
    spec = torch.fft.rfft(Rr).abs()
    assert spec.gather(-1, freq[..., None]).max() < 1e-10
    if keep_dc: assert spec[..., 0].abs().max() < 1e-10
    if index == 'dlog': assert ((G[..., 0] == X[..., 0]) if zero == 'G' else (R[..., 0] == X[..., 0])).all()
    ff = frequency_filtration(m, choice, keep_dc, 'keep', index, zero)
    for name in ('U', 'V', 'W'):
        assert (getattr(ff.G, name) + getattr(ff.R, name) - getattr(m, name)).abs().max() < 1e-6


def test_split_is_an_orthogonal_projection():
    "G is the least-squares fit of a cos/sin pair at the frequency (also at the Nyquist frequency of an even length)."
    for n, k in ((31, 7), (30, 15), (30, 4)):
        x = torch.randn(n, generator=torch.Generator().manual_seed(n + k), dtype=torch.float64)
        i = torch.arange(n, dtype=torch.float64)
        B = torch.stack([torch.cos(2 * math.pi * k * i / n), torch.sin(2 * math.pi * k * i / n)], 1)
        B = B[:, B.norm(dim=0) > 1e-8]  # at the Nyquist frequency the sine column is rounding noise: a rank-1 basis
        Q, _ = torch.linalg.qr(B)
        fit = Q @ (Q.T @ x[:, None])  # the orthogonal projection onto the cos/sin span (lstsq on a near-singular B is not stable)
        G, R = split_curves(x, torch.tensor(k))
        assert (G - fit[:, 0]).abs().max() < 1e-10 and abs((G * R).sum().item()) < 1e-10


def test_filtered_analytic_solution_keeps_full_accuracy():
    "f^G of the analytic solution scores 100 % on all pairs; f^R's weights vanish; bias drop zeroes μ."
    task = ModularTask('add', 97)
    sol = analytic_solution(97, 500, n_members=2, seed=3)
    ff = frequency_filtration(sol)
    assert _acc(ff.G, task).tolist() == [1.0, 1.0]
    assert ff.R.U.abs().max() < 1e-6 and ff.R.V.abs().max() < 1e-6 and ff.R.W.abs().max() < 1e-6
    assert ff.G is not sol and sol.U.abs().max() > 0.1  # the original is untouched
    m = EnsembleMLP(11, 16, out_bias=True, init='paper2')
    with torch.no_grad(): m.bias.fill_(0.3)
    assert (frequency_filtration(m).G.bias == 0.3).all() and (frequency_filtration(m, bias='drop').R.bias == 0).all()


def test_filtration_accuracy_table():
    "Three networks × members, with the trainer's subset accuracies; f's row equals evaluate(model)."
    task = ModularTask('add', 23)
    data = make_data(task, 0.5, [0.0, 0.5], 'wrong', split_seed=[0, 1])
    m = EnsembleMLP(23, 64, n_members=2, act='relu', init='paper2', out_bias=True)
    t = filtration_accuracy(m, data)
    assert len(t) == 6 and set(t.network) == {'f', 'f^G', 'f^R'}
    ev = evaluate(m, data, 'ce')
    f = t[t.network == 'f'].sort_values('member')
    np.testing.assert_allclose(f.test_acc.to_numpy(), ev['test_acc'].numpy(), rtol=1e-6)
    assert np.isnan(f.corrupted_acc.iloc[0]) and not np.isnan(f.corrupted_acc.iloc[1])


def test_tied_model_filtration():
    "A tied model (U = V) filters through U only and stays symmetric."
    m = EnsembleMLP(13, 24, tied=True, init='paper2')
    ff = frequency_filtration(m)
    assert (ff.G.U + ff.R.U - m.U).abs().max() < 1e-6
    a, b = torch.arange(13), torch.arange(13).flip(0)
    assert torch.allclose(ff.G(a, b), ff.G(b, a))


@pytest.mark.parametrize('op', ['add', 'sub'])
def test_phase_alignment_on_periodic_solutions(op):
    "The add and sub periodic networks are exact and aligned for their own op (MSE ≈ 0), not for the other."
    task = ModularTask(op, 61)
    model = _periodic(61, 400, op)
    assert _acc(model, task).item() == 1.0
    assert phase_alignment(model, op)['mse'].item() < 1e-8
    other = 'sub' if op == 'add' else 'add'
    assert phase_alignment(model, other)['mse'].item() > 0.5  # random phases: E[δ²] = π²/3 ≈ 3.3
    rho = frequency_sparsity(model)
    assert (rho - 1).abs().max() < 1e-6


def test_multiplication_periodic_in_discrete_log():
    "A network periodic in log a solves multiplication on nonzero pairs; IPR is 1 only after re-indexing."
    p = 61
    task = ModularTask('mul', p)
    model = _periodic(p, 400, 'add', index='dlog')
    nz = (task.pairs > 0).all(1)
    assert _acc(model, task, nz).item() == 1.0
    assert (neuron_ipr(model, index='dlog') - 1).abs().max() < 1e-6
    assert mean_ipr(model).item() < 0.2
    pa = phase_alignment(model, "mul")
    assert pa["mse"].item() < 1e-8 and pa["error"].isnan().any()  # Nyquist neurons (frequency 30 of 60) have no phase
    ff = frequency_filtration(model, index='dlog')
    assert _acc(ff.G, task, nz).item() == 1.0 and ff.R.U.abs().max() < 1e-6
