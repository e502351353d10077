"""Batch size and learning rate: the noise scale, rescaling the lr with the batch, the largest batch
that fits in memory, and raising the batch size instead of decaying the lr.

The gradient noise of SGD grows with the learning rate and shrinks with the batch size, as the noise
scale g = lr * (N / B - 1) (Smith & Le 2017; N samples, batch B). Keeping g fixed is why the lr scales
with the batch, and raising B lowers g just as decaying the lr does, with fewer, larger steps
(Smith, Kindermans, Ying & Le 2017, "Don't decay the learning rate, increase the batch size").
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, IterableDataset

from ..core.callback import Callback
from ..core.checks import check_int, check_positive
from ..core.data import batch_loss, call_model, check_loader, loader_kwargs, split_batch, to_device
from ..core.hyper import scale_lr
from ..core.snapshot import preserved

__all__ = ['noise_scale', 'scale_lr', 'with_batch_size', 'step_memory', 'find_batch_size', 'BatchSizeResult',
           'BatchSizeSchedule', 'NoiseScale']


def noise_scale(lr: float, n_samples: int, batch_size: int) -> float:
    "The SGD noise scale g = lr * (N/B - 1): N training samples, batches of B (0 for full-batch training)."
    check_positive('lr', lr)
    check_int('n_samples', n_samples, min_value=1); check_int('batch_size', batch_size, min_value=1)
    return lr * (n_samples / batch_size - 1)




def with_batch_size(dl: DataLoader, batch_size: int) -> DataLoader:
    """A DataLoader like `dl` (same dataset, sampler and its generator, workers, collate, drop_last,
    pinning) that yields batches of `batch_size`."""
    check_int('batch_size', batch_size, min_value=1)
    if not isinstance(dl, DataLoader): raise TypeError(f'dl must be a torch DataLoader, got {type(dl).__name__}')
    if dl.batch_size is None:
        raise ValueError('dl batches with a custom batch_sampler: its batch size cannot be changed from outside')
    kw = {**loader_kwargs(dl), 'batch_size': batch_size}
    if not isinstance(dl.dataset, IterableDataset): kw['sampler'] = dl.sampler
    return DataLoader(dl.dataset, **kw)


# --- the memory one step needs ----------------------------------------------------------------------
def _sample_batch(dl, batch_size):
    "A batch of `batch_size` samples of ``dl.dataset`` (cycling if it is smaller), collated as `dl` does."
    ds = dl.dataset
    n = len(ds)
    return dl.collate_fn([ds[i % n] for i in range(batch_size)])


def _storages(tensors):
    out = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != 'meta':
            s = t.untyped_storage(); out[s.data_ptr()] = s.nbytes()
    return out


def _flat(b):
    if isinstance(b, torch.Tensor): return [b]
    if isinstance(b, (list, tuple)): return [t for o in b for t in _flat(o)]
    if isinstance(b, dict): return [t for o in b.values() for t in _flat(o)]
    return []


def step_memory(learn, batch_size: int) -> dict:
    """Bytes one training step at `batch_size` needs, measured on a real step, then undone (weights,
    optimizer state, gradients, mode: see :func:`~onecycle.core.snapshot.preserved`).

    On CUDA: the peak of ``torch.cuda.max_memory_allocated`` over forward, backward and optimizer
    step. Elsewhere: the tensors alive at once at the peak (the end of the backward pass), counted
    by storage so that views and shared tensors count once: parameters and buffers, their
    gradients, the optimizer state, the batch, and the activations autograd saves for backward
    (seen through ``torch.autograd.graph.saved_tensors_hooks``)."""
    check_int('batch_size', batch_size, min_value=1)
    check_loader(learn.dls.train, 'dls.train')
    batch = _sample_batch(learn.dls.train, batch_size)
    model, opt = learn.model, learn.opt
    cuda = learn.device.type == 'cuda'
    with preserved(learn):
        model.train()
        if cuda:
            torch.cuda.synchronize(learn.device); torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated(learn.device)
            torch.cuda.reset_peak_memory_stats(learn.device)
        b = to_device(batch, learn.device)
        xb, yb = split_batch(b, learn.n_inp)
        fixed = _storages(list(model.parameters()) + list(model.buffers()))
        batch_st = _storages(_flat(b))
        saved = {}
        def pack(t):
            s = t.untyped_storage(); p = s.data_ptr()
            if p not in fixed and p not in batch_st: saved[p] = s.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = batch_loss(learn.loss_func, call_model(model, xb), yb)
        loss.backward()
        grads = _storages([p.grad for p in model.parameters() if p.grad is not None])
        opt.step()
        state = _storages([v for st in opt.state.values() for v in st.values()])
        if cuda: peak = torch.cuda.max_memory_allocated(learn.device) - base + sum(fixed.values())
    out = {'params': sum(fixed.values()), 'grads': sum(grads.values()), 'optimizer': sum(state.values()),
           'batch': sum(batch_st.values()), 'activations': sum(saved.values())}
    out['total'] = peak if cuda else sum(out.values())
    return out


def _default_budget(device) -> int:
    if device.type == 'cuda':
        free, total = torch.cuda.mem_get_info(device)
        return int(0.9 * total)
    try: return int(0.5 * os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))
    except (ValueError, OSError, AttributeError):
        raise ValueError('max_memory is needed on this platform (bytes one step may use)') from None


@dataclass
class BatchSizeResult:
    "The largest batch that fits, the budget, and every size tried (batch size -> bytes, or None for out of memory)."
    batch_size: int
    max_memory: int
    tried: dict = field(default_factory=dict)

    def __str__(self):
        rows = [f'{b:>8d}  ' + ('out of memory' if m is None else f'{m / 2**20:10.2f} MiB')
                + ('  fits' if m is not None and m <= self.max_memory else '')
                for b, m in sorted(self.tried.items())]
        return '\n'.join([f'largest batch that fits in {self.max_memory / 2**20:.1f} MiB: {self.batch_size}'] + rows)


def find_batch_size(learn, max_memory=None, start=1, max_batch_size=None) -> BatchSizeResult:
    """The largest batch size whose training step fits in `max_memory` bytes: double from `start`
    until a step does not fit, then bisect between the last size that fitted and the first that did
    not. A size fits when :func:`step_memory` stays within the budget (and, on CUDA, when the step
    does not run out of memory). `max_memory` defaults to 90% of the GPU's memory, or half the free
    RAM elsewhere; `max_batch_size` to the size of the training set. The learner is left as it was."""
    check_positive('max_memory', max_memory, allow_none=True)
    check_int('start', start, min_value=1)
    check_int('max_batch_size', max_batch_size, min_value=1, allow_none=True)
    check_loader(learn.dls.train, 'dls.train')
    try: n = len(learn.dls.train.dataset)
    except TypeError:
        raise TypeError('find_batch_size needs a training set with a length (a map-style dataset)') from None
    hi_cap = max_batch_size or n
    if start > hi_cap: raise ValueError(f'start must be <= max_batch_size ({hi_cap}), got {start}')
    budget = int(max_memory) if max_memory is not None else _default_budget(learn.device)
    tried = {}

    def fits(bs):
        try: m = step_memory(learn, bs)['total']
        except torch.cuda.OutOfMemoryError:
            m = None; torch.cuda.empty_cache()
        tried[bs] = m
        return m is not None and m <= budget

    if not fits(start):
        raise RuntimeError(f'a step at batch size {start} needs {tried[start]} bytes, more than max_memory={budget}')
    lo, hi = start, None
    while hi is None and lo < hi_cap:
        nxt = min(2 * lo, hi_cap)
        if fits(nxt): lo = nxt
        else: hi = nxt
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid): lo = mid
        else: hi = mid
    return BatchSizeResult(lo, budget, tried)


# --- callbacks ------------------------------------------------------------------------------------
class NoiseScale(Callback):
    """Records the noise scale g = lr * (N/B - 1) of every optimizer step (lr of the last param group,
    B the samples per step including accumulated batches) in ``values``."""
    order = 55

    def before_fit(self):
        self.values, self.n = [], len(self.learn.dls.train.dataset)

    def after_step(self):
        bs = self.learn.batch_size * getattr(self.learn, 'accum_steps', 1)
        self.values.append(float(self.learn.opt.param_groups[-1]['lr']) * (self.n / min(bs, self.n) - 1))


class BatchSizeSchedule(Callback):
    """Raise the batch size instead of decaying the learning rate (Smith, Kindermans, Ying & Le 2017).

    At the start of each epoch in `milestones` (0-based) the training loader is rebuilt with the
    batch size multiplied by `factor`, where a step schedule would divide the lr by `factor`. Once
    the batch would exceed `max_batch_size`, the rest of the factor is taken from the lr instead,
    as the paper does. ``history`` lists (epoch, batch size, lr, noise scale) per epoch. After the
    fit the learner's loader and learning rates are the ones it had. Use it with a constant lr or
    an epoch-based schedule: step-based schedules assume the steps per epoch stay fixed."""
    order = -30

    def __init__(self, milestones, factor=5., max_batch_size=None):
        if isinstance(milestones, int) and not isinstance(milestones, bool): milestones = [milestones]
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise TypeError(f'milestones must be a non-empty list of epochs, got {milestones!r}')
        for m in milestones: check_int('milestones', m, min_value=1)
        if list(milestones) != sorted(set(milestones)):
            raise ValueError(f'milestones must be increasing, got {milestones!r}')
        check_positive('factor', factor)
        if factor <= 1: raise ValueError(f'factor must be > 1 (the batch grows), got {factor}')
        check_int('max_batch_size', max_batch_size, min_value=1, allow_none=True)
        self.milestones, self.factor, self.max_batch_size = list(milestones), factor, max_batch_size

    def before_fit(self):
        dl = self.learn.dls.train
        if not isinstance(dl, DataLoader) or dl.batch_size is None:
            raise ValueError('BatchSizeSchedule needs dls.train to be a DataLoader built with batch_size')
        self.dl0, self.bs0 = dl, dl.batch_size
        self.lrs0 = [pg['lr'] for pg in self.learn.opt.param_groups]
        self.n = len(dl.dataset)
        self.history = []

    def before_epoch(self):
        k = bisect.bisect_right(self.milestones, self.learn.epoch)
        target = self.bs0 * self.factor ** k
        bs = int(round(min(target, self.max_batch_size or target, self.n)))
        if bs != self.learn.dls.train.batch_size:
            self.learn.dls.train = self.dl0 if bs == self.bs0 else with_batch_size(self.dl0, bs)
        lr_div = target / bs
        for pg, lr in zip(self.learn.opt.param_groups, self.lrs0): pg['lr'] = lr / lr_div
        lr = self.learn.opt.param_groups[-1]['lr']
        self.history.append((self.learn.epoch, bs, float(lr), float(lr) * (self.n / bs - 1)))

    def after_fit(self):
        self.learn.dls.train = self.dl0
        for pg, lr in zip(self.learn.opt.param_groups, self.lrs0): pg['lr'] = lr
