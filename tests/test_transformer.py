"The stacked transformer against the plain one (outputs and every gradient), its dropout masks, from_state, member slices through TrainStep, and the unembedding filtration."
import pytest, torch
import torch.nn.functional as F
from modmem.data import ModularTask, make_data
from modmem.training import StackedOptimizer, TrainStep, example_loss
from modmem.transformer import EnsembleTransformer, Transformer, unembedding_filtration
from modmem.fourier import embedding_ipr, unembedding_ipr

def rel(x, y): return ((x - y).norm() / y.norm().clamp(min=1e-30)).item()

def _plain_grads(ref, blk_names=('qkv', 'o', 'fc', 'proj')):
    g = {'tok': ref.wte.weight.grad, 'pos': ref.wpe.weight.grad, 'unemb': ref.lm_head.weight.grad}
    for l, blk in enumerate(ref.blocks):
        for k in blk_names: g[f'{k}{l}'] = blk[k].weight.grad
    return g

@pytest.mark.parametrize('depth', [1, 2])
@pytest.mark.parametrize('heads', [4, 8])
@pytest.mark.parametrize('tied', [False, True])
def test_member_matches_plain(depth, heads, tied):
    p, d, E = 13, 32, 3
    ens = EnsembleTransformer(p, d, E, depth=depth, heads=heads, tied=tied, seeds=[3, 4, 5]).train()
    a, b = ModularTask('add', p).pairs.T
    y = (a + b) % p
    P = ens.leaves()
    out = ens(a, b, params=P)
    grads = dict(zip(P, torch.autograd.grad(example_loss(out, y.expand(E, -1), 'mse').mean(1).sum(), list(P.values()))))
    for e in range(E):
        ref = Transformer.member_of(ens, e)
        ro = ref(a, b)
        assert rel(out[e], ro) < 1e-5
        F.mse_loss(ro, F.one_hot(y, p).float()).backward()
        g = _plain_grads(ref)
        if tied: assert rel(grads['tok'][e], g['tok']) < 1e-5   # wte and lm_head share one tensor: its grad is the sum
        else:
            assert rel(grads['tok'][e], g['tok']) < 1e-5
            assert rel(grads['unemb'][e].T, g['unemb']) < 1e-5
        assert rel(grads['pos'][e], g['pos']) < 1e-5
        for l in range(depth):
            assert rel(torch.cat([grads[k][e, l] for k in 'qkv'], 1).T, g[f'qkv{l}']) < 1e-5
            assert rel(grads['o'][e, l].T, g[f'o{l}']) < 1e-5
            assert rel(grads['mlp_in'][e, l].T, g[f'fc{l}']) < 1e-5
            assert rel(grads['mlp_out'][e, l].T, g[f'proj{l}']) < 1e-5

def test_dropout_masks():
    ens = EnsembleTransformer(11, 16, 3, depth=2, heads=4, seeds=[0, 1, 2], dropout=[0.0, 0.3, 0.5]).train()
    a, b = ModularTask('add', 11).pairs.T
    ens.step = 7
    mask = ens.dropout_mask(ens.mask_shape(3, len(a)), step=7)
    assert mask.shape == ens.mask_shape(3, len(a)) == (3, 121, 2 * 16 + 2 * (4 * 4 + 4 * 16))
    assert torch.equal(mask[0], torch.ones_like(mask[0]))                       # rate 0: every unit kept
    for e, r in ((1, 0.3), (2, 0.5)):
        assert abs((mask[e] == 0).float().mean().item() - r) < 0.03
        assert torch.allclose(mask[e][mask[e] > 0], torch.tensor(1 / (1 - r)), rtol=1e-3)
    torch.testing.assert_close(ens(a, b), ens(a, b, mask=mask))                # self-drawn mask = the trainer's
    torch.testing.assert_close(ens(a, b, members=slice(1, 2)), ens(a, b, mask=mask)[1:2])   # a member's own stream
    ones = torch.ones(ens.mask_shape(3, len(a)))
    torch.testing.assert_close(ens(a, b, mask=ones), ens.eval()(a, b))         # all-ones mask: the eval network
    assert not torch.allclose(ens.train()(a, b)[1], ens.eval()(a, b)[1])

def test_from_state_and_norms():
    ens = EnsembleTransformer(11, 16, 2, depth=2, heads=4, tied=True, seeds=[0, 1], dropout=[0.0, 0.1])
    m = EnsembleTransformer.from_state(ens.state_dict(), 11, 16, 2, depth=2, heads=4, tied=True)
    assert m.dropout_rates == ens.dropout_rates and m.has_dropout
    a, b = ModularTask('add', 11).pairs.T
    torch.testing.assert_close(m.eval()(a, b), ens.eval()(a, b))
    norms = ens.weight_norms()
    assert set(norms) >= {'norm_embed', 'norm_unembed'} and all(v.shape == (2,) for v in norms.values())
    torch.testing.assert_close(norms['norm_embed'], norms['norm_unembed'])   # tied: one table
    assert ens.row_floats() > 0

def test_member_slices_train_the_same():
    dd = make_data(ModularTask('add', 11), [0.5, 0.8, 0.8], noise=0.1, split_seed=[0, 1, 2])
    weights = []
    for chunk in (1, 2, 3):
        m = EnsembleTransformer(11, 16, 3, depth=2, heads=4, seeds=[0, 1, 2], dropout=[0.0, 0.2, 0.1])
        opt = StackedOptimizer(list(m.parameters()), 3e-3, [1.0, 1.0, 10.0], 'adamw', (0.9, 0.98))
        st = TrainStep(m, opt, dd, 'mse', member_chunk=chunk, manual=False)
        m.train()
        for i in range(6): st(i)
        weights.append(torch.cat([q.detach().flatten(1) for q in m.parameters()], 1))
    assert rel(weights[0], weights[2]) < 1e-5 and rel(weights[1], weights[2]) < 1e-5

def test_ipr_and_filtration():
    m = EnsembleTransformer(23, 32, 2, seeds=[0, 1]).eval()
    assert embedding_ipr(m).shape == (2, 32) and unembedding_ipr(m).shape == (2, 32)
    a, b = ModularTask('add', 23).pairs.T
    torch.testing.assert_close(unembedding_filtration(m, 12)(a, b), m(a, b), atol=1e-5, rtol=1e-4)
    assert (unembedding_filtration(m, 2)(a, b) - m(a, b)).abs().max() > 1e-3
    t = EnsembleTransformer(23, 32, 1, tied=True).eval()
    f = unembedding_filtration(t, 12)
    assert not f.tied and torch.equal(f.tok, t.tok)
    torch.testing.assert_close(f(a, b), t(a, b), atol=1e-5, rtol=1e-4)
