"""What tuning's short runs measure, and how long they are: each optimizer step's mean loss, the loss on a fixed
validation subset, the epochs a number of steps takes, and steps counted in samples. The range test, the hold
probes and tune's trials all read them, so that their figures mean the same."""
from __future__ import annotations

import itertools
import math

import torch

from ..callbacks.training import GradAccumulation
from ..core.data import batch_loss, batch_size_of, call_model, check_loader, split_batch, to_device
from ..core.dist import is_sharded, max_over_ranks, pad_forward_passes, sum_over_ranks, unwrap_model

__all__ = ['fixed_valid_batches', 'subset_loss', 'epochs_for_steps', 'optimizer_steps_per_epoch', 'divergence_limit',
           'StepLoss', 'REFERENCE_BATCH', 'steps_for_samples', 'REPLICATE_SEED']


def fixed_valid_batches(learn, n_batches=None) -> list:
    """The first `n_batches` batches of ``dls.valid`` (all by default), read once and kept on the
    device, so that every measurement sees the same samples. Reading a loader draws a seed from the
    global RNG: it is forked, so the training batches stay those a run without validation would see."""
    dl = learn.dls.valid
    check_loader(dl, 'dls.valid')
    n = len(dl) if n_batches is None else min(n_batches, len(dl))
    with torch.random.fork_rng(devices=[]):
        return [to_device(b, learn.device) for b in itertools.islice(dl, n)]


def subset_loss(learn, batches) -> float:
    """Mean loss over `batches` (from :func:`fixed_valid_batches`), in eval mode without gradients;
    the model's mode is put back. It runs the user's module, not a DDP wrapper (no collectives per
    forward), and sums over ranks under DDP: every rank gets the loss over all shares, so decisions
    taken from it (divergence, the best trial) are the same everywhere."""
    model = unwrap_model(learn.model)
    was_training, total, n = model.training, 0., 0
    n_target = max_over_ranks(len(batches)) if is_sharded(model) else 0
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                xb, yb = split_batch(b, learn.n_inp)
                bs = batch_size_of(yb or xb)
                total = total + batch_loss(learn.loss_func, call_model(model, xb), yb).detach().float() * bs
                n += bs
            # a sharded (FSDP) model gathers its weights in every forward: ranks with fewer batches join in
            xb = split_batch(batches[-1], learn.n_inp)[0] if batches else None
            pad_forward_passes(model, n_target - len(batches), xb and (lambda: call_model(model, xb)))
    finally: model.train(was_training)
    total, n = sum_over_ranks(total, n, learn.device)
    return float(total) / float(n)


def epochs_for_steps(learn, n_steps: int) -> int:
    """Epochs a fit of `learn` needs for `n_steps` optimizer steps. Under gradient accumulation (a
    :class:`~onecycle.callbacks.GradAccumulation` among the learner's callbacks) an optimizer step
    takes several batches: ``learn.steps_per_epoch`` says so only once the fit has started."""
    return max(1, math.ceil(n_steps / max(1, optimizer_steps_per_epoch(learn))))


def divergence_limit(reference: float, factor: float) -> float:
    """The loss past which a run has blown up: `factor` times `reference` (its best, or where it started), or
    for a reference below 0 (a Gaussian NLL can be), that far above it in units of its size."""
    return factor * reference if reference >= 0 else reference + (factor - 1) * -reference


class StepLoss:
    """Mixin for callbacks that record a loss per optimizer step: the mean training loss over the
    samples of every batch the step took (all the micro-batches of a gradient-accumulation group),
    not only the last batch's. Call ``self.step_loss()`` from ``after_step``."""
    def _reset_step_loss(self):
        self._step_sum, self._step_n = 0., 0

    def after_loss(self):
        if not self.learn.training or self.learn.loss is None: return
        bs = self.learn.batch_size
        self._step_sum = getattr(self, '_step_sum', 0.) + self.learn.loss.detach().float() * bs
        self._step_n = getattr(self, '_step_n', 0) + bs

    def step_loss(self) -> float:
        "The mean loss of the step just taken; resets the sums for the next one."
        n = getattr(self, '_step_n', 0)
        loss = float(self._step_sum) / n if n else float(self.learn.loss.detach())
        self._reset_step_loss()
        return loss


def optimizer_steps_per_epoch(learn) -> int:
    """Optimizer steps in an epoch of `learn`'s training loader: its batches, or under gradient accumulation (a
    :class:`~onecycle.callbacks.GradAccumulation` among the learner's callbacks) its groups of them."""
    accum = max([1] + [c.n_batches for c in learn.cbs if isinstance(c, GradAccumulation)])
    return math.ceil(len(learn.dls.train) / accum)


# lr_find's default sweep and the hold probes (see hold_check) count their steps in steps of this many samples: a
# smaller batch's runs take proportionally more steps (a probe's warm-up and tail scale with them). An MLP on the
# digits with SGD at batch 8 (810-step fits) got S = 0.12-0.20 from 100-step probes, which ended 1.8x above S/2's;
# its fits there scored 94.8, 83.0 and 9.6%, at S/2 97.2-98.6%: in 100 steps of 8 samples the net had not yet
# sharpened to where it fails at S (probes of 300 steps ended 2.8-6x above S/2's).
REFERENCE_BATCH = 32
# the seed of "another data order": lr_find's second sweep, the hold check's second look before it climbs and tune's
# replicate trials all run on the order it draws (why two: see range_test)
REPLICATE_SEED = 104729


def steps_for_samples(steps: int, batch_size=None) -> int:
    """`steps` optimizer steps of REFERENCE_BATCH samples, counted in steps of `batch_size` samples (None:
    unknown), never fewer than `steps`: a smaller batch needs more steps to see as much data."""
    if not batch_size or batch_size >= REFERENCE_BATCH: return steps
    return math.ceil(steps * REFERENCE_BATCH / batch_size)
