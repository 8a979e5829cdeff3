"The explorers, driven from code as a click would drive them: every control picks what it says."
import itertools
import pandas as pd
import pytest
pytest.importorskip('ipywidgets')
from modmem.training import TrainConfig, train
from modmem.sweep import sweep
from modmem.explorers import PhaseExplorer, NeuronExplorer, FiltrationExplorer


@pytest.fixture(scope='module')
def res(tmp_path_factory):
    base = TrainConfig(p=11, width=16, steps=20, log_every=5)
    grid = {('batch_size', 'steps'): [(None, 20), (16, 40)], 'train_frac': [0.5, 0.8], 'noise': [0.1, 0.3]}
    return sweep(base, grid, cache=tmp_path_factory.mktemp('cache'), weights=True, progress=False, device='cpu')


def test_phase_explorer_picks_every_cell(res):
    pe = PhaseExplorer(res, 'batch_size')
    t = res.results.set_index('run')
    for bs, a, x in itertools.product([None, 16], [0.5, 0.8], [0.1, 0.3]):
        pe.controls['batch_size'].value, pe.controls['train_frac'].value, pe.controls['noise'].value = bs, a, x
        r = t.loc[pe.summary['run']]
        assert (r.train_frac, r.noise) == (a, x) and (pd.isna(r.batch_size) if bs is None else r.batch_size == bs)
        assert pe.summary['test_acc'] == float(r.test_acc)
        assert f'α={a:g}, ξ={x:g}' in pe.figure.texts[0].get_text()
    assert [o for o, _ in pe.controls['batch_size'].options] == ['16', 'full batch']


def test_neuron_and_filtration_explorers(res):
    model, member = res.model(3, device='cpu')
    ne = NeuronExplorer(model, member)
    seen = []
    for k in range(model.width):
        ne.controls['rank'].value = k
        seen.append(ne.summary['ipr'])
    assert seen == sorted(seen, reverse=True)
    r = train(TrainConfig(p=11, width=16, steps=30, act='relu', loss='ce', out_bias=True, noise=0.2), device='cpu', progress=False)
    fe = FiltrationExplorer(r.model, r.data)
    for choice in ('shared', 'vector', 'w'):
        fe.controls['choice'].value = choice
        assert f"'{choice}'" in fe.figure.axes[0].get_title()
        assert set(fe.summary) == {f'{n} {c}' for n in ('f', 'f^G', 'f^R') for c in ('test_acc', 'clean_acc', 'corrupted_acc')}
    fe.controls['keep_dc'].value = True
    assert 'DC term in G' in fe.figure.axes[0].get_title()
