"""The Learner users make: the loop of ``core.learner`` with its default callbacks (recorder, fit position,
divergence guard, progress bars, data parallelism under torchrun), checkpoints, and the one-liners
(``lr_find``, ``fit_one_cycle`` and the other fit_* schedules, ``fine_tune``, freezing, ``diagnose``)
as methods with the signatures and docstrings of the functions they call."""
from __future__ import annotations

import functools

import torch
from torch import nn

from .callbacks.discriminative import freeze, freeze_to, unfreeze
from .callbacks.divergence import DivergenceGuard
from .callbacks.predict import get_preds, predict
from .callbacks.interrupt import InterruptGuard
from .callbacks.progress import ProgressCallback
from .checkpoint import FitPosition, Resume, load_checkpoint, save_checkpoint
from .core.callback import check_callbacks
from .core.checks import check_bool
from .core.dist import is_distributed, is_main_process, is_sharded, launched_by_torchrun
from .core.learner import BaseLearner
from .distributed import FSDP, DistributedCallback, effective_batch_size
from .distributed.sharded import check_sharded_resume, is_sharded_checkpoint, load_sharded, save_sharded
from .schedules.fit import fine_tune, fit_clr, fit_flat_cos, fit_one_cycle, fit_sgdr, fit_warmup_cos
from .tuning.diagnostics import diagnose
from .deploy import export
from .model_summary import summary
from .tuning.range_test import lr_find
from .vision import tta

__all__ = ['Learner']


def _method(fn):
    "A Learner method that calls ``fn(self, ...)``: help() and inspect show fn's own arguments and docstring."
    @functools.wraps(fn)
    def method(self, *args, **kwargs): return fn(self, *args, **kwargs)
    return method


class Learner(BaseLearner):
    """Trains `model` on `dls` with `loss_func`, firing events to callbacks.

    ``fit(n)`` runs, for each epoch, a training pass then a validation pass; each stage X fires
    ``before_X`` and ``after_X`` (stages: fit, epoch, train, validate, batch, backward, step), and a
    batch fires ``after_pred`` and ``after_loss`` too. Raising ``CancelXException`` skips the rest of
    stage X. ``learn.show_training_loop()`` prints the loop with the callbacks at each event; what a
    callback may read and set is written in ``onecycle.Callback``.

    Args:
        model: the torch module; moved to `device`.
        dls: a pair (train, valid) of DataLoaders, or an object with ``.train`` and ``.valid``.
        loss_func: ``loss_func(pred, *targets)`` returning a scalar tensor; None takes the loss the model
            returns (its output's ``loss``, attribute or key: the Hugging Face convention).
        opt_func: a torch optimizer class (or factory) called as ``opt_func(param_groups, lr=lr)``.
        lr: the starting learning rate; schedules usually override it.
        metrics: functions ``metric(pred, *targets)`` averaged over the validation set.
        cbs: extra callbacks, kept for every fit.
        device: where to train; CUDA when available by default (under torchrun, this process's GPU).
        progress: show fastprogress bars and a per-epoch table (rank 0 only under torchrun).
        wd: decoupled weight decay (p <- p - lr*wd*p) for any optimizer; None keeps the optimizer's own
            ``weight_decay`` setting untouched (where that is none, the fit_* one-liners use 0.01).
        wd_bn_bias: also decay biases and normalization weights (off by default, as is customary).
        splitter: ``splitter(model)`` returning a list of parameter lists, one per param group
            (for discriminative learning rates); one group by default.
        n_inp: how many leading elements of a batch are model inputs; the rest are targets. A batch that
            is a dict is called as ``model(**batch)``, with ``batch['labels']`` as its target; predictions
            are the output's ``logits`` when it has them.
        guard: stop on a NaN/inf loss or gradient before it reaches the weights (a DivergenceGuard).
            'auto' checks the loss and the gradients before each step on the CPU, where that is free of
            host-device synchronisation, and leaves it off on a GPU (one synchronisation per step);
            True checks on any device; False installs none.

    Ctrl-C during a fit is deferred to the end of the batch in progress (``learn.interrupt_guard``, an
    ``InterruptGuard``): the fit stops where ``fit(..., resume=True)`` continues it bitwise; a second
    Ctrl-C stops at once.

    Launched by ``torchrun`` with several processes, the learner trains data-parallel: a
    ``DistributedCallback`` joins the process group when the first fit starts, wraps the model in
    DistributedDataParallel and shards the data. With ``FSDP()`` in `cbs` the model is instead sharded
    across the processes (FSDP2) when the learner is made, and ``save``/``load`` write and read sharded
    checkpoints (directories).
    """
    def __init__(self, model: nn.Module, dls, loss_func=None, opt_func=torch.optim.AdamW, lr=1e-3, metrics=(),
                 cbs=(), device=None, progress=True, wd=None, wd_bn_bias=False, splitter=None, n_inp=1, guard='auto'):
        if not (guard is True or guard is False or (isinstance(guard, str) and guard == 'auto')):
            raise ValueError(f"guard must be True, False or 'auto', got {guard!r}")
        check_bool('progress', progress); check_bool('wd_bn_bias', wd_bn_bias)
        cbs = check_callbacks('cbs', cbs)
        for c in cbs:   # shard before the optimizer is made, each block moved to the device as it is sharded
            if isinstance(c, FSDP): model = c.prepare(model, device, cbs)
        super().__init__(model, dls, loss_func, opt_func, lr, metrics, cbs, device, wd, wd_bn_bias, splitter, n_inp)
        self.position = self.add_cb(FitPosition())
        self.interrupt_guard = self.add_cb(InterruptGuard())   # Ctrl-C stops at a batch boundary
        if not any(isinstance(c, DivergenceGuard) for c in cbs):
            # 'auto': check the loss before every step where that costs no host-device synchronisation
            # (CPU); on a GPU the check would wait for the device once per step, so it is opt-in there.
            if guard is True: self.add_cb(DivergenceGuard())
            elif guard == 'auto' and self.device.type == 'cpu': self.add_cb(DivergenceGuard())
        if (launched_by_torchrun() or is_distributed()) and not any(isinstance(c, DistributedCallback) for c in cbs):
            dist_cb = self.add_cb(DistributedCallback())
            if is_distributed(): dist_cb.shard_data()   # FSDP joined the group already: the loaders' real lengths
        self.progress = progress

    # --- default callbacks -----------------------------------------------------------------------
    @property
    def divergence_guard(self):
        "The DivergenceGuard among the callbacks (None if removed)."
        return next((c for c in self.cbs if isinstance(c, DivergenceGuard)), None)

    @property
    def progress(self) -> bool:
        "Whether progress bars and the epoch table are shown; assign to switch them."
        return any(isinstance(c, ProgressCallback) for c in self.cbs)

    @progress.setter
    def progress(self, on: bool):
        check_bool('progress', on)
        self.remove_cbs([c for c in self.cbs if isinstance(c, ProgressCallback)])
        if on and is_main_process(): self.add_cb(ProgressCallback())   # one set of bars, not one per rank

    @property
    def effective_batch_size(self):
        "Samples per optimizer step over all processes: per-process batch x processes x accumulation."
        return effective_batch_size(self)

    # --- fit, with resume ------------------------------------------------------------------------
    def fit(self, n_epoch: int, lr=None, wd=None, cbs=None, resume=None):
        """Train for `n_epoch` epochs; `lr`/`wd` set every param group first; `cbs` live for this call only.

        `resume` continues a fit that stopped (interrupted, cancelled, crashed) exactly where it stopped,
        with bitwise the same result on the CPU: a checkpoint path (``learn.save``, ``SaveModel``), or
        True for this learner's own state (after ``learn.load`` or an interrupted fit). Pass the
        arguments and callbacks of the fit being continued. A KeyboardInterrupt ends the fit cleanly
        (``after_fit`` runs, bars close, history stays) and is raised again, so Ctrl-C still stops a
        script; ``resume=True`` then carries on."""
        self._check_fit_args(n_epoch, lr, wd)
        if is_sharded_checkpoint(resume):   # a directory from learn.save on a sharded model: load it, then go on
            check_sharded_resume(resume, n_epoch)
            self.load(resume)
            resume = True
        plan = None if resume is None or resume is False else Resume(self, resume, n_epoch)
        keep = self.keep_history
        self.position.resume, self.keep_history = plan, plan is not None
        try: super().fit(n_epoch, lr, wd, cbs)
        finally: self.position.resume, self.keep_history = None, keep

    # --- checkpoints (onecycle.checkpoint) --------------------------------------------------------
    def save(self, path, with_opt=True):
        """Write a checkpoint to `path` atomically: model, optimizer, schedule positions, recorder history,
        callback states and RNG states; during or after a fit, enough to resume it exactly. On a model
        sharded by ``FSDP``, call it on every rank: `path` is a directory where each rank writes its shards
        (``torch.distributed.checkpoint``) and rank 0 the rest."""
        if is_sharded(self.model): return save_sharded(self, path, with_opt)
        return save_checkpoint(self, path, with_opt)

    def load(self, path, with_opt=True, with_rng=True):
        """Load a checkpoint written by `save` (read with ``torch.load(weights_only=True)`` only); nothing
        changes if it does not fit this learner. ``fit(..., resume=True)`` then continues its fit. A sharded
        checkpoint (a directory) loads on any number of ranks, sharded or not, a single process included."""
        if is_sharded_checkpoint(path): return load_sharded(self, path, with_opt, with_rng)
        return load_checkpoint(self, path, with_opt, with_rng)

    # --- one-liners (implemented in their own modules) -------------------------------------------
    lr_find = _method(lr_find)
    fit_one_cycle = _method(fit_one_cycle)
    fit_sgdr = _method(fit_sgdr)
    fit_flat_cos = _method(fit_flat_cos)
    fit_clr = _method(fit_clr)
    fit_warmup_cos = _method(fit_warmup_cos)
    fine_tune = _method(fine_tune)
    freeze_to = _method(freeze_to)
    freeze = _method(freeze)
    unfreeze = _method(unfreeze)
    diagnose = _method(diagnose)
    get_preds = _method(get_preds)
    predict = _method(predict)
    tta = _method(tta)
    summary = _method(summary)
    export = _method(export)
