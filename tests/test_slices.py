"The engine's step: member slices give the same members as one whole ensemble, no host syncs, and chunks that fit."
import contextlib
from dataclasses import replace
import pytest
import torch
from modmem.data import ModularTask, make_data
from modmem.models import EnsembleMLP
from modmem.training import TrainConfig, train, build_training, member_frame

CASES = {
    'full batch': dict(),
    'minibatch': dict(batch_size=16),
    'dropout': dict(dropout=[0.0, 0.3, 0.6]),
    'batchnorm': dict(norm='batch', batch_size=16),
    'layernorm': dict(norm='layer'),
    'cross-entropy': dict(loss='ce', out_bias=True),
    'sgd momentum': dict(optimizer='sgd', momentum=0.9, lr=0.1),
    'muon': dict(optimizer='muon', lr=0.01),
    'relu, tied': dict(act='relu', tied=True),
    'gelu': dict(act='gelu'),
}


def _weights(cfg, members, device, member_chunk=None, row_chunk=None, steps=6):
    "Train `members` of `cfg` for `steps` steps through TrainStep with the given slicing; return the final state."
    _, model, _, step = build_training(cfg, members, device, member_chunk, row_chunk)
    for i in range(steps): step(i)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize('case', list(CASES))
def test_slices_equal_whole(case, device):
    "member_chunk=1 (and small row tiles) and member_chunk=E give the same members (≤ 1e-6 relative)."
    over = CASES[case]
    cfg = TrainConfig(p=13, width=24, steps=6, noise=0.2, weight_decay=[0.0, 1.0], train_frac=[0.5, 0.5, 0.7],
                      **{k: v for k, v in over.items() if k != 'dropout'})
    members = member_frame(cfg)
    if 'dropout' in over:
        members['dropout'] = [over['dropout'][i % 3] for i in range(len(members))]
    E = len(members)
    whole = _weights(cfg, members, device, member_chunk=E)
    tiles = None if cfg.norm == 'batch' else 7
    # member slices alone: 1e-6; row tiles too change the order of the sums over rows: 1e-5
    # (Muon orthogonalizes in bfloat16, so its rounding shows at 1e-2)
    for chunk, rows, tol in ((1, None, 1e-6), (2, None, 1e-6), (1, tiles, 1e-5)):
        sliced = _weights(cfg, members, device, member_chunk=chunk, row_chunk=rows)
        for k in whole:
            if whole[k].is_floating_point():
                scale = whole[k].abs().max().clamp(min=1e-12)
                err = ((sliced[k] - whole[k]).abs().max() / scale).item()
                assert err <= (tol if cfg.optimizer != 'muon' else 1e-2), (case, chunk, rows, k, err)


def test_member_alone_equals_member_in_ensemble(device):
    "With per-member dropout streams, a member trains the same alone as inside a larger ensemble."
    cfg = TrainConfig(p=11, width=16, steps=8, noise=0.2, dropout=[0.0, 0.5], weight_decay=[0.0, 2.0], seed=[3, 4])
    both = train(cfg, device=device, progress=False)
    alone = train(replace(cfg, dropout=0.5, weight_decay=2.0, seed=4), device=device, progress=False)
    e = both.results.index[(both.results.dropout == 0.5) & (both.results.weight_decay == 2.0) & (both.results.seed == 4)][0]
    torch.testing.assert_close(alone.model.unemb[0], both.model.unemb[e], rtol=1e-5, atol=1e-7)


@contextlib.contextmanager
def _no_host_sync():
    "Make every way a tensor's value reaches Python raise, as CUDA's sync debug mode would on a GPU."
    names = ['item', 'tolist', '__bool__', '__float__', '__int__', 'numpy', 'cpu', '__index__']
    saved = {n: getattr(torch.Tensor, n) for n in names}
    def fail(n):
        def raiser(self, *a, **k): raise AssertionError(f"host sync: Tensor.{n} called inside the training step")
        return raiser
    try:
        for n in names: setattr(torch.Tensor, n, fail(n))
        yield
    finally:
        for n, f in saved.items(): setattr(torch.Tensor, n, f)


@pytest.mark.parametrize('case', ['full batch', 'minibatch', 'dropout', 'batchnorm', 'cross-entropy', 'muon'])
def test_step_has_no_host_sync(case, device):
    "Once built, a TrainStep never reads a tensor's value on the host (minibatch epochs, dropout, padding included)."
    over = CASES[case]
    cfg = TrainConfig(p=13, width=24, noise=0.2, train_frac=[0.5, 0.7], **{k: v for k, v in over.items() if k != 'dropout'})
    members = member_frame(cfg)
    if 'dropout' in over: members['dropout'] = [0.0, 0.3]
    _, model, _, step = build_training(cfg, members, device, member_chunk=1)
    with _no_host_sync():
        for i in range(12): step(i)  # 12 steps cross several minibatch epochs
    assert torch.isfinite(model.unemb).all()
