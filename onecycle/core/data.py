"""Batches and loaders: moving batches to a device, their size, the (train, valid) pair, and the checks
and rebuild arguments every loader-handling module shares."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader

from .dist import local_rank

__all__ = ['DataLoaders', 'to_device', 'default_device', 'batch_size_of', 'check_loader', 'loader_kwargs']


def loader_kwargs(dl: DataLoader) -> dict:
    """What it takes to rebuild DataLoader `dl` (with another sampler or batch size): batching,
    collation, workers, memory pinning, the generator and the order of worker results."""
    kw = dict(batch_size=dl.batch_size, drop_last=dl.drop_last, collate_fn=dl.collate_fn, num_workers=dl.num_workers,
              pin_memory=dl.pin_memory, timeout=dl.timeout, worker_init_fn=dl.worker_init_fn,
              multiprocessing_context=dl.multiprocessing_context, generator=dl.generator,
              persistent_workers=dl.persistent_workers, pin_memory_device=dl.pin_memory_device)
    if dl.num_workers > 0: kw['prefetch_factor'] = dl.prefetch_factor
    if hasattr(dl, 'in_order'): kw['in_order'] = dl.in_order
    return kw


def default_device() -> torch.device:
    "CUDA when available (under torchrun, this process's GPU: LOCAL_RANK), else the CPU."
    if not torch.cuda.is_available(): return torch.device('cpu')
    if 'LOCAL_RANK' in os.environ: return torch.device('cuda', local_rank() % torch.cuda.device_count())
    return torch.device('cuda', torch.cuda.current_device())


def to_device(b, device, non_blocking=True):
    "Move tensors in (nested) tuples, lists and dicts to `device`; non-blocking so copies overlap compute."
    if isinstance(b, torch.Tensor): return b if b.device == device else b.to(device, non_blocking=non_blocking)
    if isinstance(b, (list, tuple)):
        if all(type(o) is torch.Tensor and o.device == device for o in b): return b   # the common case, per batch
        return type(b)([to_device(o, device, non_blocking) for o in b])
    if isinstance(b, dict): return {k: to_device(v, device, non_blocking) for k, v in b.items()}
    return b


class DataLoaders:
    "A training and a validation loader (the latter may be None)."
    def __init__(self, train, valid=None):
        self.train, self.valid = train, valid

    @classmethod
    def wrap(cls, dls):
        if hasattr(dls, 'train') and hasattr(dls, 'valid'): return dls
        if isinstance(dls, (tuple, list)) and len(dls) == 2: return cls(*dls)
        raise TypeError('dls must be a pair (train_dl, valid_dl) or an object with .train and .valid, '
                        f'got {type(dls).__name__}')


def batch_size_of(b) -> int:
    # the common case, per batch
    if type(b) is tuple and b and type(b[0]) is torch.Tensor and b[0].ndim: return b[0].shape[0]
    while isinstance(b, (list, tuple)): b = b[0]
    if isinstance(b, dict): b = next(iter(b.values()))
    return b.shape[0] if isinstance(b, torch.Tensor) and b.ndim > 0 else 1


def check_loader(dl, name: str):
    "Refuse, before any work, a loader that is missing, has no length or is empty; `name` is the parameter."
    if dl is None: raise ValueError(f'{name} is None: there is no data to run on')
    if isinstance(dl, (str, bytes, dict)):
        raise TypeError(f'{name} must be a DataLoader (or a sized iterable of batches), got {type(dl).__name__} '
                        f'{dl!r:.40}')
    try: n = len(dl)
    except TypeError: raise TypeError(f'{name} must have a length (a DataLoader or a sized iterable)') from None
    if n == 0: raise ValueError(f'{name} is empty (len 0): check the dataset size, batch_size and drop_last')
