"""What the DivergenceGuard costs: fit_one_cycle epochs with the full guard (``guard=True``: losses and
gradients) against epochs without it (``guard=False``).

Same MLP and in-memory data as bench/overhead.py (batch 64, one thread, AdamW). Epochs alternate
between the two learners so that drift in machine speed hits both alike; times are the training
thread's CPU time (time.thread_time), so other processes on a shared machine do not blur the
comparison. Prints median epoch times, the cost per optimizer step and the ratio. On a GPU
(--device cuda) the guard's cost is mostly its one host-device synchronisation per step, so the
wall-clock time is measured instead.

    python bench/divergence_guard.py [--epochs 10] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from onecycle import Learner, accuracy
from onecycle.models import mlp
from overhead import MAX_LR, make_data   # the same data as bench/overhead.py (this folder is on sys.path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--device', default='cpu')
    args = ap.parse_args()
    torch.set_num_threads(1)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():   # as bench/gpu.py: gpu_session.sh runs it on any machine
        print('bench/divergence_guard.py: no CUDA GPU on this machine, skipped (--device cpu measures the CPU)')
        return 0
    clock = time.perf_counter if cuda else time.thread_time
    learners = {}
    for name in ('with guard', 'without guard'):
        torch.manual_seed(0)
        # explicit: guard='auto' (the default) installs none on a GPU and only a loss check on the CPU
        learn = Learner(mlp(), make_data(), nn.CrossEntropyLoss(), metrics=[accuracy], device=args.device,
                        progress=False, guard=name == 'with guard')
        learners[name] = learn
    times = {k: [] for k in learners}
    for i in range(args.epochs + 1):
        for name, learn in learners.items():
            if cuda: torch.cuda.synchronize()
            t0 = clock()
            learn.fit_one_cycle(1, MAX_LR)
            if cuda: torch.cuda.synchronize()
            if i: times[name].append(clock() - t0)   # the first epoch warms up
    steps = len(learners['with guard'].dls.train)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ratios = [a / b for a, b in zip(times['with guard'], times['without guard'])]
    print(f'MLP 40-100-100-10, AdamW, batch 64, {steps} steps + {len(learners["with guard"].dls.valid)} valid batches '
          f'per epoch, device {args.device}, {"wall" if cuda else "CPU"} time')
    for k, v in med.items(): print(f'{k:15s} {v:8.1f} ms/epoch')
    print(f'guard cost: {(med["with guard"] - med["without guard"]) * 1e3 / steps:.1f} us per optimizer step; '
          f'ratio with/without (median of paired epochs): {statistics.median(ratios):.3f}')


if __name__ == '__main__':
    main()
