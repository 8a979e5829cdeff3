"""Bit-identity fingerprint of the training engine: a battery of tiny CPU runs through the public API.

Prints one line per run, `name sha256`, over the final weights (every tensor of the model's state dict, in order)
and the history table. Run it at two revisions (`PYTHONPATH=<checkout> python benchmarks/fingerprint.py`): a refactor
that leaves the numerics unchanged prints the same lines.
"""
import hashlib, os, sys
os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
torch.set_num_threads(1)
from modmem.training import TrainConfig, train

def digest(res) -> str:
    "SHA-256 over the model's final state (names, shapes, dtypes, bytes) and the history table as CSV."
    h = hashlib.sha256()
    for k, v in res.model.state_dict().items():
        v = v.detach().cpu().contiguous()
        h.update(f'{k}:{tuple(v.shape)}:{v.dtype}'.encode()); h.update(v.numpy().tobytes())
    h.update(res.history.to_csv(index=False, float_format='%.17g').encode())
    return h.hexdigest()

base = dict(op='add', p=11, width=16, steps=30, log_every=10)
RUNS = {
    'mlp_mse_full': TrainConfig(**base, lr=[0.01, 0.03], weight_decay=[0.0, 1.0]),
    'mlp_ce_full': TrainConfig(**base, loss='ce', act='relu', seed=[0, 1]),
    'mlp_ce_minibatch_dropout_bn': TrainConfig(**base, loss='ce', act='relu', batch_size=8, dropout=[0.0, 0.2], norm='batch',
                                               noise=[0.0, 0.2], seed=[0, 1]),
    'mlp_sgd_momentum': TrainConfig(**base, optimizer='sgd', momentum=0.9, lr=0.1, weight_decay=[0.0, 0.1]),
    'mlp_adam': TrainConfig(**base, optimizer='adam', lr=0.01, weight_decay=[0.0, 0.1]),
    'mlp_muon': TrainConfig(**base, optimizer='muon', lr=0.02, weight_decay=[0.0, 0.1]),
    'mlp_authors_split': TrainConfig(**base, split='authors', train_frac=0.6),
    'deep_mlp': TrainConfig(**base, model='deep', act='relu', depth=4, loss='ce', lr=[0.003, 0.01]),
    'deep_mlp_bn_minibatch': TrainConfig(**base, model='deep', act='relu', norm='batch', batch_size=8, dropout=0.1, loss='ce'),
    'deep_mlp_lazy': TrainConfig(**base, model='deep', act='relu', parameterization='lazy', loss='mse'),
    'transformer': TrainConfig(**{**base, 'width': 16}, model='transformer', act='relu', heads=2, loss='ce', lr=[0.001, 0.003]),
    'transformer_minibatch': TrainConfig(**{**base, 'width': 16}, model='transformer', act='relu', heads=2, loss='ce', batch_size=16, dropout=0.1),
}
try:
    import sklearn.datasets  # the digits set ships with scikit-learn: no download
    RUNS['image_mlp_digits'] = TrainConfig(op='digits', p=10, width=16, steps=20, log_every=10, model='deep', act='relu',
                                           loss='ce', n_examples=300, train_frac=0.5, noise=[0.0, 0.2], batch_size=32)
except ImportError: pass

def models_and_checks() -> str:
    "SHA-256 over the memory and time models of every family (which set a sweep's chunks, hence its cache keys) and the messages of refused settings."
    from modmem.training import train_memory, train_seconds, model_sizes, step_ops
    h = hashlib.sha256()
    for name, cfg in RUNS.items():
        for dev in ('cpu', 'cuda'): h.update(repr((name, dev, train_memory(cfg, 5, 40, device=dev))).encode())
        h.update(repr((name, train_seconds(cfg, 5, 40), model_sizes(cfg), step_ops(cfg), cfg.layers)).encode())
    bad = [dict(model='cnn'), dict(depth=3), dict(model='deep', tied=True), dict(model='deep', depth=1), dict(model='transformer', heads=3),
           dict(model='transformer', norm='batch'), dict(model='deep', norm='layer'), dict(parameterization='lazy'), dict(parameterization='x'),
           dict(n_examples=100), dict(op='digits', p=10), dict(op='digits', model='deep', p=11), dict(op='digits', model='deep', p=10, split='authors'),
           dict(op='digits', model='deep', p=10, n_examples=5000), dict(loss='hinge'), dict(precision='bf16'), dict(lr=float('nan')),
           dict(train_frac=[0.0, 0.5]), dict(batch_size=10 ** 6), dict(model='transformer', init=0.1), dict(model='transformer', depth=0)]
    for kw in bad:
        cfg = TrainConfig(**{**dict(p=11, width=16), **kw})
        try: cfg.validate(cfg.member_table()); msg = 'ok'
        except Exception as e: msg = f'{type(e).__name__}: {e}'
        h.update(msg.encode())
    return h.hexdigest()

if __name__ == '__main__':
    names = sys.argv[1:] or list(RUNS)
    for name in names:
        res = train(RUNS[name], device='cpu', progress=False)
        print(name, digest(res), flush=True)
    if not sys.argv[1:]: print('models_and_checks', models_and_checks())
