"Every `full` phase-diagram study plans into chunks that fit an 80 GB GPU and a GPU lease, without training (and without a GPU); the plan is the same on every large GPU and whatever ran before."
import pytest
import modmem.plan as plan_mod
from modmem.studies import STUDIES, study
from modmem.plan import plan_sweep, CHUNK_SECONDS, PLAN_MEMORY
from modmem.training import n_train_rows, train_memory, TrainConfig

GPU = 80 * 10 ** 9  # an H100's memory, as mem_get_info would report most of it free


@pytest.mark.parametrize('name', STUDIES)
def test_full_study_fits_80gb(name):
    s = study(name, 'full')
    table, chunks = plan_sweep(s.base, s.grid, device='cuda', memory=GPU)
    assert sorted(r for c in chunks for r in c.runs) == list(range(len(table))), 'every run in exactly one chunk'
    for c in chunks:
        mem = c.memory('cuda')
        assert mem['total'] <= GPU, (name, c, {k: v / 1e9 for k, v in mem.items()})
        assert c.seconds() <= CHUNK_SECONDS or len(c.runs) == 1, (name, c, c.seconds())
        sizes = {n_train_rows(c.config, f) for f in c.members.train_frac}
        if c.config.batch_size is None: assert len(sizes) == 1, f'{name}: a full-batch chunk mixes training-set sizes {sorted(sizes)}'
    # Figs. 29-30 (N = 5000) are the tightest: 68 members of one α take about 72 GB


def test_minibatch_chunks_by_batch_size_not_alpha():
    "Figs. 9-11: a minibatch step has the batch's shape whatever α is, so each batch size is one chunk of every α (17, not 289, chunks)."
    s = study('batchnorm', 'full')
    _, chunks = plan_sweep(s.base, s.grid, s.chunk_size, device='cuda', memory=GPU)
    assert len(chunks) == len({c.config.batch_size for c in chunks}) == 4, [len(c.runs) for c in chunks]


@pytest.mark.parametrize('name', ['weight_decay', 'wide_weight_decay', 'batchnorm'])
def test_plan_is_the_same_on_every_large_gpu(name, monkeypatch):
    "The default budget comes from the device's size, capped at PLAN_MEMORY: an H100 80 GB and an H200 141 GB plan alike, and nothing free or allocated enters."
    s = study(name, 'full')
    keys = []
    for total in (81559 * 2 ** 20, 143771 * 2 ** 20):  # what an H100 80 GB and an H200 report
        monkeypatch.setattr(plan_mod, 'device_capacity', lambda device=None, t=total: t)
        keys.append([c.key for c in plan_sweep(s.base, s.grid, s.chunk_size, device='cuda')[1]])
    assert keys[0] == keys[1]
    monkeypatch.setattr(plan_mod, 'device_capacity', lambda device=None: 40 * 10 ** 9)  # a smaller GPU plans for its own size
    assert plan_mod.memory_budget('cuda') == int(0.85 * 40e9) < PLAN_MEMORY


def test_memory_model_grows_with_members_and_rows():
    cfg = TrainConfig(p=97, width=500)
    a, b, c = (train_memory(cfg, n, r, device='cuda')['total'] for n, r in ((16, 4704), (32, 4704), (32, 8467)))
    assert a < b < c
    assert train_memory(cfg, 289, 4704, device='cuda')['total'] < 80e9 < train_memory(TrainConfig(p=97, width=5000), 289, 8467, device='cuda')['total']


def test_free_cuda_memory_counts_the_allocators_cached_blocks(monkeypatch):
    "What an earlier run left in PyTorch's caching allocator is free for the next run: the driver counts it as used."
    import torch
    from modmem import training
    monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device=None: (10 * 2 ** 30, 80 * 2 ** 30))   # the driver: 10 GiB free
    monkeypatch.setattr(torch.cuda, 'memory_reserved', lambda device=None: 50 * 2 ** 30)              # the allocator holds 50 GiB
    monkeypatch.setattr(torch.cuda, 'memory_allocated', lambda device=None: 2 * 2 ** 30)              # of which 2 GiB are live tensors
    assert training._free_memory('cuda') == (10 + 50 - 2) * 2 ** 30


@pytest.mark.parametrize('over', [dict(), dict(dropout=0.3), dict(batch_size=32), dict(norm='batch', batch_size=32),
                                  dict(model='transformer', act='relu', width=32), dict(optimizer='muon')])
def test_time_model_counts_about_the_ops_of_a_step(over):
    "The launch floor of `train_seconds` uses `step_ops`: within a factor 1.5 of what the op counter counts (one slice, as on a GPU)."
    from modmem.benchmark import count_ops
    from modmem.training import step_ops
    cfg = TrainConfig(**{**dict(p=23, width=64, noise=0.2, train_frac=0.5, seed=[0, 1, 2, 3]), **over})
    n, _ = count_ops(cfg, member_chunk=4, row_chunk=2 ** 31)
    assert n / 1.5 <= step_ops(cfg) <= 1.5 * n, (over, n, step_ops(cfg))
