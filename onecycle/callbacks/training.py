"""Callbacks that change how a step is taken: accumulation, mixed precision and gradient clipping.

Their orders make them compose: GradAccumulation (-20) decides whether this batch steps, then
MixedPrecision (-10) unscales the gradients, then GradientClipping (0) clips the true gradients.
"""
from __future__ import annotations

import torch

from ..core.callback import Callback, CancelStepException
from ..core.checks import check_choice, check_int, check_positive
from ..core.hyper import opt_params

__all__ = ['GradAccumulation', 'MixedPrecision', 'GradientClipping']


class GradAccumulation(Callback):
    """One optimizer step every `n_batches` batches, on the gradient of the mean loss over all their
    samples (so 4 batches of 16 step like one batch of 64). A partial group at the end of an epoch
    is stepped too, averaged over the samples it has. Schedules and the recorder count optimizer
    steps, so they advance once per group."""
    order = -20

    def __init__(self, n_batches: int):
        self.n_batches = check_int('n_batches', n_batches, min_value=1)

    def before_fit(self):
        self.learn.accum_steps, self.n_samples = self.n_batches, 0

    def state_dict(self): return {'n_samples': self.n_samples}   # samples in the group in progress
    def load_state_dict(self, sd): self.n_samples = sd['n_samples']

    def after_fit(self):
        self.learn.accum_steps = 1

    def before_backward(self):
        # Sum, not mean, over samples: the step divides by the group's sample count.
        bs = self.learn.batch_size
        self.learn.loss_grad = self.learn.loss_grad * bs
        self.n_samples += bs

    def before_step(self):
        learn = self.learn
        if not learn.is_step_batch: raise CancelStepException()
        grads = [p.grad for p in opt_params(learn.opt, with_grad=True)]
        if grads: torch._foreach_div_(grads, float(self.n_samples))
        self.n_samples = 0

    def before_epoch(self):
        self.n_samples = 0


def _grad_scaler(device_type, model):
    "A GradScaler; on a sharded (FSDP) model one that agrees across ranks on which steps to skip."
    from torch.distributed.tensor import DTensor
    if any(isinstance(p, DTensor) for p in model.parameters()):
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
        return ShardedGradScaler(device_type)
    return torch.amp.GradScaler(device_type)


def _found_inf(scaler, opt) -> torch.Tensor:
    "1. if the gradients `scaler.unscale_(opt)` just unscaled hold an inf or NaN (a step GradScaler skips), else 0."
    # GradScaler.step reads these same flags; torch has no public accessor for them
    flags = list(scaler._found_inf_per_device(opt).values())
    total = flags[0]
    for f in flags[1:]: total = total + f.to(total.device, non_blocking=True)
    return total


def _skips_on_device(opt) -> bool:
    """Whether `opt` takes GradScaler's inf flag and skips an overflowed step on the device itself (the fused
    Adam, AdamW and SGD), so that telling an overflow needs no host read."""
    return bool(getattr(opt, '_step_supports_amp_scaling', False))


class MixedPrecision(Callback):
    """Forward pass and loss under ``torch.autocast`` in `dtype`; with float16 a ``torch.amp.GradScaler``
    scales the loss. bfloat16 needs no scaler.

    A float16 step whose gradients overflowed (inf or NaN once unscaled) is not an optimizer step: its
    gradients are dropped, the scaler lowers its scale, and the step is cancelled (``CancelStepException``),
    so ``step_count``, the schedules, torch schedulers and ``recorder.hps`` do not advance for it; the
    next step takes the position the skipped one would have had. The batch's loss is still recorded.
    Telling an overflow costs one host read of the scaler's inf flag per step, the read ``GradScaler.step``
    makes anyway before stepping an optimizer without fused scaling.

    A fused optimizer (``AdamW(fused=True)`` and the like) skips an overflowed step on the GPU itself,
    weight decay included, and GradScaler then never reads the flag on the host; MixedPrecision does not
    either, so such a fit has no host-device synchronisation per step. The price: the skipped step still
    counts (``step_count`` and the schedules advance for it, as with torch's own GradScaler loop).
    ``n_skipped`` counts it all the same (read from the GPU when asked)."""
    order = -10
    scaler = None   # the GradScaler of a float16 fit (also learn.scaler)

    def __init__(self, dtype=torch.bfloat16):
        check_choice('dtype', dtype, (torch.bfloat16, torch.float16))
        self.dtype = dtype
        self._ctx = None
        self.n_skipped = 0

    @property
    def n_skipped(self) -> int:
        "float16 steps skipped for overflowing gradients in the last fit."
        if self._on_device is not None: self._n_skipped, self._on_device = self._n_skipped + int(self._on_device), None
        return self._n_skipped

    @n_skipped.setter
    def n_skipped(self, n: int): self._n_skipped, self._on_device = int(n), None

    def before_fit(self):
        self.device_type = self.learn.device.type
        self.learn.scaler = self.scaler = (_grad_scaler(self.device_type, self.learn.model)
                                           if self.dtype == torch.float16 else None)
        if not getattr(self.learn, 'keep_history', False): self.n_skipped = 0

    def state_dict(self):   # the fp16 loss scale and its growth tracker, so a resumed fit scales the same
        if getattr(self, 'scaler', None) is None: return {}
        return {**self.scaler.state_dict(), 'n_skipped': self.n_skipped}

    def load_state_dict(self, sd):
        if sd and getattr(self, 'scaler', None) is not None:
            sd = dict(sd); self.n_skipped = int(sd.pop('n_skipped', 0))
            self.scaler.load_state_dict(sd)

    def after_fit(self):
        self._exit()
        self.learn.scaler = None

    def before_batch(self):
        self._ctx = torch.autocast(self.learn.device.type, dtype=self.dtype)   # also in validate(), outside a fit
        self._ctx.__enter__()

    def after_loss(self): self._exit()
    def after_batch(self): self._exit()   # if the batch was cancelled before its loss

    def _exit(self):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None); self._ctx = None

    def before_backward(self):
        if self.learn.scaler is not None: self.learn.loss_grad = self.learn.scaler.scale(self.learn.loss_grad)

    def before_step(self):
        scaler, opt = self.learn.scaler, self.learn.opt
        if scaler is None: return
        scaler.unscale_(opt)
        found_inf = _found_inf(scaler, opt)
        if _skips_on_device(opt):   # the step skips itself on the GPU when it must: count it there, no host read
            self._on_device = found_inf.clone() if self._on_device is None else self._on_device + found_inf
            return
        if found_inf.item():   # GradScaler would skip this step: then it is no step at all
            scaler.update()     # a lower scale for the next batch
            self.n_skipped += 1
            opt.zero_grad(set_to_none=True)
            raise CancelStepException()


class GradientClipping(Callback):
    "Clip the global gradient norm to `max_norm` before each step (after unscaling under fp16)."
    order = 0

    def __init__(self, max_norm: float, norm_type: float = 2.):
        self.max_norm = check_positive('max_norm', max_norm)
        self.norm_type = norm_type if norm_type == float('inf') else check_positive('norm_type', norm_type)

    def before_step(self):
        params = opt_params(self.learn.opt, with_grad=True)
        if params: torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type)
