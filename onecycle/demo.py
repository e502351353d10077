"""The main job on an embedded default: MNIST-1D, its published CNN, a range test, then 1cycle.

    onecycle demo            # or: python -m onecycle
    onecycle demo --epochs 20 --out onecycle_out

Generates MNIST-1D offline (the `mnist1d` package), runs the LR range test, trains with
fit_one_cycle at the suggested rate, prints a summary and writes PNG plots to the output folder.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

__all__ = ['run_demo', 'main']


def run_demo(epochs=20, bs=100, seed=0, out='onecycle_out', progress=True, threads=None) -> dict:
    "Run the demo and return its summary (also written to `out`/summary.txt)."
    from .data import mnist1d_dls
    from .learner import Learner
    from .core.metrics import accuracy
    from .models import mnist1d_cnn
    from .schedules.fit import fit_one_cycle
    import matplotlib
    matplotlib.use('Agg')

    if threads: torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    dls = mnist1d_dls(bs=bs, seed=seed)
    learn = Learner(mnist1d_cnn(), dls, nn.CrossEntropyLoss(), metrics=[accuracy], progress=progress)
    print(f'MNIST-1D: {len(dls.train.dataset)} train / {len(dls.valid.dataset)} test samples; '
          f'CNN with {sum(p.numel() for p in learn.model.parameters())} parameters; device {learn.device}')

    res = learn.lr_find()
    res.plot().savefig(os.path.join(out, 'lr_find.png'), dpi=100)
    lr = res.suggestion
    print('LR range test suggestions: ' + ', '.join(f'{k} {v:.2e}' for k, v in res.suggestions.items()))
    print(f'training {epochs} epochs ({epochs * learn.steps_per_epoch} steps) with fit_one_cycle at max_lr={lr:.2e}')

    fit_one_cycle(learn, epochs, lr)
    final = learn.recorder.epochs[-1]
    learn.recorder.plot_loss().savefig(os.path.join(out, 'losses.png'), dpi=100)
    learn.recorder.plot_sched().savefig(os.path.join(out, 'schedule.png'), dpi=100)
    summary = {'max_lr': lr, 'epochs': epochs, 'steps': len(learn.recorder.lrs), 'test_accuracy': final['accuracy'],
               'test_loss': final['valid_loss'], 'train_loss': final['train_loss'], 'seconds': time.perf_counter() - t0}
    lines = [f'max_lr         {lr:.3e}', f'optimizer steps {summary["steps"]}',
             f'test accuracy  {summary["test_accuracy"]:.2%}', f'test loss      {summary["test_loss"]:.4f}',
             f'train loss     {summary["train_loss"]:.4f}', f'wall time      {summary["seconds"]:.1f} s']
    if hasattr(learn, 'diagnose'):
        diag = learn.diagnose()
        diag.plot().savefig(os.path.join(out, 'diagnostics.png'), dpi=100)
        summary['verdict'] = diag.verdict
        lines += [f'loss curves    {diag.verdict}: {diag.evidence}']
    text = '\n'.join(lines)
    print('\nSummary\n' + text + f'\nplots written to {os.path.abspath(out)}/')
    with open(os.path.join(out, 'summary.txt'), 'w') as f: f.write(text + '\n')
    import matplotlib.pyplot as plt
    plt.close('all')
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(prog='onecycle', description='onecycle: the disciplined approach to hyper-parameters.')
    sub = ap.add_subparsers(dest='cmd')
    d = sub.add_parser('demo', help='LR range test + 1cycle on MNIST-1D, with plots (the default command)')
    for p in (ap, d):
        p.add_argument('--epochs', type=int, default=20, help='epochs of the 1cycle fit (default 20)')
        p.add_argument('--bs', type=int, default=100, help='batch size (default 100)')
        p.add_argument('--seed', type=int, default=0)
        p.add_argument('--out', default='onecycle_out', help='folder for the PNG plots and summary')
        p.add_argument('--no-progress', action='store_true', help='hide progress bars')
        p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    args = ap.parse_args(argv)
    if args.epochs < 1: ap.error('--epochs must be >= 1')
    if args.bs < 1: ap.error('--bs must be >= 1')
    run_demo(args.epochs, args.bs, args.seed, args.out, not args.no_progress, args.threads)
    return 0
