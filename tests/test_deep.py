"A member of the stacked deep MLP equals the plain nn.Module written the usual way, at several depths and settings."
import pytest
import torch
import torch.nn.functional as F
from modmem.data import ModularTask
from modmem.deep import EnsembleDeepMLP, DeepMLP
from modmem.training import example_loss


def close(a, b, tol=1e-5):
    "Relative error of the whole tensor (‖a − b‖ / ‖b‖), as the engine's equivalence tests measure it."
    err = ((a - b).norm() / b.norm().clamp(min=1e-12)).item()
    assert err <= tol, err


@pytest.mark.parametrize('depth,norm,param,act', [(2, None, 'standard', 'relu'), (3, None, 'lazy', 'relu'),
                                                  (4, 'batch', 'standard', 'relu'), (3, 'batch', 'lazy', 'quad')])
def test_member_equals_plain_module(depth, norm, param, act):
    p, N, E = 11, 20, 3
    ens = EnsembleDeepMLP(p, N, E, depth=depth, norm=norm, parameterization=param, act=act, seeds=[4, 5, 6]).train()
    pairs = ModularTask('add', p).pairs
    a, b, y = pairs[:, 0], pairs[:, 1], pairs.sum(1) % p
    P = ens.leaves()
    out = ens(a, b, params=P)
    loss = example_loss(out, y.expand(E, -1), 'mse').mean(1).sum()
    grads = dict(zip(P, torch.autograd.grad(loss, list(P.values()))))
    for e in range(E):
        ref = DeepMLP.member_of(ens, e).train()
        close(out[e], ref(a, b))
        F.mse_loss(ref(a, b), F.one_hot(y, p).float()).backward()
        close(grads['unemb'][e].T, ref.out.weight.grad)
        close(torch.cat([grads['emb_a'][e].T, grads['emb_b'][e].T], 1), ref.layers[0].weight.grad)
        for l in range(depth - 2):
            close(grads['inner'][e, l].T, ref.layers[l + 1].weight.grad)
