"""Layer-wise adaptive learning rates on MNIST-1D: plain 1cycle against LARS, LARC and Smith's
moving-average-of-differences variant, all on top of the same 1cycle schedule (SGD, momentum
0.95-0.85, decoupled weight decay 5e-4, batch 100, the MNIST-1D CNN).

Each method first gets its own max_lr: the best final accuracy over a small geometric grid on a
tuning seed that the comparison does not use. Then it trains with that max_lr on three seeds (model
init and shuffling). The script prints, side by side: final validation accuracy (mean, sd, each
seed), optimizer steps to first reach `--target` accuracy (checked at epoch ends), total steps, and
how often the layer-wise rule changed a step (fraction of layer-steps whose factor was not 1).

    python bench/layerwise.py [--quick] [--epochs 15] [--target 0.85] [--plot /tmp/layerwise.png]

On one idle CPU thread the full run takes about 65 s of CPU (more wall time on a busy machine),
--quick about 20 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from onecycle import LARC, LARS, Learner, SmithLayerLR, accuracy
from onecycle.data import mnist1d_arrays, tensor_dls
from onecycle.models import mnist1d_cnn

METHODS = {
    'plain 1cycle': lambda: None,
    'LARS': lambda: LARS(eta=0.02),
    'LARC': lambda: LARC(eta=0.02),
    'Smith': lambda: SmithLayerLR(beta=0.9),
}
TUNE_SEED = 100


def run(arrays, method, max_lr, epochs, seed, wd=5e-4):
    "Train one model; returns (per-epoch accuracies, steps per epoch, the callback, seconds)."
    torch.manual_seed(seed)
    dls = tensor_dls(*arrays, bs=100, seed=seed)
    cb = METHODS[method]()
    learn = Learner(mnist1d_cnn(), dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, metrics=[accuracy],
                    wd=wd, progress=False, device='cpu', cbs=[cb] if cb else [])
    t = time.perf_counter()
    learn.fit_one_cycle(epochs, max_lr)
    accs = [e['accuracy'] for e in learn.recorder.epochs]
    return accs, learn.steps_per_epoch, cb, time.perf_counter() - t


def steps_to(accs, target, steps_per_epoch):
    for i, a in enumerate(accs):
        if a >= target: return (i + 1) * steps_per_epoch
    return None


def changed_fraction(cb):
    if cb is None: return 0.
    vals = [f for fs in cb.factors.values() for f in fs]
    return sum(f != 1. for f in vals) / len(vals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='fewer epochs and a smaller lr grid')
    ap.add_argument('--epochs', type=int, default=None, help='epochs per run (15; --quick: 6)')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--target', type=float, default=None, help='accuracy to count steps to (0.85; --quick: 0.6)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--plot', default=None, help='save a figure of per-layer lrs (seed 0) to this PNG')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (6 if args.quick else 15)
    target = args.target or (0.6 if args.quick else 0.85)
    grid = [0.1, 0.3, 1.0] if args.quick else [0.03, 0.1, 0.3, 1.0, 3.0]

    t0, c0 = time.perf_counter(), time.process_time()
    arrays = mnist1d_arrays()
    print(f'MNIST-1D CNN, SGD + 1cycle, {epochs} epochs, seeds {args.seeds}, '
          f'max_lr grid {grid} tuned on seed {TUNE_SEED}')
    rows, cbs = [], {}
    for method in METHODS:
        tuned = {lr: run(arrays, method, lr, epochs, TUNE_SEED)[0][-1] for lr in grid}
        best = max(grid, key=lambda lr: tuned[lr])
        finals, steps, fracs, secs = [], [], [], []
        for seed in args.seeds:
            accs, spe, cb, s = run(arrays, method, best, epochs, seed)
            finals.append(accs[-1]); steps.append(steps_to(accs, target, spe))
            fracs.append(changed_fraction(cb)); secs.append(s)
            if seed == args.seeds[0]: cbs[method] = cb
        rows.append((method, best, tuned, finals, steps, epochs * spe, statistics.mean(fracs), statistics.mean(secs)))
        print(f'  {method}: grid accuracies ' + ', '.join(f'{lr:g}: {a:.3f}' for lr, a in tuned.items()), flush=True)

    print()
    head = (f"{'method':<13} {'max_lr':>6} {'acc mean':>8} {'sd':>6}  {'acc per seed':<20} "
            f"{f'steps to {target:.0%}':>14}  {'per seed':<16} {'steps':>5} {'scaled':>6} {'s/run':>5}")
    print(head); print('-' * len(head))
    for method, best, _, finals, steps, total, frac, sec in rows:
        reached = [s for s in steps if s is not None]
        mean_steps = (f'{statistics.mean(reached):.0f}' + ('' if len(reached) == len(steps) else '*')
                      if reached else 'never')
        sd = statistics.stdev(finals) if len(finals) > 1 else 0.
        print(f'{method:<13} {best:>6g} {statistics.mean(finals):>8.3f} {sd:>6.3f}  '
              f'{" ".join(f"{a:.3f}" for a in finals):<20} {mean_steps:>14}  '
              f'{" ".join(str(s) if s else "-" for s in steps):<16} {total:>5} {frac:>6.1%} {sec:>5.1f}')
    print('(steps to target: mean over the seeds that reached it, * when some did not; '
          "scaled: share of layer-steps whose factor was not 1)")
    print(f'total {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU')

    if args.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        layered = [m for m, cb in cbs.items() if cb is not None]
        fig, axs = plt.subplots(1, len(layered), figsize=(5 * len(layered), 3.8), squeeze=False)
        for ax, m in zip(axs[0], layered):
            cbs[m].plot(ax=ax); ax.set_title(m)
        fig.tight_layout(); fig.savefig(args.plot, dpi=80)
        print(f'per-layer lrs (seed {args.seeds[0]}) saved to {args.plot}')


if __name__ == '__main__':
    main()
