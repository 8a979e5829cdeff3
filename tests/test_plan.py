"Every `full` phase-diagram study plans into chunks that fit an 80 GB GPU, without training (and without a GPU)."
import pytest
from modmem.studies import STUDIES, study
from modmem.sweep import plan_sweep
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
        sizes = {n_train_rows(c.config, f) for f in c.members.train_frac}
        assert len(sizes) == 1, f'{name}: a chunk mixes training-set sizes {sorted(sizes)}'
    # Figs. 29-30 (N = 5000) are the tightest: 68 members of one α take about 72 GB


def test_memory_model_grows_with_members_and_rows():
    cfg = TrainConfig(p=97, width=500)
    a, b, c = (train_memory(cfg, n, r, device='cuda')['total'] for n, r in ((16, 4704), (32, 4704), (32, 8467)))
    assert a < b < c
    assert train_memory(cfg, 289, 4704, device='cuda')['total'] < 80e9 < train_memory(TrainConfig(p=97, width=5000), 289, 8467, device='cuda')['total']
