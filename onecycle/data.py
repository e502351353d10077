"""Data the demo, benchmarks and tests use, made offline: MNIST-1D and a noisy teacher-network problem, as
tensors or torch DataLoaders."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from .core.checks import check_int
from .core.data import DataLoaders

__all__ = ['mnist1d_arrays', 'mnist1d_dls', 'tensor_dls', 'teacher_arrays']


def mnist1d_arrays(seed=42, num_samples=5000):
    """(x_train, y_train, x_test, y_test) tensors of MNIST-1D, generated locally by the `mnist1d`
    package (4000 train / 1000 test by default); nothing is downloaded."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise ImportError('MNIST-1D needs the mnist1d package: pip install mnist1d') from e
    args = get_dataset_args()
    args.seed, args.num_samples = seed, num_samples
    d = make_dataset(args)
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)
    return f(d['x']), torch.as_tensor(d['y']).long(), f(d['x_test']), torch.as_tensor(d['y_test']).long()


def tensor_dls(x, y, x_valid, y_valid, bs=100, valid_bs=None, shuffle=True, seed=None, drop_last=None,
               **kwargs) -> DataLoaders:
    """DataLoaders over in-memory tensors; `seed` fixes the shuffling order. `drop_last` is the training
    loader's (the validation loader keeps every sample): None, the default, drops a last batch only when it
    would hold a single sample, which BatchNorm cannot normalize in training ("Expected more than 1 value
    per channel") and whose step follows one sample's gradient; True or False as in ``DataLoader``. Other
    keyword arguments go to both loaders."""
    check_int('bs', bs, min_value=1)
    if drop_last is None: drop_last = len(x) % bs == 1 and len(x) > 1
    elif not isinstance(drop_last, bool):
        raise TypeError(f'drop_last must be None, True or False, got {type(drop_last).__name__}')
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    train = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=shuffle, generator=g, drop_last=drop_last,
                       **kwargs)
    valid = DataLoader(TensorDataset(x_valid, y_valid), batch_size=valid_bs or 2 * bs, **kwargs)
    return DataLoaders(train, valid)


def mnist1d_dls(bs=100, seed=42, data_seed=42, **kwargs) -> DataLoaders:
    "MNIST-1D train/test DataLoaders (batch size `bs`, shuffling seeded by `seed`)."
    return tensor_dls(*mnist1d_arrays(data_seed), bs=bs, seed=seed, **kwargs)


def teacher_arrays(seed=0, n_train=4000, n_test=1000, n_in=20, n_hidden=32, n_classes=5, flip=0.1):
    """(x_train, y_train, x_test, y_test): Gaussian inputs labelled by a random tanh network (drawn from
    `seed`), with a fraction `flip` of the training labels replaced at random; the test labels stay clean.
    A problem where memorising noise, not instability, limits the lr."""
    for name, v in (('n_train', n_train), ('n_test', n_test), ('n_in', n_in), ('n_hidden', n_hidden)):
        check_int(name, v, min_value=1)
    check_int('n_classes', n_classes, min_value=2)
    if not isinstance(flip, (int, float)) or not 0 <= flip <= 1:
        raise ValueError(f'flip must be in [0, 1], got {flip!r}')
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(n_in, n_hidden, generator=g) / n_in ** 0.5, torch.randn(n_hidden, n_classes, generator=g)
    x = torch.randn(n_train + n_test, n_in, generator=g)
    y = (torch.tanh(x @ w1 * 2) @ w2).argmax(1)
    noisy = torch.rand(n_train, generator=g) < flip
    y[:n_train][noisy] = torch.randint(0, n_classes, (int(noisy.sum()),), generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
