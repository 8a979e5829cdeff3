"The stacked image MLP against the plain nn.Linear network (outputs and every gradient), image tasks from IDX files, and image runs through train and sweep."
import gzip, struct
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from modmem.image_mlp import EnsembleImageMLP, ImageMLP, ImageTask, image_task, load_image_set
from modmem.data import make_data
from modmem.training import TrainConfig, train, evaluate, example_loss, config_data


def close(a, b, tol=1e-5):
    err = ((a - b).norm() / b.norm().clamp(min=1e-12)).item()
    assert err <= tol, err


@pytest.mark.parametrize('depth,dropout', [(2, 0.0), (4, 0.0), (3, 0.3)])
def test_member_equals_plain_module(depth, dropout):
    task = image_task('digits', 200)
    E = 3
    ens = EnsembleImageMLP(10, 24, E, depth=depth, n_inputs=64, seeds=[1, 2, 3], dropout=dropout).set_images(task.images('cpu')).train()
    idx, y = torch.arange(200), task.labels
    mask = ens.dropout_mask((E, 200, 24), step=5) if dropout else None
    P = ens.leaves()
    out = ens(idx, None, params=P, mask=mask)
    grads = dict(zip(P, torch.autograd.grad(example_loss(out, y.expand(E, -1), 'ce').mean(1).sum(), list(P.values()))))
    for e in range(E):
        ref = ImageMLP.member_of(ens, e)
        x = task.x
        h = ref.layers[0](x) * (mask[e] if mask is not None else 1)   # the first hidden layer's dropout, written out
        z = ref.act(h)
        for layer in ref.layers[1:]: z = ref.act(layer(z))
        o = ref.out(z)
        close(out[e], o)
        F.cross_entropy(o, y).backward()
        close(grads['first'][e].T, ref.layers[0].weight.grad)
        close(grads['unemb'][e].T, ref.out.weight.grad)
        for l in range(depth - 2): close(grads['inner'][e, l].T, ref.layers[l + 1].weight.grad)


def _idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    with gzip.open(path, 'wb') as f: f.write(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.tobytes())


def test_idx_files_make_a_task(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    for split, n in (('train', 20), ('t10k', 8)):
        _idx(tmp_path / f'{split}-images-idx3-ubyte.gz', rng.integers(0, 256, (n, 28, 28)))
        _idx(tmp_path / f'{split}-labels-idx1-ubyte.gz', rng.integers(0, 10, n))
    monkeypatch.setenv('MODMEM_MNIST', str(tmp_path))
    load_image_set.cache_clear()
    t = image_task('mnist')
    assert (len(t), t.x.shape[1], t.p) == (28, 784, 10) and float(t.x.max()) <= 1
    assert image_task('mnist', 10, seed=3).labels.tolist() == image_task('mnist', 10, seed=3).labels.tolist()
    d = make_data(t, 0.5, noise=0.5, mode='wrong')
    assert d.summary().n_corrupted.tolist() == [7] and (d.labels[d.corrupted] != d.true_labels.expand(1, -1)[d.corrupted]).all()
    load_image_set.cache_clear()


def test_train_and_rebuild_an_image_run():
    cfg = TrainConfig(op='digits', p=10, n_examples=300, model='deep', depth=3, width=32, act='relu', loss='ce', lr=1e-3,
                      train_frac=0.6, noise=0.2, weight_decay=[0.0, 1.0], dropout=[0.0, 0.2], steps=20, log_every=10)
    res = train(cfg, progress=False, device='cpu')
    assert type(res.model).__name__ == 'EnsembleImageMLP' and len(res.results) == 4
    assert {'norm_in', 'norm_H', 'norm_W'} <= set(res.results.columns)
    from modmem.training import model_from_state, config_task
    back = model_from_state(cfg, res.model.state_dict(), 4).set_images(config_task(cfg).images('cpu'))
    torch.testing.assert_close(evaluate(back, res.data, 'ce')['test_acc'], torch.tensor(res.results.test_acc.values, dtype=torch.float32))
    assert 'images' not in res.model.state_dict()   # the images are data, not weights
