"The stacked optimizers against torch.optim on the same models."
import pytest
import torch
import torch.nn.functional as F
from modmem.data import ModularTask, make_data
from modmem.models import EnsembleMLP
from modmem.training import StackedOptimizer, example_loss
from modmem.benchmark import OneHotMLP


def _rel(a, b): return ((a - b).norm() / b.norm()).item()


def _reference(model, e):
    "The authors' one-hot model holding member `e`'s weights."
    ref = OneHotMLP(model.p, model.width).double()
    with torch.no_grad():
        ref.fc1.weight.copy_(torch.cat([model.U[e], model.V[e]], 1)); ref.fc2.weight.copy_(model.W[e])
    return ref


@pytest.mark.parametrize('lrs,wds', [([0.01], [5.0]), ([0.01, 0.003, 0.02], [0.0, 5.0, 15.0])])
def test_adamw_matches_torch_training(lrs, wds):
    "Train both for 50 full-batch MSE steps; every member's weights agree to 1e-5 relative."
    p, width, E = 23, 64, len(lrs)
    task = ModularTask('add', p)
    data = make_data(task, [0.5] * E, [0.3] * E, split_seed=list(range(E)))
    model = EnsembleMLP(p, width, E, seeds=list(range(E))).double()
    refs = [_reference(model, e) for e in range(E)]
    opt = StackedOptimizer(list(model.parameters()), lrs, wds, 'adamw', (0.9, 0.98))
    ref_opts = [torch.optim.AdamW(r.parameters(), lr=lr, weight_decay=wd, betas=(0.9, 0.98)) for r, lr, wd in zip(refs, lrs, wds)]
    rows, valid = data.train_index()
    for _ in range(50):
        opt.zero_grad()
        example_loss(model(task.pairs[rows, 0], task.pairs[rows, 1]), data.labels.gather(1, rows)).mean(1).sum().backward()
        opt.step()
        for e, (r, o) in enumerate(zip(refs, ref_opts)):
            x = F.one_hot(task.pairs[data.train[e]], p).double()
            y = F.one_hot(data.labels[e][data.train[e]], p).double()
            o.zero_grad(); F.mse_loss(r(x), y).backward(); o.step()
    for e, r in enumerate(refs):
        assert _rel(model.U[e].detach(), r.fc1.weight[:, :p].detach()) < 1e-5
        assert _rel(model.V[e].detach(), r.fc1.weight[:, p:].detach()) < 1e-5
        assert _rel(model.W[e].detach(), r.fc2.weight.detach()) < 1e-5
    assert _rel(model.W[0].detach(), _reference(EnsembleMLP(p, width, E, seeds=list(range(E))).double(), 0).fc2.weight) > 1e-2, \
        'the weights moved'


@pytest.mark.parametrize('kind,torch_opt,kw,fused', [
    ('adamw', torch.optim.AdamW, dict(betas=(0.9, 0.98)), True),
    ('adamw', torch.optim.AdamW, dict(betas=(0.9, 0.98)), False),
    ('adam', torch.optim.Adam, dict(betas=(0.9, 0.999)), True),
    ('adam', torch.optim.Adam, dict(betas=(0.9, 0.999)), False),
    ('sgd', torch.optim.SGD, dict(momentum=0.9), False),
    ('sgd', torch.optim.SGD, dict(), False),
])
@pytest.mark.parametrize('lrs,wds', [([0.01, 0.05, 0.002], [0.0, 0.5, 2.0]), ([0.01, 0.01, 0.05], [0.5, 0.5, 0.5])])
def test_same_gradients_same_updates(kind, torch_opt, kw, fused, lrs, wds):
    "Fed identical gradients, each stacked optimizer (torch's fused Adam(W) kernel per group of members or the plain one) matches its torch.optim twin per member (float32)."
    torch.manual_seed(0)
    E = len(lrs)
    params = [torch.randn(E, 7, 5, requires_grad=True), torch.randn(E, 5, requires_grad=True)]
    refs = [[torch.nn.Parameter(p[e].detach().clone()) for p in params] for e in range(E)]
    opt = StackedOptimizer(params, lrs, wds, kind, kw.get('betas', (0.9, 0.999)), momentum=kw.get('momentum', 0.0))
    assert opt.fused == (kind != 'sgd')
    opt.fused = fused
    ref_opts = [torch_opt(r, lr=lr, weight_decay=wd, **kw) for r, lr, wd in zip(refs, lrs, wds)]
    for _ in range(50):
        grads = [torch.randn_like(p) for p in params]
        for p, g in zip(params, grads): p.grad = g.clone()
        opt.step()
        for e in range(E):
            for r, g in zip(refs[e], grads): r.grad = g[e].clone()
            ref_opts[e].step()
    for e in range(E):
        for p, r in zip(params, refs[e]): assert _rel(p[e].detach(), r.detach()) < 1e-5


@pytest.mark.parametrize('kind', ['adamw', 'adam'])
def test_fused_and_foreach_agree(kind):
    "Members sharing one (lr, wd) take torch's fused kernel; the foreach path with per-member factors gives the same weights."
    torch.manual_seed(0)
    params = [[torch.randn(3, 7, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True)] for _ in range(2)]
    with torch.no_grad(): params[1][0].copy_(params[0][0]); params[1][1].copy_(params[0][1])
    opts = [StackedOptimizer(ps, 0.01, 0.5, kind, (0.9, 0.98)) for ps in params]
    opts[1].fused = False
    for _ in range(50):
        grads = [torch.randn_like(p) for p in params[0]]
        for ps, opt in zip(params, opts):
            for p, g in zip(ps, grads): p.grad = g.clone()
            opt.step()
    for a, b in zip(*params): assert _rel(b.detach(), a.detach()) < 1e-6


def test_bad_optimizer_settings():
    p = [torch.zeros(2, 3, requires_grad=True)]
    with pytest.raises(ValueError, match="'adamw', 'adam', 'sgd'"): StackedOptimizer(p, 0.1, 0.0, 'lion')
    with pytest.raises(ValueError, match='one per member'): StackedOptimizer(p, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match='>= 0'): StackedOptimizer(p, -0.1)


def test_muon_matches_torch():
    "Stacked Muon on [E, r, c] parameters equals torch.optim.Muon on each member's paper-orientation [c, r] matrix."
    torch.manual_seed(0)
    E, lrs, wds = 2, [0.02, 0.01], [0.1, 0.0]
    params = [torch.randn(E, 11, 32, requires_grad=True), torch.randn(E, 32, 11, requires_grad=True)]
    refs = [[torch.nn.Parameter(p[e].detach().T.clone()) for p in params] for e in range(E)]
    opt = StackedOptimizer(params, lrs, wds, 'muon')
    ref_opts = [torch.optim.Muon(r, lr=lr, weight_decay=wd) for r, lr, wd in zip(refs, lrs, wds)]
    for _ in range(20):
        grads = [torch.randn_like(p) for p in params]
        for p, g in zip(params, grads): p.grad = g.clone()
        opt.step()
        for e in range(E):
            for r, g in zip(refs[e], grads): r.grad = g[e].T.clone()
            ref_opts[e].step()
    for e in range(E):
        for p, r in zip(params, refs[e]): assert _rel(p[e].detach().T, r.detach()) < 1e-3
