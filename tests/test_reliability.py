"No silent wrong result: diverged runs are marked, and every ordinary mistake is a clear error before any work (issue 15)."
import json, math, os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modmem.cli import main
from modmem.data import check_train_rows, n_pairs
from modmem.phases import add_phases, classify_phase, phases_from_history, DIVERGED
from modmem.training import (TrainConfig, UsageError, train, train_memory, run_memory, check_memory, check_device, check_out,
                             write_run, eval_rows, EVAL_BUDGET, INCOMPLETE, evaluate, TrainStep)

TINY = ['train', '--p', '11', '--width', '16', '--steps', '20', '--device', 'cpu', '--quiet']


def run(capsys, *args, base=TINY):
    "Exit status, stdout and stderr of `modmem ARGS`."
    rc = main([*base, *args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *words):
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('modmem: error: '), err
    assert 'Traceback' not in err
    for w in words: assert w in err, (w, err)


# --- 1. diverged runs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('args,words', [
    (['--lr', 'nan'], ['lr must be a finite number >= 0', 'nan']),
    (['--lr', 'inf'], ['lr must be a finite number >= 0', 'inf']),
    (['--lr', '-0.1'], ['lr must be a finite number >= 0']),
    (['--weight-decay', 'nan'], ['weight_decay must be a finite number']),
    (['--betas', '1', '1'], ['betas must be a finite number in [0, 1)', '1.0']),
    (['--betas', '0.9', 'nan'], ['betas must be a finite number in [0, 1)']),
    (['--betas', '-0.1', '0.9'], ['betas must be a finite number in [0, 1)']),
    (['--momentum', 'inf', '--optimizer', 'sgd'], ['momentum must be a finite number in [0, 1)']),
])
def test_nonfinite_hyperparameters_refused(capsys, args, words):
    one_line_error(*run(capsys, *args)[::2], *words)


@pytest.mark.parametrize('kw,words', [(dict(eps=float('nan')), 'eps must be a finite number >= 0'),
                                      (dict(eps=-1e-8), 'eps must be a finite number >= 0'),
                                      (dict(betas=(0.9,)), 'betas must be two numbers'),
                                      (dict(init=float('inf')), 'init (a std) must be a finite number > 0')])
def test_validate_refuses_bad_optimizer_settings(kw, words):
    cfg = TrainConfig(p=11, width=16, **kw)
    with pytest.raises(UsageError, match=words.replace('(', r'\(').replace(')', r'\)')): cfg.validate(cfg.member_table())


def test_real_divergence_is_marked():
    res = train(TrainConfig(p=11, width=16, steps=20, lr=[0.01, 1e6], log_every=5), progress=False, device='cpu')
    r = res.results
    assert r.diverged.dtype == bool
    assert r.diverged.tolist() == [False, True]
    acc = ['train_acc', 'test_acc', 'corrupted_acc', 'corrupted_true_acc', 'clean_acc']
    assert r.loc[1, acc].isna().all(), "a diverged member has no plausible accuracy"
    assert r.loc[0, ['train_acc', 'test_acc']].between(0, 1).all()
    h = res.curves()
    assert h[(h.member == 1) & (h.step == 20)].train_acc.isna().all(), "the history does not report argmax-of-NaN either"
    assert add_phases(res).phase.tolist()[1] == DIVERGED


def test_sgd_divergence_and_no_test_rows_are_different():
    res = train(TrainConfig(p=11, width=16, steps=10, lr=[0.01, 1e5], optimizer='sgd', train_frac=[1.0, 0.5]),
                progress=False, device='cpu')
    r = res.results.set_index(['lr', 'train_frac'])
    assert not r.diverged[(0.01, 1.0)], "no test rows (test metrics NaN) is not divergence"
    assert math.isnan(r.test_acc[(0.01, 1.0)]) and not math.isnan(r.train_acc[(0.01, 1.0)])
    assert r.diverged[(1e5, 1.0)] and r.diverged[(1e5, 0.5)]


def test_cli_says_diverged(capsys):
    rc, out, err = run(capsys, '--lr', '0.01', '1e6')
    assert rc == 0
    assert 'diverged' in out and 'status' in out
    assert 'member(s) 1 (at step 1) diverged' in err
    rc, out, err = run(capsys, '--lr', '1e6', '--json')
    rec = json.loads(out.splitlines()[0])
    assert rec['diverged'] is True and rec['train_acc'] is None and rec['test_acc'] is None


def test_phase_diverged_not_confusion():
    assert classify_phase(float('nan'), float('nan'), 0.2, float('nan'), diverged=True) == DIVERGED
    assert classify_phase(0.1, 0.1, 0.2, 0.1, diverged=False) == 'Confusion'
    t = pd.DataFrame(dict(train_acc=[0.1, np.nan], test_acc=[0.1, np.nan], noise=0.2, peak_test_acc=[0.1, np.nan],
                          diverged=[False, True]))
    assert add_phases(t).phase.tolist() == ['Confusion', DIVERGED]
    h = pd.DataFrame(dict(step=[0, 10] * 2, member=[0, 0, 1, 1], metric='train_loss', value=[1.0, 0.5, 1.0, np.inf]))
    h = pd.concat([h, h.assign(metric='train_acc', value=[0.1, 0.2, 0.1, 0.05]), h.assign(metric='test_acc', value=0.05)])
    assert phases_from_history(h, 0.0).phase.tolist() == ['Confusion', DIVERGED], "an infinite logged loss is enough"


def test_divergence_check_has_no_host_sync_in_the_step():
    "The divergence flag is updated at logging steps only: the step itself still makes no host sync (test_slices checks it too)."
    names = ['item', 'tolist', '__bool__', '__float__', '__int__']
    calls = []
    saved = {n: getattr(torch.Tensor, n) for n in names}
    orig = TrainStep.__call__
    def step(self, s):
        for n in names: setattr(torch.Tensor, n, lambda *a, _n=n, **k: calls.append(_n) or saved[_n](*a, **k))
        try: return orig(self, s)
        finally:
            for n, f in saved.items(): setattr(torch.Tensor, n, f)
    TrainStep.__call__ = step
    try: train(TrainConfig(p=11, width=16, steps=6, lr=[0.01, 1e6], log_every=2), progress=False, device='cpu')
    finally: TrainStep.__call__ = orig
    assert calls == []


# --- 2. members without training rows ----------------------------------------------------------------------------------

def test_train_frac_zero_alone(capsys):
    one_line_error(*run(capsys, '--train-frac', '0')[::2], 'member 0: train_frac=0.0 gives no training rows', 'train_frac >= 0.00826446')


def test_train_frac_zero_beside_others(capsys):
    one_line_error(*run(capsys, '--train-frac', '0.5', '0')[::2], 'member 1: train_frac=0.0', 'of the 121 pairs')


def test_train_frac_too_small_for_p():
    assert check_train_rows(1 / 121, 121) is None
    with pytest.raises(ValueError, match='use train_frac >= '): check_train_rows(0.005, 121)
    cfg = TrainConfig(p=11, width=16, train_frac=0.005)
    with pytest.raises(ValueError, match='no training rows'): train(cfg, progress=False, device='cpu')
    assert n_pairs('div', 11) == 110


def test_batch_larger_than_training_set(capsys):
    one_line_error(*run(capsys, '--batch-size', '100', '--train-frac', '0.5')[::2], 'batch_size 100 exceeds the smallest training set (60 rows)')


# --- 3. sizes ----------------------------------------------------------------------------------------------------------

def test_huge_p_refused_before_allocation(capsys):
    one_line_error(*run(capsys, '--p', '100003', '--steps', '1', base=['train', '--width', '16', '--device', 'cpu', '--quiet'])[::2],
                   'p=100003', 'width=16', '1 member(s)', 'bytes) is available')


def test_memory_check_names_members():
    cfg = TrainConfig(p=4001, width=512, seed=list(range(64)))
    with pytest.raises(UsageError, match=r'p=4001, width=512, 64 member\(s\) need about'): check_memory(cfg, cfg.member_table(), 'cpu')
    small = TrainConfig(p=11, width=16)
    check_memory(small, small.member_table(), 'cpu')
    need = run_memory(small, small.member_table(), 'cpu')
    assert need['host'] >= train_memory(small, 1, 60, device='cpu')['total']


def test_eval_passes_stay_bounded_for_large_p():
    for p, width, E in ((2003, 16, 1), (2003, 16, 8), (10007, 500, 4), (97, 500, 289)):
        rows = eval_rows(E, width, p, 'cpu')
        assert rows >= 1
        assert rows == 1 or 4 * E * rows * (2 * width + 4 * p) <= EVAL_BUDGET['cpu']


# --- 4. --out ----------------------------------------------------------------------------------------------------------

def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / 'f.txt'; f.write_text('x')
    one_line_error(*run(capsys, '--out', str(f))[::2], 'is a file')
    one_line_error(*run(capsys, '--out', str(f / 'run'))[::2], 'is under', 'a file')
    assert f.read_text() == 'x'


@pytest.mark.skipif(not Path('/proc').is_dir(), reason='needs a read-only /proc')
def test_out_not_writable(capsys):
    one_line_error(*run(capsys, '--out', '/proc/modmem-run')[::2], 'not writable')


def test_out_existing_needs_force(capsys, tmp_path):
    out = tmp_path / 'run'
    rc, _, _ = run(capsys, '--out', str(out), '--steps', '2')
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ['config.json', 'curves.png', 'history.parquet', 'results.parquet']
    (out / 'mine.txt').write_text('keep')
    one_line_error(*run(capsys, '--out', str(out), '--steps', '2')[::2], 'exists and is not empty', '--force')
    assert (out / 'mine.txt').read_text() == 'keep'
    rc, _, _ = run(capsys, '--out', str(out), '--steps', '2', '--force')
    assert rc == 0 and not (out / 'mine.txt').exists()
    assert [p.name for p in tmp_path.iterdir()] == ['run'], "no temporary or old folder is left behind"


def test_out_new_nested_and_empty_folder(capsys, tmp_path):
    assert run(capsys, '--out', str(tmp_path / 'a' / 'b' / 'run'), '--steps', '2')[0] == 0
    assert (tmp_path / 'a' / 'b' / 'run' / 'results.parquet').exists()
    empty = tmp_path / 'empty'; empty.mkdir()
    assert run(capsys, '--out', str(empty), '--steps', '2')[0] == 0
    assert (empty / 'config.json').exists()


def test_interrupted_save_leaves_incomplete_folder(tmp_path):
    out = tmp_path / 'run'
    def write(d):
        (d / 'results.parquet').write_text('half')
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): write_run(out, write)
    assert not out.exists(), "an interrupted save never leaves a folder that looks finished"
    # a process killed mid-save leaves only the <name>.incomplete-… folder, which is never mistaken for the run
    d = tmp_path / f'run{INCOMPLETE}x'; d.mkdir()
    write_run(out, lambda f: (f / 'ok').write_text('1'))
    assert (out / 'ok').read_text() == '1' and d.exists()
    mask = os.umask(0); os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask, "the permissions of a plain mkdir, not mkdtemp's 0o700"


# --- 5. CLI usage errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('args,words', [
    (['--device', 'foo'], ["unknown device 'foo'", "('cpu', 'cuda', 'mps')"]),
    (['--device', 'meta'], ["unsupported device 'meta'"]),
    (['--width', '0'], ['width must be an integer >= 1', 'got 0']),
    (['--width', '-3'], ['width must be an integer >= 1']),
    (['--steps', '-1'], ['steps must be an integer >= 0', 'got -1']),
    (['--init-scale', '-1'], ['init_scale must be a finite number > 0', '-1.0']),
    (['--init-scale', 'nan'], ['init_scale must be a finite number > 0']),
    (['--seed', str(2 ** 63)], ['seed must be an integer >= 0 and <= 9223372036854775807', str(2 ** 63)]),
    (['--seed', '-1'], ['seed must be an integer >= 0']),
    (['--split-seed', str(10 ** 30)], ['split_seed must be an integer']),
    (['--noise-seed', '-5'], ['noise_seed must be an integer']),
    (['--batch-size', '0'], ['batch_size must be an integer >= 1']),
    (['--log-every', '0'], ['log_every must be an integer >= 1']),
    (['--p', '1'], ['p must be an integer in [2, 2147483647]']),
    (['--op', 'div', '--p', '12'], ['needs a prime modulus']),
    (['--noise', '1.5'], ['noise must be a fraction in [0, 1]']),
    (['--train-frac', 'nan'], ['train_frac must be a fraction in [0, 1]']),
    (['--dropout', '1'], ['dropout must be in [0, 1)']),
])
def test_train_usage_errors(capsys, args, words):
    one_line_error(*run(capsys, *args)[::2], *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason='this torch has CUDA')
def test_cuda_on_cpu_only_torch(capsys):
    one_line_error(*run(capsys, '--device', 'cuda')[::2], "device 'cuda' is not available", "use device 'cpu'")
    with pytest.raises(UsageError, match='sees no CUDA'): check_device('cuda:1')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_index_out_of_range(capsys):
    one_line_error(*run(capsys, '--device', f'cuda:{torch.cuda.device_count()}')[::2], 'is not available')


@pytest.mark.parametrize('args', [['--act', 'tanh'], ['--optimizer', 'lbfgs'], ['--loss', 'hinge'], ['--norm', 'group'],
                                  ['--init', 'xavier'], ['--noise-mode', 'random'], ['--p', 'eleven'], ['--seed', '1.5']])
def test_unknown_choices_are_argparse_errors(capsys, args):
    with pytest.raises(SystemExit) as e: main([*TINY, *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'invalid' in err and 'Traceback' not in err


BENCH = ['bench', '--p', '11', '--width', '16', '--steps', '1', '--runs', '4', '--compare', '2', '--sequential', '1',
         '--min-seconds', '0', '--device', 'cpu', '--quiet']


@pytest.mark.parametrize('args,words', [
    (['--sizes', '0'], ['--sizes must be an integer >= 1', 'got 0']),
    (['--sizes', '4', '-2'], ['--sizes must be an integer >= 1']),
    (['--width', '0'], ['--width must be an integer >= 1']),
    (['--steps', '0'], ['--steps must be an integer >= 1']),
    (['--runs', '0'], ['--runs must be an integer >= 1']),
    (['--warmup', '-1'], ['--warmup must be an integer >= 0']),
    (['--p', '1'], ['p must be an integer in [2, 2147483647]']),
    (['--train-frac', '0'], ['train_frac=0.0 gives no training rows']),
    (['--alphas', '0.5', '2'], ['must be a fraction in [0, 1]']),
    (['--min-seconds', 'nan'], ['--min-seconds must be a finite number']),
    (['--device', 'foo'], ["unknown device 'foo'"]),
])
def test_bench_usage_errors(capsys, args, words):
    one_line_error(*run(capsys, *args, base=BENCH)[::2], *words)


@pytest.mark.parametrize('args,words', [(['--jobs', '0'], ['--jobs must be an integer >= 1']),
                                        (['--timeout', '-5'], ['--timeout must be a positive number']),
                                        (['--device', 'foo'], ["unknown device 'foo'"])])
def test_reproduce_usage_errors(capsys, args, words):
    one_line_error(*run(capsys, '--list', *args, base=['reproduce'])[::2], *words)


def test_real_bugs_keep_their_traceback(monkeypatch):
    "Only the exception types of ordinary mistakes become one-line messages: a bug in the engine still raises."
    import modmem.cli as cli
    def boom(*a, **k): raise RuntimeError('a bug')
    monkeypatch.setattr(cli, 'train', boom)
    with pytest.raises(RuntimeError, match='a bug'): main(TINY)


def test_good_run_still_works(capsys):
    rc, out, err = run(capsys, '--weight-decay', '0', '1')
    assert rc == 0 and 'status' not in out and 'diverged' not in err


def test_phase_diagram_draws_diverged_cells():
    import matplotlib
    matplotlib.use('Agg')
    from modmem.phases import plot_phase_diagram, PHASES_ALL
    t = pd.DataFrame(dict(weight_decay=0.0, train_frac=[0.3, 0.6], noise=0.1, train_acc=[0.1, np.nan], test_acc=[0.1, np.nan],
                          peak_test_acc=[0.1, np.nan], diverged=[False, True]))
    fig = plot_phase_diagram(t, 'weight_decay')
    cells = fig.axes[0].collections[0].get_array().ravel()
    assert [PHASES_ALL[int(c)] for c in cells] == ['Confusion', DIVERGED]
    assert DIVERGED in {x.get_text() for x in fig.legends[0].get_texts()}


def test_huge_or_odd_p():
    from modmem.data import check_task, ModularTask
    with pytest.raises(ValueError, match=r'p must be an integer in \[2, '): check_task('mul', 10 ** 18)  # no primality test of 10¹⁸
    assert ModularTask('add', np.int64(7)).p == 7 and type(ModularTask('add', np.int64(7)).p) is int
    cfg = TrainConfig(p=100003)
    cfg.validate(cfg.member_table())  # validate builds nothing: the memory check in train refuses it


def test_huge_width_refused_by_memory_check(capsys):
    one_line_error(*run(capsys, '--width', str(10 ** 9))[::2], 'width=1000000000', 'bytes) is available')


def test_authors_split_needs_uniform_noise(capsys):
    one_line_error(*run(capsys, '--split', 'authors', '--noise-mode', 'wrong')[::2], "split 'authors' only has noise_mode 'uniform'")
