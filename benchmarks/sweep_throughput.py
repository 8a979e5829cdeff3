"""Model-steps per second of a paper-scale sweep's chunks (default: paper 1 Fig. 3a, 17 α × 17 ξ × 4 weight decays,
p = 97, N = 500, 2000 steps) on this machine, and the estimated time of the whole sweep.

    python benchmarks/sweep_throughput.py                      # every chunk of the full weight-decay grid, 3 steps each
    python benchmarks/sweep_throughput.py --chunks 0 --steps 2 --threads 1 --chunk-size 68
"""
import argparse, time
import torch
from modmem.studies import study, STUDIES, PRESETS
from modmem.training import default_device


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--study', default='weight_decay', choices=STUDIES)
    ap.add_argument('--preset', default='full', choices=PRESETS)
    ap.add_argument('--steps', type=int, default=3, help='timed steps per chunk (after one warm-up step)')
    ap.add_argument('--chunks', type=int, nargs='*', help='chunk indices to time (default: all)')
    ap.add_argument('--device', default=None, help='default: CUDA when present, else the CPU')
    ap.add_argument('--chunk-size', type=int, default=None, help="members per chunk (default: the preset's)")
    ap.add_argument('--threads', type=int, default=None, help='torch threads on the CPU (default: torch decides)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    s = study(a.study, a.preset)
    device = a.device or default_device()
    if a.chunk_size: s.chunk_size = a.chunk_size
    _, chunks = s.plan()
    print(f"{s.title()}\n{s.n_runs} runs in {len(chunks)} chunks, {s.model_steps:,} model-steps; device {device}, "
          f"{torch.get_num_threads()} torch threads")
    t0 = time.perf_counter()
    tp = s.throughput(a.steps, a.chunks, device)
    cols = ['index', 'members', 'train_frac_min', 'train_frac_max', 'batch', 'seconds_per_step', 'model_steps_per_s', 'est_chunk_hours']
    print(tp[cols].round(3).to_string(index=False))
    rate = tp.members.sum() / tp.seconds_per_step.sum()
    measured = len(tp) == len(chunks)
    hours = tp.est_chunk_hours.sum() if measured else s.model_steps / rate / 3600
    print(f"overall {rate:.1f} model-steps/s; whole sweep ≈ {hours:.1f} h on {device}"
          f"{'' if measured else ' (extrapolated from the timed chunks)'}; benchmark took {time.perf_counter() - t0:.0f} s")


if __name__ == '__main__':
    main()
