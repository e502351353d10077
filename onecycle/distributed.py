"""Distributed data parallel training: the same code on one process or on N launched by ``torchrun``.

Under ``torchrun`` the Learner joins the process group itself (``init_distributed``) and adds a
``DistributedCallback``, which wraps the model in ``DistributedDataParallel`` and shards the data
with a ``DistributedSampler``. Every rank then sees the same per-batch training loss (all-reduced),
the same validation loss and metrics (reduced with sample-count weights) and the same schedule,
so any decision made from them (the LR finder's divergence test, early stopping, a tuning recipe)
is taken identically on every rank and the ranks stop together. Only rank 0 shows progress.
"""
from __future__ import annotations

import atexit
import copy
import os
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler, SequentialSampler

from .batch_size import loader_kwargs, scale_lr   # scale_lr: the one lr rescaling rule, re-exported here
from .callback import Callback
from .checks import check_int

__all__ = ['is_distributed', 'rank', 'local_rank', 'world_size', 'is_main_process', 'main_print', 'init_distributed',
           'any_rank', 'sum_over_ranks', 'unwrap_model', 'ShardSampler', 'shard_loader', 'effective_batch_size',
           'scale_lr', 'DistributedCallback', 'distribute']


# --- where am I --------------------------------------------------------------------------------
def is_distributed() -> bool:
    "True when a torch.distributed process group is initialized (this process is one of several ranks)."
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    "This process's rank in the default process group (0 without one)."
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    "How many processes train together (1 without a process group)."
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    "This process's index on its machine, as torchrun sets it in ``LOCAL_RANK`` (0 otherwise)."
    return int(os.environ.get('LOCAL_RANK', 0))


def is_main_process() -> bool:
    "True on rank 0, the process that shows progress, prints and writes files."
    return rank() == 0


def main_print(*args, **kwargs):
    "``print`` on rank 0 only, so N processes do not print everything N times."
    if is_main_process(): print(*args, **kwargs)


def _launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')) \
        and int(os.environ['WORLD_SIZE']) > 1


def init_distributed() -> bool:
    """Join the process group when this process was launched by ``torchrun`` with more than one
    process, so that notebook-style code needs no distributed boilerplate; returns whether this
    process now trains as one of several ranks.

    An existing process group (``init_process_group`` called by the user) is used as it is. The
    group made here uses gloo for CPU tensors and, when CUDA is available, NCCL for CUDA tensors
    (with this process's GPU, ``LOCAL_RANK``, made current); it is destroyed at exit.
    """
    if is_distributed(): return True
    if not dist.is_available() or not _launched_by_torchrun(): return False
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        dist.init_process_group('cpu:gloo,cuda:nccl')
    else:
        dist.init_process_group('gloo')
    atexit.register(_destroy)
    return True


def _destroy():
    if is_distributed(): dist.destroy_process_group()


def _reduces_cpu_tensors() -> bool:
    "Whether the default group's backend handles CPU tensors (gloo, mpi), not NCCL alone."
    backend = str(dist.get_backend())
    return 'gloo' in backend or 'mpi' in backend


def _collective_device() -> torch.device:
    "Where a small tensor must live for a collective: the CPU, unless the backend is NCCL alone."
    return torch.device('cpu') if _reduces_cpu_tensors() else torch.device('cuda', torch.cuda.current_device())


# --- collectives -------------------------------------------------------------------------------
def any_rank(flag) -> bool:
    """True on every rank when `flag` is true on any rank. Use it for a stop decision made from
    something only one rank knows (its clock, a file), so that all ranks stop at the same step;
    a rank that stopped alone would leave the others waiting in the next all-reduce forever."""
    if not is_distributed(): return bool(flag)
    t = torch.tensor([1 if flag else 0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(total, count, device=None) -> tuple:
    """(`total` summed over ranks, `count` summed over ranks) in one all-reduce, as float64 tensors:
    for means over data that the ranks share out, like ``sum(loss x batch size) / samples``.
    `total` is a number or a tensor (of any shape); without a process group both come back as given."""
    if not is_distributed(): return total, count
    total = torch.as_tensor(total, device=device if device is not None else
                            (total.device if isinstance(total, torch.Tensor) else _collective_device()))
    dtype = torch.float32 if total.device.type == 'mps' else torch.float64   # exact sample counts, precise sums
    packed = torch.cat([total.detach().to(dtype).reshape(-1), torch.full((1,), float(count), dtype=dtype, device=total.device)])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed[:-1].reshape(total.shape), packed[-1]


# --- the model ---------------------------------------------------------------------------------
class _DDP(DistributedDataParallel):
    "DistributedDataParallel whose state dict is its module's: no ``module.`` prefix in anything saved."
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    "The user's module inside a DistributedDataParallel wrapper (the model itself when not wrapped)."
    while isinstance(model, DistributedDataParallel): model = model.module
    return model


# --- the data ----------------------------------------------------------------------------------
class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` of a dataset, in order and without padding: for
    evaluation, where DistributedSampler's repeated samples would bias the reduced metrics. Shards
    may differ in length by one sample; the reduction weights every batch by its size."""
    def __init__(self, dataset, num_replicas: int, rank: int):
        check_int('num_replicas', num_replicas, min_value=1); check_int('rank', rank, min_value=0)
        if rank >= num_replicas: raise ValueError(f'rank must be < num_replicas, got rank={rank}, num_replicas={num_replicas}')
        self.n, self.num_replicas, self.rank = len(dataset), num_replicas, rank

    def __iter__(self):
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self):
        return len(range(self.rank, self.n, self.num_replicas))


def _is_sharded(dl) -> bool:
    return isinstance(getattr(dl, 'sampler', None), (DistributedSampler, ShardSampler))


def shard_loader(dl, training: bool, num_replicas: int, rank: int, seed: int = 0):
    """A copy of DataLoader `dl` that reads only this rank's share of its dataset, with the same
    batch size, collation, workers and drop_last.

    Training loaders get a ``DistributedSampler`` (shuffled if `dl` shuffled, with `seed`, the same
    on every rank); each rank gets the same number of samples, so the ranks take the same number of
    steps. Evaluation loaders (``training=False``) get a ``ShardSampler``: no sample repeated.
    Loaders that cannot be split this way come back unchanged, with a warning: an IterableDataset
    (it must shard itself), a custom sampler or batch sampler, or something that is not a DataLoader.
    Already sharded loaders come back unchanged.
    """
    if _is_sharded(dl): return dl
    why = None
    if not isinstance(dl, DataLoader): why = f'it is a {type(dl).__name__}, not a torch DataLoader'
    elif isinstance(dl.dataset, IterableDataset): why = 'its dataset is an IterableDataset, which must shard itself by rank'
    elif dl.batch_size is None: why = 'it has a custom batch_sampler (or batch_size=None)'
    elif type(dl.sampler) not in (RandomSampler, SequentialSampler) or \
            (isinstance(dl.sampler, RandomSampler) and (dl.sampler.replacement or dl.sampler._num_samples is not None)):
        why = f'it has a custom sampler ({type(dl.sampler).__name__})'
    if why is not None:
        if num_replicas > 1:
            warnings.warn(f'onecycle.distributed: left a {"training" if training else "validation"} loader unsharded '
                          f'because {why}; every rank reads all of it', stacklevel=2)
        return dl
    if training:
        sampler = DistributedSampler(dl.dataset, num_replicas=num_replicas, rank=rank,
                                     shuffle=isinstance(dl.sampler, RandomSampler), seed=seed, drop_last=False)
    else:
        sampler = ShardSampler(dl.dataset, num_replicas, rank)
    return DataLoader(dl.dataset, sampler=sampler, **loader_kwargs(dl))


def _shared_seed(dl) -> int:
    "A shuffling seed every rank agrees on: the loader's generator seed, else one drawn on rank 0 and broadcast."
    gen = getattr(dl, 'generator', None)
    if gen is not None: return int(gen.initial_seed()) % 2**62
    t = torch.randint(0, 2**62, (1,), device=_collective_device())
    dist.broadcast(t, src=0)
    return int(t.item())


# --- batch size --------------------------------------------------------------------------------
def _batch_parts(learn) -> tuple:
    "(per-process batch size or None, processes, accumulation steps)."
    from .training import GradAccumulation
    dl = learn.dls.train
    bs = getattr(dl, 'batch_size', None) or getattr(getattr(dl, 'batch_sampler', None), 'batch_size', None)
    accum = max([learn.accum_steps] + [c.n_batches for c in learn.cbs if isinstance(c, GradAccumulation)])
    return bs, world_size(), accum


def effective_batch_size(learn) -> int | None:
    """Samples per optimizer step over all processes: per-process batch size x processes x gradient
    accumulation (counting a GradAccumulation callback before its fit starts). None when the
    training loader does not say its batch size."""
    bs, n, accum = _batch_parts(learn)
    return None if bs is None else bs * n * accum


# --- the callback ------------------------------------------------------------------------------
class DistributedCallback(Callback):
    """Data-parallel training over the ranks of the default process group. The Learner adds it by
    itself when torch.distributed is initialized (see ``init_distributed``).

    - The training loader is rebuilt around a ``DistributedSampler`` (its epoch set every training
      pass) and the validation loader around a ``ShardSampler``.
    - For the training passes ``learn.model`` is a ``DistributedDataParallel`` wrapper (built at the
      start of every fit, which broadcasts rank 0's weights); at all other times it is the user's
      module, and the wrapper's ``state_dict`` is the module's, so nothing saved has a ``module.``
      prefix. ``unwrap_model(learn.model)`` always gives the module.
    - With gradient accumulation, batches that do not step run under ``no_sync``: gradients are
      all-reduced once per optimizer step, not once per batch.
    - The training loss of every batch is all-reduced (weighted by batch size), so the recorded
      losses and the loss callbacks see are those of the global batch, identical on every rank.
      On NCCL this is asynchronous on the GPU stream: no host synchronisation.
    - Validation loss and metrics are summed over ranks weighted by sample counts: they equal the
      values over the whole validation set.
    - Rank 0 prints the effective batch size at the start of a fit when it changes.

    Args:
        verbose: print the effective batch size (rank 0 only).
        ddp_kwargs: passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``).
    """
    order = -25   # after ChannelsLast/Compile change the model, before schedulers read the step count

    def __init__(self, verbose=True, **ddp_kwargs):
        if 'module' in ddp_kwargs: raise TypeError('DistributedCallback wraps learn.model itself: do not pass module')
        self.verbose, self.ddp_kwargs = bool(verbose), ddp_kwargs
        self.ddp, self._raw, self._no_sync, self._printed = None, None, None, None
        self.train_passes = 0   # the DistributedSampler's epoch: a new shuffle every training pass, over fits too

    def shard_data(self):
        "Replace the learner's loaders by sharded copies (a no-op for loaders already sharded)."
        learn, n, r = self.learn, world_size(), rank()
        train, valid = learn.dls.train, learn.dls.valid
        new_train = train if train is None or _is_sharded(train) else shard_loader(train, True, n, r, _shared_seed(train))
        new_valid = valid if valid is None else shard_loader(valid, False, n, r)
        if new_train is not train or new_valid is not valid:
            dls = copy.copy(learn.dls)   # the user's DataLoaders object is left as it was
            dls.train, dls.valid = new_train, new_valid
            learn.dls = dls

    def _check(self):
        dev = self.learn.device
        if dev.type != 'cuda' and not _reduces_cpu_tensors():
            raise ValueError(f'the process group backend {dist.get_backend()!r} cannot reduce tensors on '
                             f'{dev}: train on CUDA (device="cuda") or initialize the group with backend "gloo"')

    # --- events ---------------------------------------------------------------------------------
    def before_fit(self):
        learn = self.learn
        self._check()
        self.shard_data()   # loaders replaced since the learner was made
        self._raw = unwrap_model(learn.model)
        kw = dict(self.ddp_kwargs)
        if learn.device.type == 'cuda' and 'device_ids' not in kw:
            kw['device_ids'] = [learn.device.index if learn.device.index is not None else torch.cuda.current_device()]
        self.ddp = _DDP(self._raw, **kw)   # broadcasts rank 0's parameters and buffers
        parts = _batch_parts(learn)
        if self.verbose and parts != self._printed:
            bs, n, accum = parts
            main_print(f'DistributedDataParallel: {n} processes x batch {bs} x {accum} accumulation steps = '
                       f'effective batch size {effective_batch_size(learn)}')
            self._printed = parts

    def before_train(self):
        sampler = getattr(self.learn.dl, 'sampler', None)
        if isinstance(sampler, DistributedSampler): sampler.set_epoch(self.train_passes)
        self.learn.model = self.ddp

    def before_batch(self):
        learn = self.learn
        if not learn.training or learn.accum_steps <= 1: return
        steps = (learn.iter + 1) % learn.accum_steps == 0 or learn.iter + 1 >= learn.n_iter   # as GradAccumulation
        if not steps:
            self._no_sync = self.ddp.no_sync()
            self._no_sync.__enter__()

    def after_loss(self):
        learn = self.learn
        if not learn.training: return
        bs = learn.batch_size
        total, n = sum_over_ranks(learn.loss.detach() * bs, bs)
        learn.loss = (total / n).to(learn.loss.dtype)   # learn.loss_grad, which backward uses, stays local

    def after_batch(self):
        self._exit_no_sync()

    def after_train(self):
        self._exit_no_sync()
        self.learn.model = self._raw
        self.train_passes += 1

    def after_validate(self):
        # Reduce the Recorder's (sum of value x batch size, samples) before it turns them into means.
        rec = self.learn.recorder
        n_vals = 1 + len(self.learn.metrics)
        if rec._sums is None: vals, n = torch.zeros(n_vals, device=self.learn.device), 0
        else: vals, n = rec._sums
        sums, total = sum_over_ranks(vals, n)
        rec._sums = None if total.item() == 0 else (sums, total)

    def after_fit(self):
        # Runs on errors and interrupts too: the user gets their module back.
        self._exit_no_sync()
        if self._raw is not None: self.learn.model = self._raw
        self.ddp, self._raw = None, None

    def _exit_no_sync(self):
        if self._no_sync is not None:
            self._no_sync.__exit__(None, None, None); self._no_sync = None


def distribute(learn, **kwargs) -> DistributedCallback:
    "Make `learn` train data-parallel over the initialized process group: add the callback, shard the loaders."
    if not is_distributed():
        raise RuntimeError('torch.distributed is not initialized: launch with torchrun, or call '
                           'torch.distributed.init_process_group first')
    existing = [c for c in learn.cbs if isinstance(c, DistributedCallback)]
    cb = existing[0] if existing else learn.add_cb(DistributedCallback(**kwargs))
    cb.shard_data()
    return cb
