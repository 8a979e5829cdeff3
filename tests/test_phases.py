"Phase classifier (paper 1 Table 2) on synthetic accuracies and histories, and the phase-diagram plots."
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from modmem.phases import (PHASES, UNDECIDED, PHASE_COLORS, classify_phase, phases_from_history, add_phases,
                           plot_phase_diagram, plot_phase_rows)


def hist(curves, every=100):
    "Tidy history from {member: (train list, test list)}."
    rows = []
    for m, (tr, te) in curves.items():
        for i, (a, b) in enumerate(zip(tr, te)):
            rows += [dict(step=every * i, member=m, metric='train_acc', value=a),
                     dict(step=every * i, member=m, metric='test_acc', value=b)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize('train,test,noise,peak,phase', [
    (0.98, 0.98, 0.35, 0.99, 'Coexistence'),
    (0.90, 0.90, 0.35, 0.90, 'Coexistence'),           # both thresholds are inclusive
    (0.89, 0.95, 0.35, 0.95, 'Partial Inversion'),
    (0.70, 0.95, 0.35, 0.95, 'Partial Inversion'),     # on the line 100(1.05 - 0.35) % = 70 %
    (0.6999, 0.95, 0.35, 0.95, 'Full Inversion'),
    (0.654, 1.0, 0.35, 1.0, 'Full Inversion'),
    (1.0, 0.8999, 0.35, 0.8999, 'Memorization'),
    (1.0, 0.2, 0.35, 0.95, 'Memorization'),            # a high peak does not matter when train is high
    (0.01, 0.01, 0.35, 1.0, 'Forgetting'),
    (0.01, 0.01, 0.35, 0.90, 'Forgetting'),
    (0.3, 0.05, 0.35, 0.8999, 'Confusion'),
    (0.89, 0.95, 0.20, 0.95, 'Partial Inversion'),     # ξ = 0.2: window [85 %, 90 %)
    (0.84, 0.95, 0.20, 0.95, 'Full Inversion'),
])
def test_table2(train, test, noise, peak, phase):
    assert classify_phase(train, test, noise, peak) == phase


@pytest.mark.parametrize('noise', [0.0, 0.05, 0.1, 0.15])
def test_no_partial_inversion_at_low_noise(noise):
    train = np.linspace(0, 1, 2001)
    ph = classify_phase(train, np.ones_like(train), noise, np.ones_like(train))
    assert 'Partial Inversion' not in set(ph)
    assert set(ph[train < 0.9]) == {'Full Inversion'} and set(ph[train >= 0.9]) == {'Coexistence'}


def test_partial_inversion_window_just_above_015():
    train = np.linspace(0, 1, 2001)
    ph = classify_phase(train, np.ones_like(train), 0.16, np.ones_like(train))
    part = train[ph == 'Partial Inversion']
    assert part.min() == pytest.approx(0.89, abs=1e-3) and part.max() < 0.9


def test_vectorized_shapes_and_broadcast_noise():
    ph = classify_phase([0.98, 0.5, 1.0], [0.98, 1.0, 0.1], [0.35, 0.35, 0.35], [0.98, 1.0, 0.1])
    assert list(ph) == ['Coexistence', 'Full Inversion', 'Memorization']
    assert isinstance(classify_phase(0.5, 0.5, 0.3, 0.5), str)
    assert classify_phase(0.1, 0.1, 0.3) == UNDECIDED


def test_custom_threshold_and_offset():
    assert classify_phase(0.85, 0.85, 0.3, 0.85, threshold=0.8) == 'Coexistence'
    assert classify_phase(0.72, 0.95, 0.3, 0.95, offset=1.0) == 'Partial Inversion'
    assert classify_phase(0.72, 0.95, 0.3, 0.95) == 'Full Inversion'


def test_bad_input():
    with pytest.raises(ValueError, match='not percentages'): classify_phase(98.0, 97.0, 0.35)
    with pytest.raises(ValueError, match='NaN'): classify_phase(0.9, float('nan'), 0.35)
    with pytest.raises(ValueError, match='noise'): classify_phase(0.9, 0.9, 1.5)


def test_forgetting_and_confusion_from_histories():
    h = hist({0: ([0.0, 1.0, 0.65, 0.02], [0.0, 0.6, 1.0, 0.02]),   # groks, then collapses (Fig. 8)
              1: ([0.0, 0.3, 0.2, 0.02], [0.0, 0.5, 0.3, 0.02]),    # never generalizes
              2: ([0.0, 0.5, 0.2, 0.02], [0.0, 0.899, 0.3, 0.02]),  # came close, never reached 90 %
              3: ([0.0, 1.0, 0.65, 0.66], [0.0, 0.3, 0.2, 0.95]),   # generalizes only at the end
              4: ([0.0, 0.9, 0.2, 0.95], [0.0, 0.95, 0.3, 0.2])})   # generalized once, now memorizes
    ph = phases_from_history(h, 0.35)
    assert ph.phase.tolist() == ['Forgetting', 'Confusion', 'Confusion', 'Full Inversion', 'Memorization']
    assert ph.train_acc.tolist() == [0.02, 0.02, 0.02, 0.66, 0.95]
    assert ph.peak_test_acc.tolist() == [1.0, 0.5, 0.899, 0.95, 0.95]


def test_history_order_and_per_member_noise():
    h = hist({0: ([0.0, 0.88, 0.88], [0.0, 1.0, 1.0]), 1: ([0.0, 0.88, 0.88], [0.0, 1.0, 1.0])}).sample(frac=1, random_state=0)
    ph = phases_from_history(h, pd.Series([0.1, 0.3]))
    assert ph.phase.tolist() == ['Full Inversion', 'Partial Inversion']
    h2 = h.rename(columns={'member': 'run'})
    assert phases_from_history(h2, 0.3, by='run').phase.tolist() == ['Partial Inversion'] * 2


def test_add_phases_on_tables_and_train_results():
    t = pd.DataFrame(dict(train_acc=[0.98, 0.02], test_acc=[0.98, 0.02], noise=[0.3, 0.3], peak_test_acc=[0.98, 1.0]))
    assert add_phases(t).phase.tolist() == ['Coexistence', 'Forgetting']
    assert 'phase' not in t
    assert add_phases(t.drop(columns='peak_test_acc')).phase.tolist() == ['Coexistence', UNDECIDED]
    fake = SimpleNamespace(history=hist({0: ([0, 1, 0.01], [0, 1, 0.01]), 1: ([0, 1, 1], [0, 0.1, 0.1])}),
                           members=pd.DataFrame(dict(noise=[0.35, 0.35])),
                           results=pd.DataFrame(dict(member=[0, 1], train_acc=[0.01, 1.0], test_acc=[0.01, 0.1])))
    out = add_phases(fake)
    assert out.phase.tolist() == ['Forgetting', 'Memorization'] and out.peak_test_acc.tolist() == [1.0, 0.1]


def _table():
    rows = []
    for wd in (0.0, 5.0):
        for a in (0.3, 0.6, 0.9):
            for x in (0.1, 0.5):
                gen = a > 0.5
                rows.append(dict(weight_decay=wd, train_frac=a, noise=x, test_acc=1.0 if gen else 0.1,
                                 train_acc=1.0 if (wd == 0 or not gen) else 0.6, peak_test_acc=1.0 if gen else 0.1))
    return pd.DataFrame(rows)


def test_phase_diagram_cells_match_phases():
    import matplotlib
    matplotlib.use('Agg')
    from modmem.phases import PHASES_ALL
    t = add_phases(_table())
    fig = plot_phase_diagram(t, 'weight_decay')
    assert len(fig.axes) == 2
    for ax, wd in zip(fig.axes, (0.0, 5.0)):
        assert ax.get_title() == f'weight_decay={wd:g}'
        arr = ax.collections[0].get_array().reshape(2, 3)  # rows ξ, columns α
        sub = t[t.weight_decay == wd]
        for i, x in enumerate((0.1, 0.5)):
            for j, a in enumerate((0.3, 0.6, 0.9)):
                want = sub[(sub.noise == x) & (sub.train_frac == a)].phase.item()
                assert PHASES_ALL[int(arr[i, j])] == want
    assert {t.get_text() for t in fig.legends[0].get_texts()} == set(t.phase)


def test_phase_rows_layout_and_seed_majority():
    import matplotlib
    matplotlib.use('Agg')
    t = _table()
    t2 = pd.concat([t, t, t.assign(test_acc=0.1, peak_test_acc=0.1)])  # three seeds, two agree
    fig = plot_phase_rows(t2, 'weight_decay')
    assert len(fig.axes) == 3 * 2 + 1
    acc = fig.axes[2].collections[0].get_array().reshape(2, 3)  # test accuracy row, wd 0
    assert acc[0, 2] == pytest.approx(100 * (1 + 1 + 0.1) / 3)
    ph = add_phases(t)
    arr = fig.axes[4].collections[0].get_array().reshape(2, 3)
    from modmem.phases import PHASES_ALL
    assert PHASES_ALL[int(arr[0, 2])] == ph[(ph.weight_decay == 0) & (ph.noise == 0.1) & (ph.train_frac == 0.9)].phase.item()


def test_colors_cover_phases():
    assert set(PHASES) | {UNDECIDED} == set(PHASE_COLORS)
