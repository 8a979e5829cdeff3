"Pruning and partitioning: masked copies, pruning curves, strength, Algorithm 1 masks, activation swap."
import numpy as np
import pandas as pd
import pytest
import torch
from modmem.data import ModularTask, make_data
from modmem.models import EnsembleMLP, analytic_solution
from modmem.training import evaluate
from modmem.pruning import (neuron_strength, neuron_scores, masked_copies, member_data, prune_order, pruning_curves,
                            neurons_needed, corrupted_logits)
from modmem.partition import partition_masks, partition_sweep, select_gammas, activation_swap


@pytest.fixture(scope='module')
def setup():
    model = EnsembleMLP(31, 40, n_members=2, act='relu', seeds=[0, 1], out_bias=True)
    with torch.no_grad(): model.bias.normal_()
    data = make_data(ModularTask('add', 31), [0.5, 0.6], [0.3, 0.5], 'wrong', split_seed=[0, 1])
    return model, data


def test_masked_copy_all_kept_matches_member(setup):
    model, data = setup
    m = masked_copies(model, 1, torch.ones(3, 40, dtype=torch.bool))
    a, b = data.pairs[:, 0], data.pairs[:, 1]
    with torch.no_grad():
        ref = model(a, b)[1]
        out = m(a, b)
    for k in range(3): assert torch.allclose(out[k], ref, atol=1e-6)
    with torch.no_grad(): empty = masked_copies(model, 1, torch.zeros(1, 40, dtype=torch.bool))(a, b)[0]
    assert torch.allclose(empty, model.bias[1].expand_as(empty)), 'all pruned leaves only the output bias'


def test_pruning_one_neuron_equals_removing_its_contribution(setup):
    model, data = setup
    keep = torch.ones(1, 40, dtype=torch.bool); keep[0, 7] = False
    a, b = data.pairs[:5, 0], data.pairs[:5, 1]
    with torch.no_grad():
        h = torch.relu(model.hidden(a, b))[0]
        expected = model(a, b)[0] - h[:, 7:8] * model.W[0, :, 7][None]
        got = masked_copies(model, 0, keep)(a, b)[0]
    assert torch.allclose(got, expected, atol=1e-5)


def test_pruning_curve_level_zero_is_the_model(setup):
    model, data = setup
    pc = pruning_curves(model, data, fractions=(0, 0.5, 1), loss='ce')
    ref = evaluate(model, data, 'ce')
    for e in range(2):
        for o in ('low', 'high', 'random'):
            row = pc[(pc.member == e) & (pc.order == o) & (pc.fraction == 0)].iloc[0]
            assert abs(row.test_acc - ref['test_acc'][e].item()) < 1e-6
            assert abs(row.corrupted_loss - ref['corrupted_loss'][e].item()) < 1e-4
    assert set(pc.n_left) == {40, 20, 0}


def test_orders_are_sorted_and_random_is_seeded():
    s = torch.rand(100, generator=torch.Generator().manual_seed(0))
    low, high = prune_order(s, 'low'), prune_order(s, 'high')
    assert (s[low].diff() >= 0).all() and (s[high].diff() <= 0).all()
    assert torch.equal(prune_order(s, 'random', 3), prune_order(s, 'random', 3))
    assert not torch.equal(prune_order(s, 'random', 3), prune_order(s, 'random', 4))


def test_strength_formula_quad():
    m = EnsembleMLP(13, 6, seeds=2)
    u, v, w = m.U[0, 2].abs().max(), m.V[0, 2].abs().max(), m.W[0, :, 2].abs().max()
    assert torch.allclose(neuron_strength(m)[0, 2], w * (u + v) ** 2)
    assert torch.allclose(neuron_scores(analytic_solution(31, 20)), torch.ones(1, 20, dtype=torch.float64), atol=1e-6)


def test_partition_masks_top_and_bottom_are_complementary():
    s = torch.randn(50)
    G, R = partition_masks(s, (0.5,), 'G')[0], partition_masks(s, (0.5,), 'R')[0]
    assert G.sum() == 25 and R.sum() == 25 and not (G & R).any()
    assert s[G].min() >= s[R].max()
    assert partition_masks(s, (0.01, 1.0), 'G').sum(1).tolist() == [1, 50]


def test_partition_sweep_full_gamma_is_the_model(setup):
    model, data = setup
    sw = partition_sweep(model, data, member=1, score='strength', gammas=(0.5, 1.0))
    ref = evaluate(model, data, 'ce')
    for side in ('G', 'R'):
        row = sw[(sw.side == side) & (sw.gamma == 1.0)].iloc[0]
        assert abs(row.corrupted_acc - ref['corrupted_acc'][1].item()) < 1e-6 and row.n_kept == 40
    sel = select_gammas(sw, ref['corrupted_acc'][1].item())
    assert 0 < sel['gamma_G'] <= 1 and 0 < sel['gamma_R'] <= 1


def test_neurons_needed_criterion():
    c = pd.DataFrame(dict(order='low', fraction=[0, 0.5, 1], n_left=[10, 5, 0], test_acc=[0.9, 0.85, 0.95]))
    assert neurons_needed(c) == 10 and neurons_needed(c, tol=0.06) == 0
    with pytest.raises(ValueError, match='fraction 0'): neurons_needed(c.iloc[1:])


def test_activation_swap_and_logits(setup):
    model, data = setup
    sw = activation_swap(model, data, acts=('relu', 'reverse_relu'))
    ref = evaluate(model, data, 'ce')
    assert abs(sw.query("act == 'relu' and member == 0").test_acc.item() - ref['test_acc'][0].item()) < 1e-6
    assert model.act == 'relu', 'the swap does not change the model'
    cl = corrupted_logits(model, data, 1)
    assert len(cl) == int(data.corrupted[1].sum()) and (data.labels[1, cl.row] != data.true_labels[cl.row]).all()


def test_bad_input():
    m = EnsembleMLP(13, 6)
    with pytest.raises(ValueError, match="'ipr', 'strength'"): neuron_scores(m, 'l2')
    with pytest.raises(ValueError, match="'G', 'R'"): partition_masks(torch.rand(4), side='both')
    with pytest.raises(ValueError, match='norm=None'): masked_copies(EnsembleMLP(13, 6, norm='layer'), 0, torch.ones(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r'bool tensor \[K, 6\]'): masked_copies(m, 0, torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r'bool tensor \[K, 6\]'): masked_copies(m, 0, torch.ones(1, 6))
    with pytest.raises(ValueError, match=r'member must be an integer in \[0, 1\)'): masked_copies(m, 1, torch.ones(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r'\[0, 1\)'): pruning_curves(m, make_data(ModularTask('add', 13)), members=[3])


def test_device_masks_match_loop_definition(setup):
    "Pruning masks built from ranks equal the loop definition: the first n neurons of the order are pruned."
    model, data = setup
    s = neuron_scores(model)[0]
    for o in ('low', 'high', 'random'):
        pc = pruning_curves(model, data, members=[0], orders=(o,), fractions=(0.3,), loss='ce', seed=5)
        keep = torch.ones(1, 40, dtype=torch.bool); keep[0, prune_order(s, o, 5)[:12]] = False
        ref = evaluate(masked_copies(model, 0, keep), member_data(data, 0, 1), 'ce')
        assert abs(pc.test_acc.item() - ref['test_acc'].item()) < 1e-9 and pc.n_left.item() == 28
    g = partition_masks(s, (0.3,), 'G')[0]
    assert g.sum() == 12 and s[g].min() >= s[~g].max()
