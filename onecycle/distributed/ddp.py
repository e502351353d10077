"""DistributedDataParallel as a callback: sharded loaders, the wrapped model during training passes,
reduced losses and metrics, no gradient sync on accumulation batches."""
from __future__ import annotations

import copy
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler, SequentialSampler

from ..callbacks.interrupt import InterruptGuard
from ..callbacks.training import GradAccumulation
from ..core.callback import Callback
from ..core.checks import check_bool, check_int
from ..core.data import loader_kwargs
from ..core.dist import (any_rank, collective_device, init_distributed, is_distributed, is_sharded, main_print, rank,
                         reduces_cpu_tensors, sum_over_ranks, unwrap_model, world_size)
from ..core.metrics import is_accumulated

__all__ = ['ShardSampler', 'shard_loader', 'effective_batch_size', 'DistributedCallback', 'distribute']


# --- where am I --------------------------------------------------------------------------------

# --- collectives -------------------------------------------------------------------------------

# --- the model ---------------------------------------------------------------------------------
class _DDP(DistributedDataParallel):
    "DistributedDataParallel whose state dict is its module's: no ``module.`` prefix in anything saved."
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)



# --- the data ----------------------------------------------------------------------------------
class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` of a dataset, in order and without padding: for
    evaluation, where DistributedSampler's repeated samples would bias the reduced metrics. Shards
    may differ in length by one sample; the reduction weights every batch by its size."""
    def __init__(self, dataset, num_replicas: int, rank: int):
        check_int('num_replicas', num_replicas, min_value=1); check_int('rank', rank, min_value=0)
        if rank >= num_replicas:
            raise ValueError(f'rank must be < num_replicas, got rank={rank}, num_replicas={num_replicas}')
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
    elif isinstance(dl.dataset, IterableDataset):
        why = 'its dataset is an IterableDataset, which must shard itself by rank'
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
    t = torch.randint(0, 2**62, (1,), device=collective_device())
    dist.broadcast(t, src=0)
    return int(t.item())


# --- batch size --------------------------------------------------------------------------------
def _batch_parts(learn) -> tuple:
    "(per-process batch size or None, processes, accumulation steps)."
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
    itself when launched by torchrun (or when a process group is initialized); the group is joined at
    the start of the first fit (``init_distributed``).

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
    - Resuming: its state (in checkpoints) is the DistributedSampler's seed and the epoch of the pass in
      progress; a Ctrl-C on any rank is added to the loss all-reduce, so every rank stops after the
      same batch (``InterruptGuard``).

    - A model sharded by FSDP (the ``FSDP`` callback, or ``fully_shard`` by hand) is never wrapped:
      the callback then shards the data and reduces losses and metrics only.
    - Its state (training passes so far, the samplers' epoch) is saved in checkpoints, so a resumed
      fit shuffles as the uninterrupted one.

    Args:
        verbose: print the effective batch size (rank 0 only).
        wrap: wrap the model in DistributedDataParallel for the training passes; False leaves the
            model as it is (for a model that handles its own gradient reduction).
        ddp_kwargs: passed to ``DistributedDataParallel`` (e.g. ``find_unused_parameters=True``).
    """
    order = -25   # after ChannelsLast/Compile change the model, before schedulers read the step count

    def __init__(self, verbose=True, wrap=True, **ddp_kwargs):
        if 'module' in ddp_kwargs: raise TypeError('DistributedCallback wraps learn.model itself: do not pass module')
        check_bool('wrap', wrap)
        self.verbose, self.wrap, self.ddp_kwargs = bool(verbose), wrap, ddp_kwargs
        self.ddp, self._raw, self._no_sync, self._printed = None, None, None, None
        self.train_passes = 0   # the DistributedSampler's epoch: a new shuffle every training pass, over fits too
        self._after_train, self._stop, self._stop_host, self._guard = False, None, None, None

    # --- resuming: the shuffle of the pass in progress ---------------------------------------------
    def _train_sampler(self):
        s = getattr(self.learn.dls.train, 'sampler', None) if self.learn is not None else None
        return s if isinstance(s, DistributedSampler) else None

    def state_dict(self):
        """The DistributedSampler's seed and the epoch of the pass a resume replays (or starts), so that a
        resumed fit shuffles as the interrupted one did."""
        s = self._train_sampler()
        return {'train_passes': self.train_passes - 1 if self._after_train else self.train_passes,
                'seed': None if s is None else int(s.seed)}

    def load_state_dict(self, sd):
        self.train_passes = int(sd['train_passes'])
        s = self._train_sampler()
        if s is not None and sd.get('seed') is not None: s.seed = int(sd['seed'])

    # --- Ctrl-C: every rank stops after the same batch ----------------------------------------------
    def _agree(self, pending, where):
        "For InterruptGuard: the stop decision, the same on every rank (see after_loss and after_validate)."
        if where == 'epoch': return any_rank(pending)
        if not self.learn.training: return False   # validation batches: decided at the end of the epoch
        stop = self._stop
        if stop is None: return False
        if stop.device.type == 'cpu':
            self._stop = None
            return stop.item() > 0
        # On a GPU, reading this batch's flag would wait for the device: use the previous batch's, copied to
        # the host without blocking and complete by now (every rank reads the same batch's flag).
        prev, self._stop_host = getattr(self, '_stop_host', None), None
        host = torch.empty((), pin_memory=True)
        host.copy_(stop, non_blocking=True)
        event = torch.cuda.Event(); event.record()
        self._stop, self._stop_host = None, (host, event)
        if prev is None: return False
        prev[1].synchronize()
        return prev[0].item() > 0

    def shard_data(self):
        "Replace the learner's loaders by sharded copies (a no-op for loaders already sharded)."
        learn, n, r = self.learn, world_size(), rank()
        train, valid = learn.dls.train, learn.dls.valid
        new_train = (train if train is None or _is_sharded(train)
                     else shard_loader(train, True, n, r, _shared_seed(train)))
        new_valid = valid if valid is None else shard_loader(valid, False, n, r)
        if new_train is not train or new_valid is not valid:
            dls = copy.copy(learn.dls)   # the user's DataLoaders object is left as it was
            dls.train, dls.valid = new_train, new_valid
            learn.dls = dls

    def _check(self):
        dev = self.learn.device
        if dev.type != 'cuda' and not reduces_cpu_tensors():
            raise ValueError(f'the process group backend {dist.get_backend()!r} cannot reduce tensors on '
                             f'{dev}: train on CUDA (device="cuda") or initialize the group with backend "gloo"')

    # --- events ---------------------------------------------------------------------------------
    def before_fit(self):
        learn = self.learn
        init_distributed()   # under torchrun: join the process group (once)
        self._check()
        self.shard_data()   # loaders replaced since the learner was made
        self._raw = unwrap_model(learn.model)
        sharded = is_sharded(self._raw)
        if self.wrap and not sharded:
            kw = dict(self.ddp_kwargs)
            if learn.device.type == 'cuda' and 'device_ids' not in kw:
                kw['device_ids'] = [learn.device.index if learn.device.index is not None
                                    else torch.cuda.current_device()]
            self.ddp = _DDP(self._raw, **kw)   # broadcasts rank 0's parameters and buffers
        else: self.ddp = self._raw
        self._guard = next((c for c in learn.cbs if isinstance(c, InterruptGuard)), None)
        if self._guard is not None: self._guard.agree = self._agree
        parts = _batch_parts(learn)
        if self.verbose and parts != self._printed:
            bs, n, accum = parts
            what = 'FSDP' if sharded else 'DistributedDataParallel' if self.wrap else 'Data parallel'
            main_print(f'{what}: {n} processes x batch {bs} x {accum} accumulation steps = '
                       f'effective batch size {effective_batch_size(learn)}')
            self._printed = parts

    def before_train(self):
        self._stop_host = None
        sampler = getattr(self.learn.dl, 'sampler', None)
        if isinstance(sampler, DistributedSampler): sampler.set_epoch(self.train_passes)
        self.learn.model, self._after_train = self.ddp, False

    def before_batch(self):
        learn = self.learn
        if not learn.training or learn.accum_steps <= 1 or self.ddp is self._raw: return
        if not learn.is_step_batch:
            self._no_sync = self.ddp.no_sync()
            self._no_sync.__enter__()

    def after_loss(self):
        learn = self.learn
        if not learn.training: return
        bs = learn.batch_size
        if self._guard is None:
            total, n = sum_over_ranks(learn.loss.detach() * bs, bs)
        else:   # a Ctrl-C on any rank rides along with the loss: all ranks stop after this same batch
            flag = torch.ones_like(learn.loss.detach()) if self._guard.pending else torch.zeros_like(learn.loss)
            sums, n = sum_over_ranks(torch.stack([learn.loss.detach() * bs, flag.detach()]), bs)
            total, self._stop = sums[0], sums[1]
        learn.loss = (total / n).to(learn.loss.dtype)   # learn.loss_grad, which backward uses, stays local

    def after_batch(self):
        self._exit_no_sync()

    def after_train(self):
        self._exit_no_sync()
        self.learn.model = self._raw
        self.train_passes += 1
        self._after_train = True

    def after_epoch(self):
        self._after_train = False

    def after_validate(self):
        # Reduce the Recorder's (sum of value x batch size, samples) before it turns them into means.
        rec = self.learn.recorder
        n_vals = 1 + sum(not is_accumulated(m) for m in self.learn.metrics)   # torchmetrics sync themselves
        if rec.valid_totals is None: vals, n = torch.zeros(n_vals, device=self.learn.device), 0
        else: vals, n = rec.valid_totals
        sums, total = sum_over_ranks(vals, n)
        rec.valid_totals = None if total.item() == 0 else (sums, total)

    def after_fit(self):
        # Runs on errors and interrupts too: the user gets their module back.
        self._exit_no_sync()
        if self._raw is not None: self.learn.model = self._raw
        self.ddp, self._raw, self._stop, self._stop_host, self._after_train = None, None, None, None, False
        if self._guard is not None: self._guard.agree = None

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
