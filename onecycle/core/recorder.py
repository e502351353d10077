"""Recorder: the history of a fit (losses, hyper-parameters, per-epoch results) and its plots.

Per-batch losses are kept as device tensors during a training pass (stacked every 256 batches) and
read back in one transfer at its end or when somebody asks for them, so recording adds no
host-device synchronisation per batch on a GPU. The history is kept compact: a loss takes 8 bytes
and each hyper-parameter 8 bytes per param group per step (plain ``array``s of doubles), so a
million steps with one param group cost about 32 MB, not the 0.7 GB of lists of Python floats.
``losses`` and ``hps`` are plain lists built when read.
"""
from __future__ import annotations

import time
from array import array

import torch

from .callback import Callback
from .hyper import has_hyper, hyper_getter
from .metrics import is_accumulated, metric_name, metric_value
from .plotting import plot_hypers

__all__ = ['Recorder', 'smooth_ema']


def smooth_ema(values, beta=0.98) -> list[float]:
    "Debiased exponential moving average, the same smoothing the LR range test uses."
    out, avg = [], 0.
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


def _computed(m) -> float:
    "The value an accumulating metric computed over the pass, as a float."
    return float(metric_value(m, m.compute()).item())


class Recorder(Callback):
    """Always on. Keeps, for the last fit:

    - ``hps``: per optimizer step, for each hyper-parameter name a list with one value per param
      group (``lrs``/``moms`` give param group 0 as plain lists); a cancelled step (accumulation, a
      skipped non-finite or fp16-overflowed step) is no step and has no entry;
    - ``losses``: the raw training loss of every batch, skipped steps' batches included (``smooth_losses`` too);
    - ``epochs``: one dict per epoch with train loss, valid loss, metrics and seconds, appended when
      the epoch's last pass (validation, or training without a validation set) ends, so that
      ``epochs[-1]`` is this epoch's row in ``after_epoch`` whatever the callback's order
      (``last_valid`` holds the latest validation from ``after_validate``). An epoch cancelled
      before its last pass ended gets its row in the Recorder's own ``after_epoch``.
    """
    order = 50
    HYPERS = ('lr', 'mom', 'wd')

    _CHUNK = 256   # pending loss tensors stacked into one

    def __init__(self, beta=0.98):
        self.beta = beta
        self.reset()
        self.last_valid = {}

    def reset(self):
        self._hp = {k: array('d') for k in self.HYPERS}   # per name: values of every param group, step after step
        self._n_groups = 1
        self._hp_cache = None
        self._losses = array('d')                         # losses of finished passes (and loaded ones), on the host
        self._pass_chunks, self._pending, self._bs = [], [], []   # this training pass: device tensors, batch sizes
        self.epochs, self.batches_per_epoch = [], []
        self._valid_sums, self._valid, self._n_batches = None, [], 0
        self._t0, self._train_loss, self._row_due = 0., float('nan'), False

    # --- compact storage ---------------------------------------------------------------------------
    @property
    def hps(self) -> dict:
        "Per optimizer step, for each hyper-parameter name, a list with one value per param group."
        if self._hp_cache is None:
            n = self._n_groups
            self._hp_cache = {k: [list(a[i:i + n]) for i in range(0, len(a), n)] for k, a in self._hp.items()}
        return self._hp_cache

    @hps.setter
    def hps(self, value: dict):
        groups = {len(v) for vs in value.values() for v in vs}
        if len(groups) > 1: raise ValueError(f'hps: every step must have one value per param group, got {groups}')
        self._n_groups = groups.pop() if groups else 1
        self._hp = {k: array('d', (float(x) for v in vs for x in v)) for k, vs in value.items()}
        for k in self.HYPERS: self._hp.setdefault(k, array('d'))
        self._hp_cache = None

    def _flush_pending(self):
        if self._pending:
            self._pass_chunks.append(torch.stack(self._pending).float().reshape(-1)); self._pending = []

    def _pass_losses(self):
        "This training pass's losses as one device tensor (None if it has none)."
        self._flush_pending()
        if not self._pass_chunks: return None
        if len(self._pass_chunks) > 1: self._pass_chunks = [torch.cat(self._pass_chunks)]
        return self._pass_chunks[0]

    def _n_pass(self) -> int:
        return sum(len(c) for c in self._pass_chunks) + len(self._pending)

    def state_dict(self) -> dict:
        return {'hps': {k: [list(v) for v in vs] for k, vs in self.hps.items()}, 'losses': self.losses,
                'epochs': [dict(e) for e in self.epochs], 'batches_per_epoch': list(self.batches_per_epoch),
                'last_valid': dict(self.last_valid),
                'epoch_bs': list(self._bs)}   # the current (or last) training pass, for resuming

    def load_state_dict(self, sd: dict):
        self.hps = {k: [list(v) for v in vs] for k, vs in sd['hps'].items()}
        if getattr(self, '_tracked', None) is not None:   # loaded during a fit: keep recording into the new arrays
            self._tracked = [(k, get, self._hp.setdefault(k, array('d'))) for k, get, _ in self._tracked]
        # the losses of the training pass in progress stay tensors, so a resumed epoch's mean includes them
        n_pass, losses = len(sd.get('epoch_bs', [])), [float(v) for v in sd['losses']]
        dev = self.learn.device if self.learn is not None else 'cpu'
        self._losses = array('d', losses[:len(losses) - n_pass])
        rest = losses[len(losses) - n_pass:]
        self._pass_chunks = [torch.tensor(rest, dtype=torch.float32, device=dev)] if rest else []
        self._pending, self._bs, self._n_batches = [], [int(b) for b in sd.get('epoch_bs', [])], n_pass
        self.epochs, self.batches_per_epoch = [dict(e) for e in sd['epochs']], [int(b) for b in sd['batches_per_epoch']]
        self.last_valid = dict(sd.get('last_valid', {}))

    # --- events ---------------------------------------------------------------------------------
    def before_fit(self):
        pg0 = self.learn.opt.param_groups[0]
        self._previous = None
        if not getattr(self.learn, 'keep_history', False):   # a resumed fit continues its history
            self._previous = self.state_dict() if self.epochs or self._losses or self._n_pass() else None
            self.reset()
        n = len(self.learn.opt.param_groups)
        if any(len(a) for a in self._hp.values()) and n != self._n_groups:
            raise ValueError(f'the history has {self._n_groups} param groups per step, the optimizer now has {n}')
        self._n_groups = n
        self._tracked = [(k, hyper_getter(pg0, k), self._hp.setdefault(k, array('d')))
                         for k in self.HYPERS if has_hyper(pg0, k)]

    def after_fit(self):
        # A fit that recorded nothing (it failed on its first batch, or was cancelled at once) leaves the
        # previous fit's history in place rather than an empty one.
        prev, self._previous = getattr(self, '_previous', None), None
        self._row_due = False   # a fit stopped mid-epoch: a later learn.validate() adds no row
        if prev is not None and not self._losses and not self._n_pass() and not self.epochs:
            self.load_state_dict(prev)

    def before_epoch(self):
        self._t0 = time.perf_counter()
        self._n_batches, self._row_due = 0, True
        # this epoch's validation, if it runs (a cancelled epoch must not show the last one's)
        self._epoch_valid = None
        self.valid_totals = None

    def before_train(self):
        self._move_pass_to_host()
        self._bs = []

    def _move_pass_to_host(self):
        "The losses of the pass that ended go to the host array (one transfer)."
        t = self._pass_losses()
        if t is not None: self._losses.extend(t.cpu().tolist())
        self._pass_chunks = []

    def before_validate(self):
        self.valid_totals = None
        # metric functions are averaged per batch; metric objects (torchmetrics) accumulate over the pass
        metrics = self.learn.metrics
        self._averaged = [m for m in metrics if not is_accumulated(m)]
        self._accumulated = [m for m in metrics if is_accumulated(m)]
        dev = self.learn.device
        for m in self._accumulated:
            m.reset()
            if callable(getattr(m, 'to', None)) and getattr(m, 'device', None) != dev: m.to(dev)

    @property
    def valid_totals(self):
        "(sum over validation batches of value x batch size, samples) for the loss and each metric, or None."
        if self._valid:   # reduce the batches kept so far: one stack per value, not a few ops per batch
            bs = torch.tensor([b for _, b in self._valid], dtype=torch.float32)
            cols = [torch.stack([vs[i] for vs, _ in self._valid]).float().reshape(len(self._valid))
                    for i in range(len(self._valid[0][0]))]
            vals = torch.stack([(c * bs.to(c.device)).sum() for c in cols])
            n = sum(b for _, b in self._valid)
            prev = self._valid_sums
            self._valid_sums = (vals, n) if prev is None else (prev[0] + vals, prev[1] + n)
            self._valid = []
        return self._valid_sums

    @valid_totals.setter
    def valid_totals(self, value):
        self._valid_sums, self._valid = value, []

    def after_batch(self):
        learn = self.learn
        loss = learn.loss
        if loss is None: return   # batch cancelled before its loss
        if learn.training:   # cheap per batch: keep a reference, reduce when read or at the end of the pass
            self._pending.append(loss.detach()); self._bs.append(learn.batch_size)
            if len(self._pending) >= self._CHUNK: self._flush_pending()
            self._n_batches += 1
            return
        self._valid.append(([loss.detach()]
                            + [metric_value(m, m(learn.pred, *learn.yb)).detach() for m in self._averaged],
                            learn.batch_size))
        for m in self._accumulated: m.update(learn.pred, *learn.yb)

    def after_step(self):
        pgs = self.learn.opt.param_groups
        self._hp_cache = None
        if len(pgs) == 1:   # the common case, without a comprehension per hyper-parameter per step
            pg = pgs[0]
            for _, get, vs in self._tracked: vs.append(float(get(pg)))
        else:
            for _, get, vs in self._tracked: vs.extend([float(get(pg)) for pg in pgs])

    def after_train(self):
        ls = self._pass_losses()
        if ls is None: self._train_loss = float('nan')
        else:
            bs = torch.tensor(self._bs, dtype=ls.dtype, device=ls.device)
            self._train_loss = ((ls * bs).sum() / bs.sum()).item()
        if self.learn.dls.valid is None and self._row_due: self._add_row()

    def after_validate(self):
        # valid_totals is None when no rank validated a sample (under DDP it is already summed over the ranks):
        # then every rank skips compute(), which would otherwise synchronise the metric's states across them
        seen = self.valid_totals is not None
        n_averaged = sum(not is_accumulated(m) for m in self.learn.metrics)
        vals = iter(self._mean() if seen else [float('nan')] * (1 + n_averaged))
        row = {'valid_loss': next(vals)}
        for m in self.learn.metrics:
            row[metric_name(m)] = (_computed(m) if seen else float('nan')) if is_accumulated(m) else next(vals)
        self.last_valid = self._epoch_valid = row
        if getattr(self, '_row_due', False): self._add_row()   # the epoch's row exists before any after_epoch

    def after_epoch(self):
        if getattr(self, '_row_due', False): self._add_row()   # an epoch cancelled before its last pass ended

    def _add_row(self):
        "This epoch's row, added when its last pass ends: every callback's after_epoch finds it in epochs[-1]."
        self._row_due = False
        row = {'epoch': self.learn.epoch, 'train_loss': getattr(self, '_train_loss', float('nan'))}
        if self.learn.dls.valid is not None:
            nan = {k: float('nan') for k in ['valid_loss'] + [metric_name(m) for m in self.learn.metrics]}
            row.update(getattr(self, '_epoch_valid', None) or nan)
        row['time'] = time.perf_counter() - self._t0
        self.epochs.append(row)
        self.batches_per_epoch.append(self._n_batches)
        self._train_loss = float('nan')

    def _mean(self) -> list[float]:
        s, n = self.valid_totals
        return (s / n).tolist()

    # --- views ----------------------------------------------------------------------------------
    @property
    def losses(self) -> list[float]:
        "Training loss of every batch (a new list); the pass in progress is read back in one transfer."
        t = self._pass_losses()
        return self._losses.tolist() + ([] if t is None else t.cpu().tolist())

    @property
    def smooth_losses(self) -> list[float]:
        return smooth_ema(self.losses, self.beta)

    @property
    def lrs(self) -> list[float]:
        return [v[0] for v in self.hps['lr']]

    @property
    def moms(self) -> list[float]:
        return [v[0] for v in self.hps['mom']]

    @property
    def metric_names(self) -> list[str]:
        names = ['epoch', 'train_loss']
        if self.learn is not None and self.learn.dls.valid is not None:
            names += ['valid_loss'] + [metric_name(m) for m in self.learn.metrics]
        return names + ['time']

    # --- plots ----------------------------------------------------------------------------------
    def plot_loss(self, skip_start=0, with_valid=True, ax=None):
        "Training loss per batch (raw and smoothed) and validation loss per epoch; returns the Figure."
        import matplotlib.pyplot as plt
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
        losses = self.losses
        xs = range(skip_start, len(losses))
        ax.plot(xs, losses[skip_start:], alpha=0.3, color='C0', label='train (raw)')
        ax.plot(xs, self.smooth_losses[skip_start:], color='C0', label='train (smoothed)')
        if with_valid and self.epochs and 'valid_loss' in self.epochs[0]:
            ends = [sum(self.batches_per_epoch[:i + 1]) - 1 for i in range(len(self.epochs))]
            ax.plot(ends, [e['valid_loss'] for e in self.epochs], 'o-', color='C1', label='valid')
        ax.set_xlabel('batch'); ax.set_ylabel('loss'); ax.legend(); ax.set_title('Losses')
        return fig

    def plot_sched(self, keys=('lr', 'mom'), group=None):
        "Hyper-parameters per optimizer step (every param group, or only `group`); returns the Figure."
        return plot_hypers({k: self.hps[k] for k in keys if self.hps.get(k)}, group=group)
