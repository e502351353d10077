"""The one-liner ``fit_one_cycle(learn, n, learn.lr_find(n_epoch=n).suggestion)`` with the optimizers people
pass as ``opt_func``, beside the same one-liner with the sweep run at the optimizer's own momentum
(``lr_find(mom=None)``: what lr_find did before it swept bare SGD and RMSprop at 0.9).

fit_one_cycle turns momentum on (0.95 -> 0.85 -> 0.95) for every optimizer that has one, also where it is 0
(bare ``SGD``, ``RMSprop``'s default), as PyTorch's OneCycleLR and fastai do; a sweep without momentum then
puts the edge at lrs the fit does not survive. Optimizers without momentum (Adagrad, Rprop) fit with
``moms=None``. Three small problems made offline (scikit-learn's digits, a 4-class make_classification, an
8-feature 3-class argmax), three seeds each; prints the final validation accuracy of every run and the mean.

    python bench/one_liner_optimizers.py [--seeds 3] [--problems digits classif4 argmax3]
"""
from __future__ import annotations

import argparse
from functools import partial

import torch
from torch import nn

from onecycle import Learner, accuracy, fit_one_cycle
from onecycle.core.hyper import has_hyper
from onecycle.data import tensor_dls
from onecycle.models import mlp


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = torch.tensor(d.data / 16., dtype=torch.float32), torch.tensor(d.target)
    return x, y, 400, (64, 128, 10), 64, 8


def classif4():
    from sklearn.datasets import make_classification
    xs, ys = make_classification(n_samples=4000, n_features=30, n_informative=12, n_classes=4, random_state=3)
    return torch.tensor(xs, dtype=torch.float32), torch.tensor(ys), 1000, (30, 128, 128, 4), 64, 10


def argmax3():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 8, generator=g)
    return x, x[:, :3].argmax(1), 500, (8, 32, 3), 32, 5


PROBLEMS = {'digits': digits, 'classif4': classif4, 'argmax3': argmax3}
OPTIMIZERS = {'SGD': torch.optim.SGD, 'SGD(momentum=0.9)': partial(torch.optim.SGD, momentum=0.9),
              'RMSprop': torch.optim.RMSprop, 'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW,
              'Adagrad': torch.optim.Adagrad, 'Rprop': torch.optim.Rprop}


def one_liner(data, opt_func, seed, mom):
    x, y, n_valid, sizes, bs, n_epoch = data
    torch.manual_seed(seed)
    learn = Learner(mlp(sizes), tensor_dls(x[n_valid:], y[n_valid:], x[:n_valid], y[:n_valid], bs=bs, seed=seed),
                    nn.CrossEntropyLoss(), opt_func=opt_func, metrics=[accuracy], progress=False, device='cpu')
    lr = learn.lr_find(n_epoch=n_epoch, mom=mom).suggestion
    fit_one_cycle(learn, n_epoch, lr, **({} if has_hyper(learn.opt.param_groups[0], 'mom') else {'moms': None}))
    return lr, learn.recorder.epochs[-1]['accuracy']


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--problems', nargs='+', default=list(PROBLEMS), choices=list(PROBLEMS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for p in args.problems:
        data = PROBLEMS[p]()
        for name, opt_func in OPTIMIZERS.items():
            row = {}
            for mom in ('auto', None):
                runs = [one_liner(data, opt_func, seed, mom) for seed in range(args.seeds)]
                row[mom] = runs
            fmt = lambda runs: (' '.join(f'{100 * a:5.1f}' for _, a in runs)
                                + f'  mean {100 * sum(a for _, a in runs) / len(runs):5.1f}'
                                + f'  lr {min(l for l, _ in runs):.2g}-{max(l for l, _ in runs):.2g}')
            print(f'{p:9s} {name:18s} swept as the fit: {fmt(row["auto"])} | at its own momentum: {fmt(row[None])}',
                  flush=True)


if __name__ == '__main__':
    main()
