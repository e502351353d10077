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

    res = learn.lr_find(n_epoch=epochs)   # the suggestion is for this fit's length
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
    if epochs < 3: lines += ['loss curves    (a diagnosis needs 3 epochs or more)']
    else:
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


def _add_options(p, defaults=True):
    "The demo's options; without `defaults`, an option not given leaves the value parsed before it alone."
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument('--epochs', type=int, default=d(20), help='epochs of the 1cycle fit (default 20)')
    p.add_argument('--bs', type=int, default=d(100), help='batch size (default 100)')
    p.add_argument('--seed', type=int, default=d(0),
                   help='seed for the weights and the shuffling order (default 0); the data are always the same')
    p.add_argument('--out', default=d('onecycle_out'), help='folder for the PNG plots and summary.txt '
                   '(default onecycle_out)')
    p.add_argument('--no-progress', action='store_true', default=d(False),
                   help='no progress bars (in a log they are off anyway)')
    p.add_argument('--threads', type=int, default=d(None), help='torch CPU threads (default: torch decides)')


DEMO_HELP = 'LR range test + 1cycle on MNIST-1D, with plots (the default command)'
DEMO_DESCRIPTION = ('Generates MNIST-1D offline (4000 train / 1000 test sequences, the mnist1d package), runs the LR '
                    'range test on its published CNN, trains with fit_one_cycle at the suggested max_lr, prints a '
                    'summary (test accuracy, losses, wall time, a diagnosis of the loss curves) and writes '
                    'lr_find.png, losses.png, schedule.png, diagnostics.png and summary.txt to --out. About 30 s on '
                    '2 CPU cores.')


def main(argv=None):
    ap = argparse.ArgumentParser(prog='onecycle', description='onecycle: the disciplined approach to hyper-parameters. '
                                 'Without a command, runs the demo; options go before or after the command.')
    _add_options(ap)
    sub = ap.add_subparsers(dest='cmd', metavar='{demo}')
    _add_options(sub.add_parser('demo', help=DEMO_HELP, description=DEMO_DESCRIPTION), defaults=False)
    args = ap.parse_args(argv)   # `onecycle --epochs 3 demo` and `onecycle demo --epochs 3` mean the same
    if args.epochs < 1: ap.error('--epochs must be >= 1')
    if args.bs < 1: ap.error('--bs must be >= 1')
    if args.threads is not None and args.threads < 1: ap.error('--threads must be >= 1')
    run_demo(args.epochs, args.bs, args.seed, args.out, not args.no_progress, args.threads)
    return 0
