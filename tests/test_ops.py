"""aten ops per training step (issue 22): the full-batch step costs a fixed number of ops whatever E, the optimizer's update
and dropout cost the same whatever the members' (lr, wd) groups and E, and the views a step reads are views of the model."""
from dataclasses import replace
import pytest
import torch
from modmem.benchmark import OpCounter, count_ops, op_table, graph_check
from modmem.training import TrainConfig, StackedOptimizer, build_training, member_frame

BASE = TrainConfig(p=23, width=64, weight_decay=1.0)
ALL_ROWS = 2 ** 31  # one row tile: the GPU's shape


def ops(cfg, members=None, device='cpu'):
    E = len(member_frame(cfg, members))
    return count_ops(cfg, members, device, member_chunk=E, row_chunk=ALL_ROWS)[0]


def test_full_batch_step_is_at_most_40_ops_for_any_E():
    counts = [ops(replace(BASE, seed=list(range(E)))) for E in (1, 16, 289)]
    assert counts[0] == counts[1] == counts[2] <= 40, counts


def test_other_cases_do_not_grow_with_E():
    small, large = (op_table(sizes=(), members=E).set_index('case').ops for E in (4, 16))
    assert list(small.index) == ['two (lr, wd) groups', 'dropout', 'minibatch', 'BatchNorm', 'transformer', 'Muon']
    assert small.equals(large), (small, large)


def test_groups_and_dropout_patterns_cost_the_same():
    "Two or sixteen (lr, wd) groups, dropout on some members or all: the same ops."
    def table(**per_member):
        cfg = replace(BASE, seed=list(range(16)))
        mem = member_frame(cfg)
        for k, v in per_member.items(): mem[k] = v
        return ops(cfg, mem)
    assert table(weight_decay=[0.0, 1.0] * 8) == table(weight_decay=[0.1 * i for i in range(16)]) == \
        table(lr=[0.01 * (1 + i) for i in range(16)], weight_decay=[0.5] * 16)
    assert table(dropout=[0.0, 0.3] * 8) == table(dropout=[0.1 * (i % 9) for i in range(16)]) == table(dropout=[0.5] * 16)


@pytest.mark.parametrize('kind', ['adamw', 'adam', 'sgd', 'muon'])
def test_update_ops_do_not_depend_on_E_or_groups(kind):
    def count(E, lrs):
        torch.manual_seed(0)
        params = [torch.randn(E, 7, 5, requires_grad=True), torch.randn(E, 5, requires_grad=True)]
        opt = StackedOptimizer(params, lrs, [0.1 * (i % 3) for i in range(E)], kind, momentum=0.9)
        for p in params: p.grad = torch.randn_like(p)
        opt.step()
        with OpCounter() as c: opt.step()
        return sum(c.counts.values())
    assert count(4, [0.01, 0.02, 0.03, 0.04]) == count(32, [0.01] * 16 + [0.02] * 16) == count(32, [0.001 * (i + 1) for i in range(32)])


def test_step_views_are_the_models_storage():
    "The views a TrainStep makes once stay views of the model's parameters: updates show in the model and evaluation."
    cfg = replace(BASE, seed=[0, 1, 2], noise=0.2)
    _, model, opt, step = build_training(cfg, member_frame(cfg), 'cpu', member_chunk=2)
    before = model.unemb.detach().clone()
    for i in range(3): step(i)
    assert not torch.equal(model.unemb, before)
    for pt in step.parts:
        for q, v in zip(model.parameters(), pt.params):
            assert v.data_ptr() == q[pt.sl].data_ptr() and torch.equal(v, q[pt.sl])
    assert opt._t.item() == opt.t == 3


def test_graph_check_refuses_the_cpu():
    with pytest.raises(ValueError, match='CUDA device'): graph_check('cpu')
    _, _, _, step = build_training(BASE, member_frame(BASE), 'cpu')
    with pytest.raises(ValueError, match='CUDA device'): step.capture()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a GPU')
def test_graph_replays_the_eager_step():
    assert graph_check('cuda') < 1e-5
