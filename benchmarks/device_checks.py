"""Two of the device checks of a GPU lease (`modmem.lease.check_commands`): the training step under CUDA's sync-debug
mode, and the planner's memory model against the memory chunks really take (two large ones back to back among them). Plain Python over
torch and modmem (no fastcore, papermill or Jupyter). Each writes its findings into a JSON file (merged by key) and
exits non-zero when a check fails.

    python benchmarks/device_checks.py sync   --device cuda --json OUT/checks.json
    python benchmarks/device_checks.py memory --device cuda --json OUT/checks.json
    python benchmarks/device_checks.py sync   --device cpu --small      # the same code paths at a tiny size
"""
import argparse, json, sys, time, traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
import torch
import modmem.training as training
from modmem.training import (TrainConfig, build_training, member_frame, train,
                             train_memory)
from modmem.sweep import plan_sweep
from modmem.studies import study


def _cuda(device) -> bool: return torch.device(device).type == 'cuda'


@contextmanager
def sync_errors(device):
    "On CUDA, turn every host-device synchronization inside the block into an error (elsewhere: nothing to check)."
    if not _cuda(device):
        yield
        return
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode('error')
    try: yield
    finally: torch.cuda.set_sync_debug_mode(0)


class _CheckedLoop:
    "Stands in for tqdm in `modmem.training`: the iterations of train()'s loop run under `sync_errors`, nothing else does."
    device, iterations = 'cpu', 0
    def __init__(self, iterable, *args, **kwargs): self.iterable = iterable
    def __iter__(self):
        with sync_errors(self.device):
            for x in self.iterable:
                _CheckedLoop.iterations += 1
                yield x


# Full batch with padding (two training-set sizes in one slice), minibatch epochs, dropout, BatchNorm.
CASES = {'full batch': dict(), 'minibatch': dict(batch_size=32), 'dropout': dict(dropout=[0.0, 0.3]),
         'batchnorm': dict(norm='batch')}


def sync_check(device, small=False, steps=6) -> dict:
    "A few TrainStep updates per case, and train()'s whole loop, with CUDA syncs as errors; every member stays finite."
    p, width, E = (13, 24, 4) if small else (97, 500, 16)
    out = {}
    for name, over in CASES.items():
        t0 = time.perf_counter()
        try:
            cfg = TrainConfig(p=p, width=width, noise=0.2, train_frac=[0.5, 0.7], seed=list(range(E // 2)),
                              **{k: v for k, v in over.items() if k != 'dropout'})
            members = member_frame(cfg)
            if 'dropout' in over: members['dropout'] = [over['dropout'][i % 2] for i in range(len(members))]
            _, model, _, step = build_training(cfg, members, device)
            with sync_errors(device):
                for i in range(steps): step(i)
            finite = bool(torch.isfinite(model.unemb).all())
            out[f'TrainStep {name}'] = dict(ok=finite, members=len(members), steps=steps, seconds=round(time.perf_counter() - t0, 2),
                                            error=None if finite else 'non-finite weights')
        except Exception as e:
            out[f'TrainStep {name}'] = dict(ok=False, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-1500:])
    for name, over in {'train() full batch': dict(), 'train() minibatch + dropout': dict(batch_size=32, dropout=[0.0, 0.3])}.items():
        t0 = time.perf_counter()
        before = training.tqdm
        _CheckedLoop.device, _CheckedLoop.iterations = device, 0
        training.tqdm = _CheckedLoop
        try:
            cfg = TrainConfig(p=p, width=width, noise=0.2, train_frac=[0.5, 0.7], weight_decay=[0.0, 1.0], steps=2 * steps,
                              log_every=steps // 2, **over)
            res = train(cfg, device=device, progress=False)
            looped = _CheckedLoop.iterations == cfg.steps + 1  # the loop ran under the check, every step of it
            ok = looped and bool(res.results.train_acc.notna().all())
            out[name] = dict(ok=ok, members=len(res.members), steps=cfg.steps, seconds=round(time.perf_counter() - t0, 2),
                             error=None if ok else 'missing final metrics' if looped else
                             f"train() did not loop through modmem.training.tqdm ({_CheckedLoop.iterations} iterations seen)")
        except Exception as e:
            out[name] = dict(ok=False, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-1500:])
        finally: training.tqdm = before
    return out


def _peak(cfg, members, device, steps=3):
    "Peak bytes allocated (above what was allocated before) while train() builds and trains `members` for `steps` steps."
    torch.cuda.synchronize(device); torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    res = train(replace(cfg, steps=steps, log_every=steps), members, device=device, progress=False)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del res
    torch.cuda.empty_cache()
    return peak


def _back_to_back(device, small=False, steps=3) -> dict:
    "Train a chunk planned for 60 % of the card, then at once (no empty_cache) another one of the same size: both must run, and check_memory must count the cached blocks as free."
    total = torch.cuda.get_device_properties(device).total_memory
    base = TrainConfig(p=13 if small else 97, width=24 if small else 500, train_frac=0.9, weight_decay=1.0, steps=steps, log_every=steps)
    t0, peaks = time.perf_counter(), []
    try:
        for seeds in (range(0, 20000), range(20000, 40000)):
            _, chunks = plan_sweep(base, {'seed': list(seeds)}, device=device, memory=int(0.6 * total))
            c = chunks[0]
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            res = train(c.config, c.members, device=device, progress=False)
            torch.cuda.synchronize(device)
            peaks.append((torch.cuda.max_memory_allocated(device) - before, c.memory(device)['total'], len(c.runs)))
            del res   # no empty_cache: the second chunk finds the first one's blocks in PyTorch's cache
        return dict(ok=True, members=[n for _, _, n in peaks], measured_gib=[round(p / 2 ** 30, 2) for p, _, _ in peaks],
                    measured_over_estimate=[round(p / e, 3) for p, e, _ in peaks], reserved_gib=round(torch.cuda.memory_reserved(device) / 2 ** 30, 2),
                    seconds=round(time.perf_counter() - t0, 1))
    except Exception as e:
        return dict(ok=False, error=f"{type(e).__name__}: {str(e)[:500]}", trace=traceback.format_exc()[-1500:])


def memory_check(device, small=False) -> dict:
    "The memory model's estimate of the largest planned chunk of Figs. 3a/3b at `full`, of a chunk planned to fill the device, and of two large chunks trained back to back, against the peak measured."
    out = {}
    cases = []
    for name in ('weight_decay', 'dropout'):
        s = study(name, 'full')
        base, grid = s.base, s.grid
        if small:  # the same plan shape, tiny
            base, grid = replace(base, p=13, width=24), {k: (v[:3] if isinstance(v, list) else v) for k, v in grid.items()}
        _, chunks = plan_sweep(base, grid, s.chunk_size, device=device)
        c = max(chunks, key=lambda c: c.memory(device)['total'])
        cases.append((f'fig3 {name}: largest planned chunk', c, None))
    if _cuda(device):  # a chunk at the planner's limit: as many members at α = 0.9 as the memory model lets fit
        free, total = torch.cuda.mem_get_info(device)
        budget = int(0.5 * free)  # half the free memory: room for a wrong model to show without running out
        base = TrainConfig(p=13 if small else 97, width=24 if small else 500, train_frac=0.9, weight_decay=1.0)
        _, chunks = plan_sweep(base, {'seed': list(range(20000))}, device=device, memory=budget)
        cases.append((f'chunk planned to fill {budget / 2 ** 30:.1f} GiB', chunks[0], budget))
    if _cuda(device):  # two large chunks trained back to back in one process: the second must not be refused for the memory
        out['two large chunks back to back'] = _back_to_back(device, small)   # the allocator still holds from the first
    for label, c, budget in cases:
        est = c.memory(device)
        rec = dict(members=len(c.runs), rows=c.rows, estimate_gib=round(est['total'] / 2 ** 30, 3),
                   parts_gib={k: round(v / 2 ** 30, 3) for k, v in est.items() if k != 'total'})
        if budget: rec['budget_gib'] = round(budget / 2 ** 30, 3)
        if _cuda(device):
            t0 = time.perf_counter()
            try:
                peak = _peak(c.config, c.members, device)
                rec.update(measured_gib=round(peak / 2 ** 30, 3), measured_over_estimate=round(peak / est['total'], 3),
                           seconds=round(time.perf_counter() - t0, 1))
                # an upper bound that is not wasteful: the plan may trust it to fill the card
                rec['ok'] = bool(peak <= est['total'] and (budget is None or peak <= budget))
            except torch.cuda.OutOfMemoryError as e:
                rec.update(ok=False, error=f"out of memory: {str(e)[:300]}")
        else: rec.update(ok=True, note='no CUDA device: estimate only')
        out[label] = rec
    return out


def _merge(path, key, value):
    if path is None: return
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, default=str))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('check', choices=['sync', 'memory'])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--small', action='store_true', help='tiny sizes (the CPU smoke run)')
    ap.add_argument('--json', default=None, help='merge the findings into this JSON file under the check name')
    a = ap.parse_args(argv)
    res = sync_check(a.device, a.small) if a.check == 'sync' else memory_check(a.device, a.small)
    _merge(a.json, a.check, dict(device=a.device, results=res))
    bad = 0
    for name, r in res.items():
        bad += not r['ok']
        extra = {k: v for k, v in r.items() if k not in ('ok', 'trace')}
        print(f"{'PASS' if r['ok'] else 'FAIL'}  {a.check}: {name}  {json.dumps(extra, default=str)}")
        if not r['ok'] and r.get('trace'): print(r['trace'])
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
