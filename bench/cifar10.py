"""Super-convergence on CIFAR-10 (Smith and Topin, 2017): the 1cycle policy against a piecewise-constant
learning rate at the same number of epochs, and the time each needs to reach 94% test accuracy.

Both runs train the same network from the same initial weights on the same data: a CIFAR ResNet-18
(or ResNet-56, the network of the paper: --arch resnet56) with SGD (Nesterov momentum, L2 weight
decay 5e-4), batch 512, random crops with 4 pixels of padding and horizontal flips; on a GPU with
bf16 autocast and channels_last. Only the schedule differs:

- 1cycle: ``fit_one_cycle(epochs, max_lr)``, lr from max_lr/25 up to max_lr over the first 25% of
  the steps, then down to max_lr/25e4; momentum 0.95 -> 0.85 -> 0.95;
- piecewise constant: lr ``--step-lr`` for the first half of the epochs, a tenth of it for the next
  quarter, a hundredth for the last quarter; momentum 0.9.

The default learning rates (0.4 for both) follow the linear scaling rule from the usual 0.1 at
batch 128. Test accuracy is measured after every epoch; "time to 94%" is the wall time from the
start of the fit to the end of the first epoch whose test accuracy reaches 94% (validation passes
included). The paper's figures (ResNet-56, its own batch sizes and learning rates) are the shape
to compare with, not numbers to match.

    python bench/cifar10.py --data ~/data --download          # fetches CIFAR-10 (170 MB) once
    python bench/cifar10.py --data ~/data --epochs 30 [--arch resnet18|resnet56] [--plot /tmp/cifar10.png]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from functools import partial

import torch
from torch import nn

from onecycle import (Callback, ChannelsLast, Constant, Learner, MixedPrecision, ParamScheduler, accuracy, combine,
                      fit_one_cycle)
from onecycle.vision import cifar10_dls, cifar_resnet, cifar_resnet18

TARGET = 0.94


class TimeToAccuracy(Callback):
    "Records the wall time and epoch at which test accuracy first reaches `target`."
    order = 55   # after the Recorder has written the epoch's row

    def __init__(self, target=TARGET):
        self.target, self.seconds, self.epoch = target, None, None

    def before_fit(self):
        self.t0, self.seconds, self.epoch = time.perf_counter(), None, None

    def after_epoch(self):
        acc = self.learn.recorder.epochs[-1].get('accuracy', float('nan'))
        if self.seconds is None and acc >= self.target:
            self.seconds, self.epoch = time.perf_counter() - self.t0, self.learn.epoch + 1


def piecewise_constant(lr):
    "lr for 50% of training, lr/10 for 25%, lr/100 for the last 25%."
    return combine([0.5, 0.25, 0.25], [Constant(lr), Constant(lr / 10), Constant(lr / 100)])


def run(name, model, dls, args, device):
    opt_func = partial(torch.optim.SGD, momentum=0.9, nesterov=True, weight_decay=args.wd)
    learn = Learner(model, dls, nn.CrossEntropyLoss(), opt_func=opt_func, metrics=accuracy, device=device,
                    progress=not args.quiet)
    timer = TimeToAccuracy()
    cbs = [timer] + ([MixedPrecision(torch.bfloat16), ChannelsLast()] if device.type == 'cuda' else [])
    t0 = time.perf_counter()
    if name == '1cycle':
        fit_one_cycle(learn, args.epochs, args.max_lr, moms=(0.95, 0.85), pct_start=0.25, cbs=cbs)
    else:
        sched = ParamScheduler({'lr': piecewise_constant(args.step_lr), 'mom': Constant(0.9)})
        learn.fit(args.epochs, cbs=cbs + [sched])
    total = time.perf_counter() - t0
    accs = [e['accuracy'] for e in learn.recorder.epochs]
    return dict(name=name, accs=accs, final=accs[-1], best=max(accs), seconds=total, t94=timer.seconds,
                e94=timer.epoch, lrs=learn.recorder.lrs)


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        a1.plot(range(1, len(r['accs']) + 1), [100 * a for a in r['accs']], 'o-', ms=3, label=r['name'])
        a2.plot(r['lrs'], label=r['name'])
    a1.xaxis.get_major_locator().set_params(integer=True)
    a1.axhline(100 * TARGET, color='grey', ls='--', lw=1)
    a1.set_xlabel('epoch'); a1.set_ylabel('test accuracy (%)'); a1.set_title('CIFAR-10 test accuracy'); a1.legend()
    lo = min(min(r['accs']) for r in results)
    a1.set_ylim(max(0, 100 * lo - 2), 100)
    a2.set_xlabel('optimizer step'); a2.set_ylabel('learning rate'); a2.set_title('schedules'); a2.legend()
    fig.tight_layout(); fig.savefig(path, dpi=100)
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True, help='folder that holds (or will hold) cifar-10-batches-py')
    ap.add_argument('--download', action='store_true', help='download CIFAR-10 through torchvision if missing')
    ap.add_argument('--epochs', type=int, default=30)
    ap.add_argument('--arch', choices=['resnet18', 'resnet56'], default='resnet18')
    ap.add_argument('--bs', type=int, default=512)
    ap.add_argument('--max-lr', type=float, default=0.4, help='peak lr of the 1cycle run')
    ap.add_argument('--step-lr', type=float, default=0.4, help='initial lr of the piecewise-constant run')
    ap.add_argument('--wd', type=float, default=5e-4)
    ap.add_argument('--workers', type=int, default=None, help='loader processes (default: 8 with CUDA, 0 without)')
    ap.add_argument('--schedules', nargs='+', choices=['1cycle', 'piecewise'], default=['1cycle', 'piecewise'])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--plot', default=None, help='save test accuracy and lr per step to this PNG')
    ap.add_argument('--quiet', action='store_true', help='no progress bars')
    args = ap.parse_args(argv)
    if args.epochs < 1: ap.error('--epochs must be >= 1')
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dls = cifar10_dls(args.data, bs=args.bs, download=args.download, num_workers=args.workers, seed=args.seed)
    except FileNotFoundError as e:
        print(f'bench/cifar10.py: {e} (here: add --download)', file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    model = cifar_resnet18() if args.arch == 'resnet18' else cifar_resnet(56)
    n_train = len(dls.train.dataset)
    print(f'CIFAR-10 {args.arch}, {n_train} training images, batch {args.bs}, {args.epochs} epochs, '
          f'SGD nesterov wd {args.wd}; {torch.cuda.get_device_name() if device.type == "cuda" else "CPU"}')
    results = []
    for name in args.schedules:
        torch.manual_seed(args.seed)   # the same initial weights (deep copies) and the same augmentation draws
        if dls.train.generator is not None: dls.train.generator.manual_seed(args.seed)
        results.append(run(name, copy.deepcopy(model), dls, args, device))
    print(f'\n{"schedule":12s} {"final acc":>9s} {"best acc":>9s} {"time to 94%":>14s} {"total":>9s}')
    for r in results:
        t94 = f'{r["t94"]:.0f}s (ep {r["e94"]})' if r['t94'] is not None else 'not reached'
        print(f'{r["name"]:12s} {100 * r["final"]:8.2f}% {100 * r["best"]:8.2f}% {t94:>14s} {r["seconds"]:8.0f}s')
    if args.plot:
        plot(results, args.plot)
        print(f'figure: {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
