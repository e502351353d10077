"""Divergence: a non-finite loss or gradient stops training before it reaches the weights.

A Learner has a ``DivergenceGuard`` (``learn.divergence_guard``) when made with ``guard=True``, and
by default on the CPU (``guard='auto'``: the loss and the gradients, one read per step). It
keeps the loss of each training batch as a device tensor (no synchronisation) and, once per optimizer
step, just before the step, checks those losses and the gradients together: a few small kernels, one
pass over the gradients and a single host-device synchronisation per optimizer step on a GPU (on the
CPU there is nothing to wait for). With gradient accumulation that is one check per group of
batches. On one CPU thread that is about 25-40 us per step (4-6% of a step of the small MLP in
``python bench/divergence_guard.py``, well under 1% for models whose steps take milliseconds). Because
the check comes before the step, a NaN or inf never reaches the weights: after a ``DivergenceError``
the model holds its last finite state and the recorder the history up to the batch that diverged.

Range tests (callbacks with ``handles_divergence = True``, such as LRFinder) look for divergence
themselves; the guard stands aside during their fits. Remove it with
``learn.remove_cb(learn.divergence_guard)`` to save the synchronisation.
"""
from __future__ import annotations


import torch

from ..core.callback import Callback, CancelStepException
from ..core.checks import check_bool, check_choice, check_int
from ..core.hyper import opt_params

__all__ = ['DivergenceError', 'DivergenceGuard']


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient. ``epoch``, ``batch`` (0-based, as in the
    recorder), ``step`` (optimizer steps this fit), ``lr`` (one per param group), ``loss`` and
    ``what`` ('loss' or 'gradients') say where; the weights are those from before that step."""
    def __init__(self, msg, epoch, batch, step, lr, loss, what):
        super().__init__(msg)
        self.epoch, self.batch, self.step, self.lr, self.loss, self.what = epoch, batch, step, lr, loss, what


def _fmt_lrs(lrs):
    return ', '.join(f'{float(l):.3g}' for l in lrs)


class DivergenceGuard(Callback):
    """Stops the fit with a DivergenceError when a training loss or a gradient is NaN or infinite,
    before the optimizer step that would apply it.

    Args:
        action: 'raise' stops the fit; 'skip' drops that step's gradient, skips the step and counts it
            (``n_skipped``, ``skipped``), then carries on.
        max_skips: with 'skip', raise once more than this many steps were skipped in a fit.
        check_grads: also check the gradients (a loss can be finite while its gradient overflows).
            Under an fp16 GradScaler overflowing gradients are the scaler's business and only the loss
            is checked.
    """
    order = -15   # after GradAccumulation (-20) decided this batch steps, before MixedPrecision (-10) unscales

    def __init__(self, action='raise', max_skips=None, check_grads=True):
        check_choice('action', action, ('raise', 'skip'))
        check_int('max_skips', max_skips, min_value=0, allow_none=True)
        check_bool('check_grads', check_grads)
        self.action, self.max_skips, self.check_grads = action, max_skips, check_grads
        self.n_skipped, self.skipped, self._losses, self.active = 0, [], [], True
        self.stopped = None   # where the last guarded fit was stopped: a dict like DivergenceError's fields
        self._flags = {}      # per device: the (found, 1.) tensors of the gradient check, reused every step
        self._sharded = False

    def state_dict(self): return {'n_skipped': self.n_skipped, 'skipped': [dict(s) for s in self.skipped]}
    def load_state_dict(self, sd): self.n_skipped, self.skipped = sd['n_skipped'], [dict(s) for s in sd['skipped']]

    def before_fit(self):
        self.active = not any(getattr(type(cb), 'handles_divergence', False) for cb in self.learn.cbs)
        self._losses = []
        if not getattr(self.learn, 'keep_history', False): self.n_skipped, self.skipped = 0, []
        if self.active: self.stopped = None
        # sharded (FSDP) parameters are DTensors; their gradients are checked through reduced norms
        self._sharded = any(type(p) is not torch.nn.Parameter and type(p) is not torch.Tensor
                            for p in opt_params(self.learn.opt))

    def before_epoch(self):
        self._losses = []

    def after_loss(self):
        # only a group of accumulated batches needs its losses kept; a plain step checks learn.loss itself
        if self.active and self.learn.training and self.learn.accum_steps > 1:
            self._losses.append((self.learn.iter, self.learn.loss.detach()))

    def before_step(self):
        if not self.active: return
        learn = self.learn
        losses, self._losses = self._losses, []
        if learn.accum_steps == 1: losses = [(learn.iter, learn.loss.detach())]
        tensors = [l for _, l in losses]
        if self.check_grads and learn.scaler is None:   # under fp16 overflowing gradients are the scaler's business
            grads = [p.grad for p in opt_params(learn.opt, with_grad=True)]
            if self._sharded:
                # sharded (FSDP) gradients: their norms reduce over the ranks, so every rank decides alike
                norms = torch.stack(torch._foreach_norm(grads)).sum()
                tensors.append(norms.full_tensor().reshape(1) if hasattr(norms, 'full_tensor') else norms.reshape(1))
            else: tensors += grads
        if not tensors or self._all_finite(tensors): return
        bad = [(i, l) for i, l in losses if not torch.isfinite(l).all()]
        what, (batch, loss) = (('loss', bad[0]) if bad else
                               ('gradients', losses[-1] if losses else (learn.iter, learn.loss)))
        self._diverged(what, batch, float(loss))

    def _all_finite(self, tensors) -> bool:
        """Whether every value of `tensors` (losses and gradients) is finite: one fused kernel per device (the
        check GradScaler uses, unscaling by 1, which leaves the values bitwise as they are) and one read of its
        flag, the step's one synchronisation; a few microseconds, not a norm per tensor."""
        by_device = {}
        for t in tensors: by_device.setdefault(t.device, []).append(t)
        ok = True
        for device, ts in by_device.items():
            found, one = self._flags.get(device) or self._flags.setdefault(
                device, (torch.zeros(1, device=device), torch.ones(1, device=device)))
            torch._amp_foreach_non_finite_check_and_unscale_(ts, found, one)
            if found.item() != 0: found.zero_(); ok = False   # the flag stays 0 between steps: no reset per step
        return ok

    def _diverged(self, what, batch, loss):
        learn = self.learn
        lrs = [float(pg['lr']) for pg in learn.opt.param_groups]
        learn.opt.zero_grad(set_to_none=True)   # the non-finite gradient goes; the weights were not touched
        where = f'epoch {learn.epoch}, batch {batch} (0-based; optimizer step {learn.step_count}), lr {_fmt_lrs(lrs)}'
        if self.action == 'skip' and (self.max_skips is None or self.n_skipped < self.max_skips):
            self.n_skipped += 1
            self.skipped.append({'epoch': learn.epoch, 'batch': batch, 'step': learn.step_count, 'what': what})
            raise CancelStepException()
        skipped = (f' after skipping {self.n_skipped} steps (max_skips={self.max_skips})'
                   if self.action == 'skip' else '')
        self.stopped = {'epoch': learn.epoch, 'batch': batch, 'step': learn.step_count, 'lr': lrs, 'loss': loss,
                        'what': what}
        raise DivergenceError(
            f'training diverged{skipped}: the {what} became non-finite (loss {loss}) at {where}. The weights are those '
            'from before this step, nothing non-finite was applied. Try a lower learning rate, GradientClipping, '
            "or DivergenceGuard(action='skip') to skip such steps.",
            learn.epoch, batch, learn.step_count, lrs, loss, what)
