"""Shared test fixtures: tiny synthetic data and models, so every test runs in a blink on one CPU thread."""
import os

os.environ.setdefault('MPLBACKEND', 'Agg')

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)


def _separable(n, n_in, seed):
    "Two classes split by a random hyperplane through the origin, with a margin."
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_in, generator=g)
    x = torch.randn(n, n_in, generator=g)
    s = x @ w / w.norm()
    x = x + 0.5 * torch.sign(s)[:, None] * w / w.norm()   # push each point away from the boundary
    return x, (s > 0).long()


@pytest.fixture
def make_dls():
    """Factory: ``make_dls(n_train=64, bs=16, n_valid=32, n_in=8, seed=0, shuffle=False, drop_last=False,
    label_noise=0.)`` gives a (train, valid) pair of DataLoaders over a linearly separable two-class problem,
    with a fraction `label_noise` of the labels flipped (then no weights bring the loss to 0)."""
    def make(n_train=64, bs=16, n_valid=32, n_in=8, seed=0, shuffle=False, drop_last=False, valid=True,
             label_noise=0.):
        x, y = _separable(n_train + n_valid, n_in, seed)
        if label_noise:
            flip = torch.rand(len(y), generator=torch.Generator().manual_seed(seed + 1)) < label_noise
            y = torch.where(flip, 1 - y, y)
        train = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=bs, shuffle=shuffle,
                           drop_last=drop_last, generator=torch.Generator().manual_seed(seed) if shuffle else None)
        vdl = DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=2 * bs) if valid else None
        return train, vdl
    return make


@pytest.fixture
def make_model():
    "Factory: ``make_model(n_in=8, n_hidden=16, n_out=2, bn=False, seed=0)``, a two-layer MLP (BatchNorm optional)."
    def make(n_in=8, n_hidden=16, n_out=2, bn=False, seed=0):
        torch.manual_seed(seed)
        layers = [nn.Linear(n_in, n_hidden)]
        if bn: layers.append(nn.BatchNorm1d(n_hidden))
        layers += [nn.ReLU(), nn.Linear(n_hidden, n_out)]
        return nn.Sequential(*layers)
    return make


@pytest.fixture
def make_learner(make_dls, make_model):
    """Factory: ``make_learner(opt_func=SGD, dls_kw={}, model_kw={}, **learner_kw)``, a CPU Learner on the
    tiny separable task with progress bars off (unless asked)."""
    from onecycle import Learner

    def make(opt_func=torch.optim.SGD, dls_kw=None, model_kw=None, model=None, dls=None, **kw):
        kw.setdefault('progress', False)
        kw.setdefault('device', 'cpu')
        kw.setdefault('loss_func', nn.CrossEntropyLoss())
        return Learner(model if model is not None else make_model(**(model_kw or {})),
                       dls if dls is not None else make_dls(**(dls_kw or {})), opt_func=opt_func, **kw)
    return make


def two_group_splitter(model):
    "First layer in one param group, the rest in another (for discriminative learning rates)."
    ps = list(model.parameters())
    return [ps[:2], ps[2:]]


@pytest.fixture
def splitter():
    return two_group_splitter
