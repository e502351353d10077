"""The learning-rate range test: train briefly while the lr grows, watch the loss, put everything back."""
from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from ..callbacks.progress import RangeTestProgress, fmt_lr
from ..core.callback import CancelFitException, CancelValidateException
from ..core.checks import check_bool, check_choice, check_int, check_positive, check_range
from ..core.data import batch_loss, batch_size_of, call_model, check_loader, split_batch, to_device
from ..core.dist import any_rank, is_sharded, max_over_ranks, pad_forward_passes, sum_over_ranks, unwrap_model
from ..core.hyper import (caps_own_step, get_hyper, has_attention, has_hyper, is_adaptive, is_normalized,
                          weight_scale)
from ..core.rng import reseed
from ..core.snapshot import TrainingState, preserved
from ..core.warn import user_stacklevel
from ..callbacks.training import GradAccumulation
from ..distributed.ddp import effective_batch_size
from ..schedules.functions import Constant, Exponential, Linear, Warmup
from ..schedules.scheduler import ONE_CYCLE_MOMS, ParamScheduler
from .range_test_plot import plot_range_tests
from .suggest import (
    applied_lr_limit,
    exposure_exponent,
    geometric_mean,
    HOLD_DROP,
    HOLD_RATIO,
    held_falls,
    lr_bounds,
    pick_held,
    shortened_ratio,
    smooth_sweep,
    smoothed_slopes,
    spike_lift,
    step_limit,
    suggest_edge,
    suggest_for_fit,
    suggest_max_bound,
    suggest_minimum,
    suggest_spike,
    suggest_steep,
    suggest_valley,
)

__all__ = ['LRFinder', 'LRFinderResult', 'lr_find', 'SUGGESTERS', 'fixed_valid_batches', 'subset_loss',
           'epochs_for_steps', 'StepLoss', 'SUGGESTIONS', 'planned_fit_steps', 'sweep_drop', 'learnt_too_little',
           'HoldProbe', 'hold_probe', 'check_held', 'checks_hold', 'hold_check_steps', 'steps_for_samples', 'held_line',
           'divergence_limit']


@dataclass
class LRFinderResult:
    """What a range test saw and what it suggests.

    ``lrs``/``losses`` are the measured curve: the training loss of every step, or with validation
    the loss on the fixed validation subset at every evaluation (``measured`` says which).
    ``smooth_losses`` is that curve with losses above the starting level capped and a zero-lag
    debiased EMA applied; suggestions and plots read it. ``suggestions`` maps 'fit', 'minimum',
    'steep', 'valley', 'max_bound', 'edge' (where the loss floor ends and the loss turns up) and 'spike'
    (the last lr before a step's own loss first jumped above the starting level) to a learning rate;
    ``suggestion`` is the one asked for ('fit' by default: a max_lr for a 1cycle fit of ``fit_steps``
    optimizer steps, see :func:`~onecycle.tuning.suggest.suggest_for_fit`).
    ``bounds`` gives Smith's minimum-bound ranges (low, high) for the max bound: 'cyclical_min'
    (max/4 to max/3) and 'one_cycle_min' (max/20 to max/10). ``cost`` counts the steps, validation forward
    passes and seconds spent (both sweeps' when ``extended``: lr_find swept again, longer, because its
    default sweep learnt too little to read, see ``lr_find``'s `num_it`; the hold probes' steps too).
    ``held`` is empty unless lr_find checked the 'fit' suggestion at a held peak (see :func:`check_held`):
    then it holds the probes' 'lrs' (the unchecked suggestion, its half, then a quarter or twice it), their 'ends'
    (end losses), whether each 'spiked', their 'starts' (losses over their first steps), their 'steps' (all
    probes') and 'probe_steps' (each one's), the 'unchecked' suggestion, and where they ran the 'long' probes at it
    and its half (their 'lrs', 'ends', 'spiked', 'starts' and 'probe_steps').
    ``replicate`` is lr_find's second sweep, on another data order, when it ran one (its default `num_it`):
    then each entry of ``suggestions`` is the geometric mean of the two sweeps' values for that rule (the first
    sweep's own where both learnt too little to be read; the curves, ``lrs`` and ``losses``, are the first
    sweep's), and ``cost`` counts both.
    ``limit`` is the lr the 'fit' suggestion may not pass (None for SGD-like optimizers): for an Adam-like one the
    weights' typical size (:func:`~onecycle.core.hyper.weight_scale`), as each Adam step moves a weight by about
    the lr (see :func:`~onecycle.tuning.suggest.step_limit`); for one that caps its own step at 1/sqrt(step)
    (Adafactor), the largest lr the sweep applied (:func:`~onecycle.tuning.suggest.applied_lr_limit`);
    ``limit_why`` says which, for the plot's legend.
    """
    lrs: list
    losses: list
    smooth_losses: list
    suggestions: dict = field(default_factory=dict)
    suggestion: float = float('nan')
    stopped_early: bool = False
    bounds: dict = field(default_factory=dict)
    measured: str = 'train'
    train_lrs: list = field(default_factory=list)
    train_losses: list = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    label: str = ''
    fit_steps: int | None = None
    extended: bool = False
    held: dict = field(default_factory=dict)
    limit: float | None = None
    replicate: LRFinderResult | None = None
    limit_why: str = "the weights' typical size (Adam's steps are about the lr)"   # what `limit` is, for the plot

    @property
    def max_bound(self) -> float:
        "Smith's maximum bound: the largest lr at which the loss still falls."
        return self.suggestions['max_bound']

    @property
    def loss_change(self) -> list[float]:
        "d loss / d log10(lr) of the smoothed curve, moving-average smoothed (the delta plot)."
        return smoothed_slopes(self.lrs, self.smooth_losses)

    def plot(self, skip_start=0, skip_end=0, ax=None, show_suggestions=True, delta=True):
        """Loss against lr (log axis) and, with `delta`, the loss change against lr beside it, the
        suggestions marked on both; returns the Figure. `ax`: one Axes (loss only) or a pair."""
        return plot_range_tests([self], skip_start=skip_start, skip_end=skip_end, ax=ax,
                                show_suggestions=show_suggestions, delta=delta)

    def plot_delta(self, skip_start=0, skip_end=0, ax=None, show_suggestions=True):
        "The loss change d loss / d log10(lr) against lr alone; returns the Figure."
        return plot_range_tests([self], skip_start=skip_start, skip_end=skip_end, ax=ax,
                                show_suggestions=show_suggestions, loss=False)


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
    return max(1, math.ceil(n_steps / max(1, _steps_per_epoch(learn))))


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


SUGGESTERS = {'minimum': suggest_minimum, 'steep': suggest_steep, 'valley': suggest_valley,
              'max_bound': suggest_max_bound, 'edge': suggest_edge}
# the names `suggest` accepts: the rules above, 'spike' (it reads the raw losses too) and 'fit' (see
# suggest_for_fit), the default
SUGGESTIONS = ('fit', *SUGGESTERS, 'spike')
# lr_find's sweep when not told its length; when its smoothed loss fell by less than MIN_SWEEP_DROP of where it
# started, the net learned too little for its curve to say where the loss turns up (the lowest point is where one
# batch happened to land), and lr_find sweeps again, EXTEND_FACTOR times longer, from the same state. A GroupNorm
# CNN on 8x8 digits (SGD, 210-step fits) fell 4-7% in 100 steps: one-liner fits at 29%, 92% and 85% against the
# grid's best 93-94%; from 300-step sweeps 92%, 91% and 91%. On the 35 problems of bench/recommend.py and
# bench/suggest_unseen.py 11 of 105 sweeps fell less (recurrent nets, MNIST-1D CNNs, a deep MLP): the one-liner met
# its targets on the same 29 either way, its gaps summing to -31.6 points instead of -29.7.
# The default sweep's steps are steps of REFERENCE_BATCH samples (see steps_for_samples): a step of 8 samples is
# noisier, and a BatchNorm CNN on the digits at batch 8 read its edge from noise (S = 0.0017 on one seed, its fit
# 57.6%; from 400-step sweeps S = 0.25 and 97.8%). On 13 problems at batches of 8 and 16 the one-liner's means summed
# +23.1 points (met 7 -> 11). Held out (eleven made afterwards): six -1.9 (noise-level, none failing), five +53.9: a
# residual CNN without normalization at batch 16 (SGD) had read S = 5e-8 and 0.25 and ended at chance on two seeds
# (36.6%), 89.6% with it.
DEFAULT_NUM_IT, MIN_SWEEP_DROP, EXTEND_FACTOR = 100, 0.1, 3
# lr_find's default reads that sweep twice, the second time on another data order (and other dropout draws) drawn
# from REPLICATE_SEED, and suggests for each rule the geometric mean of the two sweeps' values. One sweep's edge moves
# by a rung or two of its lr ladder with the data order (up to 3x on noisy problems), and a fit pays for every rung
# it lands above its best lr: on the 44 problems of bench/recommend.py and bench/suggest_unseen.py --against-grid
# (3 seeds, seventeenth session), the spread of the one-liner's suggestion over seeds (sd of ln S) fell from 0.19 to
# 0.14 (median 0.18 -> 0.10), its worst seeds below their grid best summed -77.4 -> -72.4 points (8 -> 7 more than 3
# points below); its mean gaps did not move beyond noise (-36.45 -> -36.23, -36.47 once the hold check's climb
# also needed the second order, see check_held; met on 35 -> 36). The lower of the two instead: worst seeds -70.3,
# gaps -37.7 (tune takes the lower for SGD on a normalized model, whose trials climb from it). tune sweeps twice
# itself, with this seed.
# A loader that does not shuffle (and a model without dropout) repeats the first sweep.
# Where both sweeps learnt too little to be read (learnt_too_little; lr_find warns), the first one's suggestions
# stand, as before: two flat 300-step sweeps of a lookup encoder (AdamW) suggested 0.0041 and 0.0024, and its fits
# at their mean 0.0031 stayed on the plateau (34-41%), where 0.0044 scored 99.8-99.9%. Where only one did, the mean
# still helps: an LSTM's readable sweep (a 12% drop) said 1.47, its replicate (5%) 1.02, and fits at the mean
# (checked at the held peak: 0.61) scored 98.6% against 94.6% at 1.47.
REPLICATE_SEED = 104729
# the momentum a sweep runs at where the optimizer's is 0: the middle of fit_one_cycle's default cycle (0.95, 0.85),
# which turns momentum on. Bare SGD's one-liner (bench/one_liner_optimizers.py, 3 seeds), swept at 0: 63.7-95.7% on
# the digits, 34.3-84.6% on a 4-class MLP, 65.8-93.4% on an 8-feature argmax; swept at 0.9: 94.7-95.2%,
# 85.0-86.0%, 93.8-97.4% (the runs of SGD(momentum=0.9), bitwise; measured before lr_find's hold check)
SWEEP_MOM = 0.9
# a range test that is not told the planned fit's length plans for the longer of these (a long fit is the safe guess)
DEFAULT_FIT_EPOCHS, DEFAULT_FIT_STEPS = 10, 2000


def planned_fit_steps(learn, n_epoch=None) -> int:
    """Optimizer steps of the fit a suggestion is for: `n_epoch` epochs of `learn`'s training loader
    (gradient accumulation counted), or without it the longer of DEFAULT_FIT_EPOCHS epochs and
    DEFAULT_FIT_STEPS steps."""
    per_epoch = max(1, _steps_per_epoch(learn))
    if n_epoch is None: return max(DEFAULT_FIT_EPOCHS * per_epoch, DEFAULT_FIT_STEPS)
    return n_epoch * per_epoch


def _steps_per_epoch(learn) -> int:
    accum = max([1] + [c.n_batches for c in learn.cbs if isinstance(c, GradAccumulation)])
    return math.ceil(len(learn.dls.train) / accum)


class LRFinder(StepLoss, ParamScheduler):
    """Raises the learning rate of every param group from `start_lr` to `end_lr` over `num_it`
    optimizer steps (geometrically, or linearly with ``mode='linear'``), recording the training loss
    of every step (under gradient accumulation, its mean over the step's micro-batches).

    With `valid_every` = k it also measures the loss on a fixed validation subset (the first
    `valid_batches` batches of ``dls.valid``, all of them by default, read once and kept on the
    device) every k steps, in eval mode without gradients, as Smith recommends: that curve is then
    the one measured. Stops early when the online smoothed loss (debiased EMA, `beta` per step)
    exceeds `div_threshold` times its minimum or the loss turns NaN/inf (with `stop_div`). The
    epoch's own validation pass is skipped. Afterwards the learner is exactly as it was before (see
    :class:`~onecycle.core.snapshot.TrainingState` for all it puts back).

    `mom`: the momentum the sweep runs at. 'auto' (the default) keeps each param group's own, except that a
    momentum of 0 (bare ``SGD``, ``RMSprop``'s default) sweeps at SWEEP_MOM: the 1cycle fit the suggestion is
    for turns momentum on, and a sweep without it puts the edge at lrs that fit does not survive. None leaves
    the optimizer as it is (for a fit that keeps its momentum: ``moms=None``, ``fit_flat_cos``, ``fit_sgdr``...);
    a number sweeps every group at it."""
    order = 5   # before the Recorder resets its history
    handles_divergence = True   # it looks for divergence itself: DivergenceGuard stands aside
    is_trial = True   # loggers, EarlyStopping and SaveModel stand aside

    def __init__(self, start_lr=1e-7, end_lr=10., num_it=100, stop_div=True, div_threshold=4., mode='exp', beta=0.98,
                 valid_every=None, valid_batches=None, mom='auto'):
        check_positive('start_lr', start_lr); check_positive('end_lr', end_lr)
        if end_lr <= start_lr:
            raise ValueError(f'end_lr must be greater than start_lr, got start_lr={start_lr}, end_lr={end_lr}')
        check_int('num_it', num_it, min_value=2)
        check_positive('div_threshold', div_threshold)
        check_choice('mode', mode, ('exp', 'linear'))
        check_range('beta', beta, 0, 1, hi_open=True)
        check_int('valid_every', valid_every, min_value=1, allow_none=True)
        check_int('valid_batches', valid_batches, min_value=1, allow_none=True)
        if valid_batches is not None and valid_every is None:
            raise ValueError('valid_batches needs valid_every (how many steps between validation measurements)')
        if valid_every is not None and num_it // valid_every < 3:
            raise ValueError(f'valid_every must leave at least 3 validation measurements in num_it={num_it} steps, '
                             f'got valid_every={valid_every} (use at most {num_it // 3})')
        if isinstance(mom, str) and mom != 'auto':
            raise ValueError(f"mom must be 'auto', None or a momentum in [0, 1), got {mom!r}")
        if mom != 'auto': check_range('mom', mom, 0, 1, hi_open=True, allow_none=True)
        self.lr_sched, self.mom = (Exponential if mode == 'exp' else Linear)(start_lr, end_lr), mom
        super().__init__({'lr': self.lr_sched}, total_steps=num_it)
        check_bool('stop_div', stop_div)
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div
        self.div_threshold, self.mode, self.beta = div_threshold, mode, beta
        self.valid_every, self.valid_batches = valid_every, valid_batches
        self.state = None   # the TrainingState after_fit restores (lr_find takes it before fit() starts)
        self.fit_steps = None   # the planned fit's optimizer steps, for the 'fit' suggestion (lr_find sets it)
        self._opt_steps = 0     # an optimizer that caps its step (Adafactor): its own step count at the sweep's start

    def before_fit(self):
        # first: whatever fails below, after_fit restores it
        if self.state is None: self.state = TrainingState(self.learn)
        self._t0 = time.perf_counter()
        self.scheds = {'lr': self.lr_sched, **self._mom_scheds()}
        super().before_fit()
        self.lrs, self.losses, self.stopped_early = [], [], False   # per training step
        if caps_own_step(self.learn.opt):   # its cap, 1/sqrt(step), counts on from the steps it has taken
            self._opt_steps = max((int(st['step']) for st in self.learn.opt.state.values()
                                   if isinstance(st, dict) and 'step' in st), default=0)
        self.valid_lrs, self.valid_losses = [], []                  # per validation measurement
        self._avg, self._n_avg, self._best = 0., 0, float('inf')
        self.valid_seconds, self.seconds = 0., 0.
        self._reset_step_loss()
        if self.valid_every is not None:
            self._valid_set = self._fixed_valid_batches()
            self._beta = self.beta ** self.valid_every   # the same time constant in steps
        else: self._beta = self.beta

    def _mom_scheds(self) -> dict:
        "The sweep's momentum per param group (see `mom`), or nothing where it keeps the optimizer's."
        pgs = self.learn.opt.param_groups
        if self.mom is None: return {}
        if self.mom != 'auto': return {'mom': Constant(self.mom)}   # ParamScheduler refuses an optimizer without
        if not has_hyper(pgs[0], 'mom'): return {}
        own = [get_hyper(pg, 'mom') for pg in pgs]
        if all(m > 0 for m in own): return {}
        return {'mom': [Constant(m if m > 0 else SWEEP_MOM) for m in own]}

    def _fixed_valid_batches(self) -> list:
        batches = fixed_valid_batches(self.learn, self.valid_batches)
        parts = (split_batch(b, self.learn.n_inp) for b in batches)
        self.valid_samples = sum(batch_size_of(yb or xb) for xb, yb in parts)
        return batches

    def validation_loss(self) -> float:
        "Mean loss over the fixed validation subset, in eval mode, without gradients."
        t0 = time.perf_counter()
        loss = subset_loss(self.learn, self._valid_set)
        self.valid_seconds += time.perf_counter() - t0
        return loss

    def before_validate(self):
        raise CancelValidateException()

    def _smoothed(self, loss) -> float:
        self._n_avg += 1
        self._avg = self._beta * self._avg + (1 - self._beta) * loss
        return self._avg / (1 - self._beta ** self._n_avg)

    def after_step(self):
        loss = self.step_loss()
        lr = float(self.learn.opt.param_groups[-1]['lr'])
        self.lrs.append(lr); self.losses.append(loss)
        n = len(self.losses)
        diverged = not math.isfinite(loss)
        if self.valid_every is None: measured = loss
        elif n % self.valid_every == 0 and not diverged:
            measured = self.validation_loss()
            self.valid_lrs.append(lr); self.valid_losses.append(measured)
        else: measured = None
        if measured is not None:
            s = self._smoothed(measured)
            if math.isfinite(s): self._best = min(self._best, s)
            diverged = diverged or not math.isfinite(measured) or s > divergence_limit(self._best, self.div_threshold)
        if self.stop_div and diverged:
            self.stopped_early = True
            raise CancelFitException()
        if n >= self.num_it: raise CancelFitException()

    def after_fit(self):
        if self.state is not None: self.state.restore(); self.state = None
        self.seconds = time.perf_counter() - getattr(self, '_t0', time.perf_counter())

    @property
    def measured(self) -> str:
        return 'train' if self.valid_every is None else 'valid'

    def cost(self) -> dict:
        "What the test spent: training steps, validation measurements and forward passes, seconds."
        evals = len(self.valid_losses)
        batches = len(getattr(self, '_valid_set', ()))
        return {'train_steps': len(self.losses), 'valid_evals': evals, 'valid_forward_passes': evals * batches,
                'valid_samples': evals * getattr(self, 'valid_samples', 0), 'valid_seconds': self.valid_seconds,
                'seconds': self.seconds}

    def result(self, suggest='fit', fit_steps=None) -> LRFinderResult:
        """What the test saw and suggests; the 'fit' suggestion is for a 1cycle fit of `fit_steps`
        optimizer steps (by default the one lr_find planned for, else :func:`planned_fit_steps`)."""
        check_choice('suggest', suggest, SUGGESTIONS)
        check_int('fit_steps', fit_steps, min_value=1, allow_none=True)
        fit_steps = fit_steps or self.fit_steps or planned_fit_steps(self.learn)
        lrs, losses = (self.lrs, self.losses) if self.valid_every is None else (self.valid_lrs, self.valid_losses)
        if self.losses and not math.isfinite(self.losses[0]):
            raise RuntimeError(f'the loss was {self.losses[0]} at the first step of the range test (lr '
                               f'{self.lrs[0]:.3g}): the model or the loss gives non-finite values whatever the lr, '
                               'nothing to read')
        if len(lrs) < 3:
            raise RuntimeError(f'the range test stopped after {len(self.lrs)} steps ({len(lrs)} {self.measured} loss '
                               'measurements), too few to suggest a learning rate: lower start_lr, raise '
                               'div_threshold' + (' or lower valid_every' if self.valid_every else ''))
        smooth, adaptive = smooth_sweep(losses), is_adaptive(self.learn.opt)
        limit = step_limit(adaptive, weight_scale(self.learn.model) if adaptive else None)
        caps = caps_own_step(self.learn.opt)
        if caps:   # its lrs above 1/sqrt(step) were never applied (Adafactor)
            limit = min(applied_lr_limit(self.lrs, self._opt_steps), limit or math.inf)
        sugg = {'fit': suggest_for_fit(lrs, smooth, fit_steps, sweep_lrs=self.lrs, raw_losses=losses,
                                       exponent=exposure_exponent(adaptive, is_normalized(self.learn.model),
                                                                   has_attention(self.learn.model)),
                                       lift=spike_lift(adaptive), limit=limit)}
        sugg.update({name: f(lrs, smooth) for name, f in SUGGESTERS.items()})
        sugg['spike'] = suggest_spike(lrs, losses, smooth)
        return LRFinderResult(list(lrs), list(losses), smooth, sugg, sugg[suggest], self.stopped_early,
                              bounds=lr_bounds(sugg['max_bound']), measured=self.measured,
                              train_lrs=list(self.lrs), train_losses=list(self.losses), cost=self.cost(),
                              fit_steps=fit_steps, limit=limit,
                              **({'limit_why': 'the largest lr the sweep applied (the optimizer caps its own step)'}
                                 if caps else {}))


def _sweep(learn, finder, suggest, n_epoch) -> LRFinderResult:
    "One range test with `finder`, the learner put back as it was afterwards."
    finder.fit_steps = planned_fit_steps(learn, n_epoch)
    finder.state = TrainingState(learn)   # before fit() resets the counters and gradients: those come back too
    bar = [RangeTestProgress(finder.num_it, finder.beta)] if getattr(learn, 'progress', False) else []   # its own
    learn.fit(epochs_for_steps(learn, finder.num_it), cbs=[finder, *bar])
    return finder.result(suggest)


def _unlowered_fit(result: LRFinderResult) -> float:
    "A sweep's 'fit' suggestion for SGD before the rule lowers it for the fit's length: the hold check's ceiling."
    return suggest_for_fit(result.lrs, result.smooth_losses, result.fit_steps, sweep_lrs=result.train_lrs,
                           raw_losses=result.losses, exponent=0., lift=spike_lift(False))


def _add_replicate(result: LRFinderResult, other: LRFinderResult, suggest: str) -> list:
    """`other`, the same sweep on another data order, joins `result`: each rule's suggestion the two's geometric
    mean, but `result`'s own where both learnt too little to be read (``learnt_too_little``, when lr_find warns):
    flat sweeps suggest too low, two of them averaged lower still, and a transformer fit there never left its
    plateau. Returns the sweeps read."""
    result.replicate = other
    result.cost = {k: v + other.cost.get(k, 0) for k, v in result.cost.items()}
    read = [result] if learnt_too_little(result, other) else [result, other]
    if len(read) == 2:
        result.suggestions = {k: geometric_mean(*(r.suggestions.get(k) for r in read)) for k in result.suggestions}
        result.suggestion = result.suggestions[suggest]
        result.bounds = lr_bounds(result.suggestions['max_bound'])
    return read


def sweep_drop(result: LRFinderResult) -> float:
    """How far a sweep's smoothed loss (``result.smooth_losses``) fell below where it started, as a fraction
    of that start. A loss that starts at or below 0 (a Gaussian NLL can) gives no scale to measure a fall by:
    1, so that its sweep is read as it is."""
    smooth = result.smooth_losses
    return (smooth[0] - min(smooth)) / smooth[0] if smooth[0] > 0 else 1.


def learnt_too_little(*results: LRFinderResult) -> bool:
    """Whether every one of these sweeps fell by less than MIN_SWEEP_DROP (:func:`sweep_drop`), too little for
    their curves to be read; every rank decides alike (the widest drop wins)."""
    return not max_over_ranks(max(sweep_drop(r) for r in results) >= MIN_SWEEP_DROP)


# --- checking the 'fit' suggestion at a held peak ------------------------------------------------------
# lr_find's hold probes: the fit's warm-up compressed into HOLD_WARMUP steps, then the lr held for the rest of
# HOLD_STEPS, each from the starting state; at most HOLD_PROBES of them, halving the lr; an end loss is the mean of
# the last HOLD_TAIL of a probe's steps. A plain CNN on 8x8 digits with SGD (two 3x3 convs, batch 64, 176-step fits)
# swept to an edge of 1.07-1.29 and got S = 0.71-0.86; its fits there scored 9.0% and 87.7%, at S/2 97.5-97.8%:
# trained for a while, the net sharpened past what S allows, which no range test sees (its loss at S is measured a
# few steps after the net last was at a lower lr). On another split of the digits (the test's case) the same net's
# probe at S ended 19x above the one at S/2, and its fit at S ended at chance.
HOLD_WARMUP, HOLD_STEPS, HOLD_PROBES, HOLD_TAIL = 40, 100, 3, 15
HOLD_HEAD = 2   # a probe's start loss: the mean of its first steps (of 100), taken before its warm-up learnt much
# ... steps of this many samples: a smaller batch's probes take proportionally more steps (the warm-up and the tail
# scale with them). An MLP on the digits with SGD at batch 8 (810-step fits) got S = 0.12-0.20 from 100-step probes,
# which ended 1.8x above S/2's; its fits there scored 94.8, 83.0 and 9.6%, at S/2 97.2-98.6%: in 100 steps of 8
# samples the net had not yet sharpened to where it fails at S (probes of 300 steps ended 2.8-6x above S/2's).
REFERENCE_BATCH = 32
# How much higher a probe at twice a kept suggestion may end and still raise it there (see check_held). The 'fit'
# rule's lowering for the fit's length is too much for some nets: SGD on the MNIST-1D MLP scored 67-73% at S where
# the grid's best cell is 0.8 (77%), a wide 1-D CNN at batch 32 (1875 steps) 91-95% at S and 96% at 2S, a
# bidirectional GRU 95.6-97.0% at S and 97.6-98.4% at 2S; and right for others: the MNIST-1D CNN at 50 epochs (the
# issue's own fit) kept 95.6-95.8% at S and fell to 8.9% at 2S on one seed, where every probe at 2S spiked. On the 43
# problems of both benches, 1.15 and 1.3 gave the same: the sum of the one-liner's gaps -41.9 -> -36.2 points (two
# SGD MLPs gained 4.5 and 1.2), no problem lower by more than 0.03; 1 (no higher end at all) -39.5. A probe at 2S
# that spiked and still ended below S's counts as held: a GRU and a bidirectional LSTM on MNIST-1D with SGD (made
# after the threshold was set) had such probes, and their fits at 2S scored 3-9 points above S's.
HOLD_CLIMB = 1.15
# Where the kept lr's probe fell less than HOLD_BEHIND times as far as its half's, both are probed again HOLD_LONG
# times as long, and the lr is halved when its long probe fell less than HOLD_LONG_DROP times as far as its half's: a
# net past the edge of a long fit learns at first, then stalls as it sharpens, and 100 steps are too few to tell it
# from one that is only noisier. A CNN on MNIST-1D at batch 32 (one-liner seed 2: 71.7% at S, 89.1% at S/2) fell
# 0.87x as far as S/2 in 100 steps and 0.63x in 300; deep MLPs at batch 8 0.61-0.91x and 0.50-0.72x (S/2 2-5 points
# better); nets fine at S mostly close the gap or overtake (a CNN on MNIST-1D at batch 8: 0.83x, then 1.05x; S 15
# points better). Of the one-liner's 140 kept suggestions on 57 SGD problems, 65 fell less far than their half and
# 28 under 0.9x (less than half the long probes' steps; two fewer picks at 0.8, +2.8). Set at 0.65 on them first
# (nine moved, +25.7 points summed; three lost 1.0-1.4); on eighteen problems made after it (bench/suggest_unseen.py)
# that moved one seed (a deep MLP 55.9 -> 89.6%) and left six whose S/2 scored 0.6-6.3 points more at long-probe
# ratios 0.66-0.79. At 0.8 (kept) in-sample +18.8 (a CNN on MNIST-1D at batch 8, 0.70x, lost 11.5: its S is best on
# every seed), on those eighteen +52.0 (+33.8 at 0.65); on six more made once it was 0.8, +0.95 over five seeds moved
# (one MNIST-1D CNN seed -3.6). Recurrent nets' long probes can stall at lrs their fits ride out (a GRU at batch 8:
# 0.49x, S 1.4 points better): the signal is noisy, and the threshold stays well below 1. Where the half's loss did
# not fall over the long hold either, they say nothing, and the lr is kept.
HOLD_BEHIND, HOLD_LONG, HOLD_LONG_DROP = 0.9, 3, 0.8


class HoldProbe(StepLoss, ParamScheduler):
    """What a 1cycle fit meets at its peak, in `n_steps` optimizer steps: its warm-up compressed into
    `warmup` steps (lr from lr/`div_factor` to `lr`, momentum from `moms`[0] to `moms`[1] where the optimizer
    has one: ``fit_one_cycle``'s defaults; None leaves it as it is), then `lr` held. Records every step's
    training loss (``losses``) and stops at the first that is not finite. The epoch's validation is
    skipped; the caller puts the learner back (:func:`hold_probe` does)."""
    order = 5
    handles_divergence = True   # it stops on a non-finite loss itself
    is_trial = True   # loggers, EarlyStopping and SaveModel stand aside

    def __init__(self, lr, n_steps=HOLD_STEPS, warmup=HOLD_WARMUP, moms=ONE_CYCLE_MOMS, div_factor=25.):
        check_positive('lr', lr)
        check_int('n_steps', n_steps, min_value=3)
        check_int('warmup', warmup, min_value=0)
        if warmup >= n_steps - 1: raise ValueError(f'warmup must be < n_steps - 1, got {warmup} of {n_steps}')
        check_positive('div_factor', div_factor)
        self.lr, self.n_steps, self.warmup, self.moms, self.div_factor = lr, n_steps, warmup, moms, div_factor
        self.losses, self.lr_sched = [], self._ramp(lr / div_factor, lr)
        super().__init__({'lr': self.lr_sched}, total_steps=n_steps)

    def _ramp(self, start, top):
        return Warmup(Constant(top), self.warmup, start=start, total_steps=self.n_steps)

    def before_fit(self):
        self.scheds = {'lr': self.lr_sched}   # as LRFinder: the momentum's is set per fit, for its optimizer
        if self.moms is not None and has_hyper(self.learn.opt.param_groups[0], 'mom'):
            self.scheds['mom'] = self._ramp(*self.moms)
        super().before_fit()
        self.losses = []
        self._reset_step_loss()

    def before_validate(self):
        raise CancelValidateException()

    def after_step(self):
        loss = self.step_loss()
        self.losses.append(loss)
        if any_rank(not math.isfinite(loss)) or len(self.losses) >= self.n_steps: raise CancelFitException()


def hold_probe(learn, lr, n_steps=HOLD_STEPS, warmup=HOLD_WARMUP, moms=ONE_CYCLE_MOMS) -> list[float]:
    """The training losses of a :class:`HoldProbe` at `lr` run from `learn`'s state, which is then put back
    exactly (:func:`~onecycle.core.snapshot.preserved`); fewer than `n_steps` when a loss was not finite."""
    probe = HoldProbe(lr, n_steps, warmup, moms)
    with preserved(learn):
        learn.fit(epochs_for_steps(learn, n_steps), cbs=[probe])
    return probe.losses


def checks_hold(opt, model) -> bool:
    """Whether the 'fit' suggestion is checked at a held peak (``lr_find(hold_check=True)``, and tune): for SGD-like
    optimizers where the 'fit' rule lowers the edge for the fit's length (models without normalization layers, or
    with attention; see :func:`~onecycle.tuning.suggest.exposure_exponent`). Adam-like optimizers are not: a
    probe's loss ratios said nothing on them (tasks solved to a loss near 0, plateaus where every probe ends alike)."""
    return not is_adaptive(opt) and exposure_exponent(False, is_normalized(model), has_attention(model)) > 0


def steps_for_samples(steps: int, batch_size=None) -> int:
    """`steps` optimizer steps of REFERENCE_BATCH samples, counted in steps of `batch_size` samples (None:
    unknown), never fewer than `steps`: a smaller batch needs more steps to see as much data."""
    if not batch_size or batch_size >= REFERENCE_BATCH: return steps
    return math.ceil(steps * REFERENCE_BATCH / batch_size)


def _probe_steps(fit_steps: int, batch_size=None, cap=None) -> int:
    """Each hold probe's steps for a fit of `fit_steps` at `batch_size` samples a step: HOLD_STEPS (more below a
    batch of REFERENCE_BATCH, see steps_for_samples), or the fit's own length, or `cap`, when shorter; 0 under 10."""
    n = min(steps_for_samples(HOLD_STEPS, batch_size), fit_steps, math.inf if cap is None else cap)
    return 0 if n < 10 else n


def hold_check_steps(fit_steps: int, max_probes=HOLD_PROBES, batch_size=None, long_probes=False) -> int:
    """The most optimizer steps :func:`check_held` takes for a fit of `fit_steps` steps of `batch_size` samples
    (0: too short to probe), with its two long probes when `long_probes`."""
    n = _probe_steps(fit_steps, batch_size)
    return max_probes * n + (2 * _long_probe_steps(n, fit_steps) if long_probes else 0)


def _long_probe_steps(n: int, fit_steps: int) -> int:
    "A long probe's steps, where each short one took `n`: HOLD_LONG times as many, at most the fit's; 0 if no more."
    m = min(HOLD_LONG * n, fit_steps)
    return m if m > n else 0


def _long_verdict(long: dict) -> tuple:
    """(how far the long probe at the lr fell, how far its half's fell, whether that halves the lr: the half's loss
    fell and the lr's less than HOLD_LONG_DROP times as far), from check_held's ``held['long']``."""
    fell, fell_half = (st - e for st, e in zip(long['starts'], long['ends']))
    return fell, fell_half, fell_half > 0 and not fell >= HOLD_LONG_DROP * fell_half


def check_held(learn, lr, fit_steps, ratio=HOLD_RATIO, max_probes=HOLD_PROBES, moms=ONE_CYCLE_MOMS, ceiling=None,
               climb=HOLD_CLIMB, probe_steps=None, long_probes=True) -> tuple:
    """`lr` checked at a held peak: hold probes (:func:`hold_probe`) at `lr` and `lr`/2, and one more
    halving while the lowest probe spiked (a step's loss above where it started, once it had come a third
    of the way down, see :func:`~onecycle.tuning.suggest.suggest_spike`) or diverged, at most `max_probes`;
    then the largest lr whose probe held (:func:`~onecycle.tuning.suggest.pick_held`). Returns (that lr,
    the probes: 'lrs', 'ends', 'spiked', 'starts' (each probe's loss over its first steps), 'steps' (all probes'),
    'probe_steps' (each one's), 'full_steps', 'ratio', 'unchecked'). A probe whose loss fell less than half as far
    as one's below it (HOLD_DROP), or not at all, did not hold (see :func:`~onecycle.tuning.suggest.pick_held`).
    Given a `ceiling` (lr_find passes the 'fit' suggestion before the rule lowered it for the fit's length), a
    kept `lr` whose probe did not spike and ended below the one at half of it is probed at twice itself as well,
    when that is within the ceiling and a probe is left, and raised there when that probe ended below the one at
    `lr`, or did not spike and ended at most `climb` (1.15) times above it, and when the probes at `lr` and twice
    it run again on another data order (``REPLICATE_SEED``, as lr_find's second sweep) agree: the lowering for the
    fit's length is what some nets need (their probe at twice the lr spikes and ends higher) and more than others
    do, and near an edge one data order's verdict is a coin toss (``held['confirm']`` has the second pair).
    With `long_probes`, a kept `lr` whose probe fell less than HOLD_BEHIND (0.9) times as far as the one at
    half of it is probed again with its half, each HOLD_LONG (3) times as long (at most the fit's length), and
    halved when the half's loss fell there and its own less than HOLD_LONG_DROP (0.8) times as far
    (``held['long']``: 'lrs', 'ends', 'spiked', 'starts', 'probe_steps'): a net past the edge of a long fit stalls
    as it sharpens, which 100 steps may not show.
    `moms`: the fit's (high, low) momentum, or None for a fit that keeps the optimizer's. A fit shorter
    than 10 steps is not probed. `probe_steps`: each probe's steps at most (tune shortens them to fit its
    budget; under 10, nothing is probed); probes cut short are held to a `ratio` cut in proportion
    (:func:`~onecycle.tuning.suggest.shortened_ratio`; ``held['ratio']``, ``held['full_steps']``). Every rank
    reads the same figures (end losses averaged over ranks, a spike anywhere counts)."""
    check_positive('lr', lr)
    check_int('fit_steps', fit_steps, min_value=1)
    check_int('max_probes', max_probes, min_value=2)
    check_positive('ceiling', ceiling, allow_none=True)
    check_range('climb', climb, 1, math.inf)
    check_int('probe_steps', probe_steps, min_value=1, allow_none=True)
    bs = effective_batch_size(learn)
    full, n = _probe_steps(fit_steps, bs), _probe_steps(fit_steps, bs, cap=probe_steps)
    if not n: return lr, {}
    if n < full: ratio = shortened_ratio(ratio, n / full)
    held = {'lrs': [], 'ends': [], 'spiked': [], 'starts': [], 'steps': 0, 'probe_steps': n, 'full_steps': full,
            'ratio': ratio, 'unchecked': lr}

    def measure(c, n=n):   # (end loss, spiked, start loss) of an n-step probe at c, the same on every rank
        warmup = n * HOLD_WARMUP // HOLD_STEPS
        tail, head = max(1, n * HOLD_TAIL // HOLD_STEPS), max(1, n * HOLD_HEAD // HOLD_STEPS)
        losses = hold_probe(learn, c, n, warmup, moms)
        held['steps'] += len(losses)
        done = len(losses) == n
        end = sum(losses[-tail:]) / tail if done else math.inf
        first = losses[:head] if losses else [math.inf]   # its first steps, at a tiny lr: the starting state's loss
        smooth = smooth_sweep(losses) if losses else []
        steps = list(range(1, len(losses) + 1))
        spiked = not done or (len(losses) >= 3 and min(smooth) < smooth[0] and suggest_spike(steps, losses, smooth) < n)
        # one all-reduce for all three: a loss that is not finite on any rank leaves its sum not finite either
        figures = torch.tensor([end, sum(first) / len(first), float(spiked)], dtype=torch.float64)
        totals, ranks = sum_over_ranks(figures, 1, learn.device)
        end, start, spikes = (float(v) / float(ranks) for v in totals)
        return (end if math.isfinite(end) else math.inf), spikes > 0, (start if math.isfinite(start) else math.inf)

    def probe(c):
        end, spiked, start = measure(c)
        held['lrs'].append(c); held['ends'].append(end); held['spiked'].append(spiked); held['starts'].append(start)

    def climbs(end, spiked, base):
        # a probe that spiked and still ended below lr's recovered: a transient burst (RNNs have them), not an edge
        return end < base or (not spiked and end <= climb * base)

    probe(lr); probe(lr / 2)
    while held['spiked'][-1] and len(held['lrs']) < max_probes: probe(held['lrs'][-1] / 2)
    picked = pick_held(held['lrs'], held['ends'], ratio, starts=held['starts'])
    # still learning faster at lr than at its half, with nothing unstable in sight: try twice it
    if (ceiling is not None and picked == lr and 2 * lr <= ceiling and len(held['lrs']) < max_probes
            and not held['spiked'][0] and held['ends'][0] < held['ends'][1]):
        probe(2 * lr)
        if climbs(held['ends'][-1], held['spiked'][-1], held['ends'][0]):
            # ... and the pair again on another data order (see REPLICATE_SEED) must agree: near an edge one order's
            # verdict is a coin toss, and a doubling past it collapses the fit (the CNN: 0.40 spiked, 0.41
            # ended 1.05x above 0.205 and was taken; the fit there ended at chance)
            with preserved(learn):
                reseed(REPLICATE_SEED, learn.dls.train)
                (base, base_spiked, _), (end, spiked, _) = measure(lr), measure(2 * lr)
            held['confirm'] = {'lrs': [lr, 2 * lr], 'ends': [base, end], 'spiked': [base_spiked, spiked]}
            if climbs(end, spiked, base): picked = 2 * lr
    # learnt clearly less than its half: does the gap close over a longer hold, or widen as a net past its edge stalls?
    m = _long_probe_steps(n, fit_steps) if long_probes and n == full else 0
    if picked == lr and m and held['starts'][0] - held['ends'][0] < HOLD_BEHIND * (held['starts'][1] - held['ends'][1]):
        long = held['long'] = {'lrs': [lr, lr / 2], 'ends': [], 'spiked': [], 'starts': [], 'probe_steps': m}
        for c in long['lrs']:
            end, spiked, start = measure(c, m)
            long['ends'].append(end); long['spiked'].append(spiked); long['starts'].append(start)
        if _long_verdict(long)[2]: picked = lr / 2   # (where the half did not learn either, no verdict)
    return picked, held


def held_line(held: dict, picked: float) -> str:
    "One line on what :func:`check_held` saw (its `held` dict) and the lr it `picked`."
    def tags(sp, e, st, fell, below):
        little = 0 < fell < HOLD_DROP * below   # (one that fell no lower than it started says so instead)
        t = (['spiked'] * sp + ['no lower than it started'] * (math.isfinite(e) and e >= st)
             + [f'fell {fell:.3g}, under {HOLD_DROP:.2g}x the {below:.3g} of a smaller lr'] * little)
        return f" ({', '.join(t)})" if t else ''
    def listed(d):
        starts = d.get('starts') or [math.inf] * len(d['lrs'])
        falls = held_falls(d['lrs'], d['ends'], starts)
        return ', '.join(f'{fmt_lr(c)}: {e:.4g}{tags(sp, e, st, *fb)}'
                         for c, e, sp, st, fb in zip(d['lrs'], d['ends'], d['spiked'], starts, falls))
    probes = listed(held)
    verdict = ('kept' if picked == held['unchecked'] else
               f"{'lowered' if picked < held['unchecked'] else 'raised'} to {fmt_lr(picked)}")
    again = f"; on another data order {listed(held['confirm'])}" if held.get('confirm') else ''
    if held.get('long'):
        fell, fell_half, halves = _long_verdict(held['long'])
        read = ('the half did not learn either' if not fell_half > 0 else
                f"{'under' if halves else 'at least'} {HOLD_LONG_DROP:.2g}x")
        again += (f"; {fmt_lr(held['unchecked'])} fell less than {HOLD_BEHIND:.2g}x as far as its half, so both ran "
                  f"{held['long']['probe_steps']} steps: fell {fell:.3g} and {fell_half:.3g} ({read})")
    cut = (f" (cut from {held['full_steps']}: held within {held['ratio']:.3g}x)"
           if held.get('full_steps', 0) > held['probe_steps'] else '')
    return (f"hold check: {fmt_lr(held['unchecked'])} {verdict} (probes of {held['probe_steps']} "
            f"steps{cut}, end loss by peak lr: {probes}{again}; {held['steps']} steps)")


def lr_find(learn, start_lr=1e-7, end_lr=10., num_it=None, stop_div=True, suggest='fit', n_epoch=None,
            hold_check=True, **kwargs) -> LRFinderResult:
    """Run the LR range test on `learn` and return its result; the learner is left as it was.

    ``result.suggestion`` is the `suggest` entry of ``result.suggestions``: 'fit' (the default), a
    max_lr for ``fit_one_cycle(learn, n_epoch, ...)`` that stays below the edge of stability of a fit
    that long (the lr where the sweep's loss turns up, never past its first spike; for SGD-like
    optimizers moved towards that spike when it lies far beyond, for Adam-like ones never above the weights'
    typical size (``result.limit``), and on models without normalization
    layers, or with attention whatever the optimizer, lowered for the time the fit spends near its peak, see
    :func:`~onecycle.tuning.suggest.suggest_for_fit`; without
    `n_epoch` it plans for the longer of 10 epochs and 2000 steps), or one of Smith's and fastai's
    rules: 'minimum', 'steep', 'valley', 'max_bound', 'edge', or 'spike'. Other keyword arguments go to
    :class:`LRFinder`: `mom` (the sweep's momentum: by default each group's own, or 0.9 where that is 0,
    as the 1cycle fit turns it on), `mode` ('exp' or 'linear'), `div_threshold`, `beta`, and
    `valid_every`/`valid_batches` to measure the loss on a fixed validation subset every
    `valid_every` steps (its cost is in ``result.cost``).

    `num_it`: the sweep's optimizer steps. None (the default) sweeps 100 steps of 32 samples (more at a
    smaller batch: 400 at 8, see :func:`steps_for_samples`), and when their smoothed
    loss fell by less than a tenth of where it started (``sweep_drop``: a net that learns slowly, whose
    curve is flat but for noise), sweeps once more with 300 from the same state and reads that one
    (``result.extended``); then it sweeps the one it read again from the same state on another data order
    (``result.replicate``) and suggests, for each rule, the geometric mean of the two sweeps' values (one
    sweep's edge moves by 20-40% with the data order, up to 3x on noisy problems); where both fell too little,
    the first one's, with a warning (``UserWarning``). A number sweeps exactly that many steps, once.

    `hold_check`: for an SGD-like optimizer on a model without normalization layers or with attention
    (where the 'fit' rule lowers the edge for the fit's length), the 'fit' suggestion is then checked where
    a fit meets its peak: 100-step probes (of 32 samples: more steps at a smaller batch, see
    :func:`steps_for_samples`) from the same state, the fit's warm-up compressed and the lr held,
    at it and at half of it (a third, lower still, when the lower one spiked too), and it is halved while
    its probe ends more than 3x above the one below, or falls less than half as far (:func:`check_held`;
    ``result.held`` says what they saw, ``result.cost`` counts their steps). A long fit at an lr that only undoes
    its training once the net has sharpened collapses to chance, and no range test, whose steps at that lr come
    right after lower ones, shows it; where a kept suggestion's probe fell less than 0.9x as far as its half's,
    both run again three times as long, and it is halved when it fell less than 0.8x as far there (a net past
    that edge learns, then stalls). The other way, a kept suggestion whose probe ended below its half's is probed
    at twice itself, and doubled when that probe ended lower, or did not spike and ended at most 1.15x higher, never
    past the value before the rule lowered it for the fit's length: the lowering some nets need costs others points.
    Off, or for another `suggest`, nothing runs after the sweep."""
    check_choice('suggest', suggest, SUGGESTIONS)
    check_int('n_epoch', n_epoch, min_value=1, allow_none=True)
    check_int('num_it', num_it, min_value=2, allow_none=True)
    check_bool('hold_check', hold_check)
    n = steps_for_samples(DEFAULT_NUM_IT, effective_batch_size(learn)) if num_it is None else num_it
    finder = LRFinder(start_lr, end_lr, n, stop_div, **kwargs)
    check_loader(learn.dls.train, 'dls.train')
    if finder.valid_every is not None: check_loader(learn.dls.valid, 'dls.valid')
    result = _sweep(learn, finder, suggest, n_epoch)
    read = [result]
    if num_it is None and learnt_too_little(result):
        first = result.cost
        result = _sweep(learn, LRFinder(start_lr, end_lr, n * EXTEND_FACTOR, stop_div, **kwargs), suggest, n_epoch)
        result.cost = {k: v + first.get(k, 0) for k, v in result.cost.items()}
        result.extended = True
    if num_it is None:   # the sweep just read once more, on another data order (see REPLICATE_SEED)
        with preserved(learn):
            reseed(REPLICATE_SEED, learn.dls.train)
            m = n * EXTEND_FACTOR if result.extended else n
            other = _sweep(learn, LRFinder(start_lr, end_lr, m, stop_div, **kwargs), suggest, n_epoch)
        read = _add_replicate(result, other, suggest)
        if result.extended and learnt_too_little(result, other):   # no lr of either sweep taught the net much
            warnings.warn(f'lr_find: the loss fell {max(sweep_drop(result), sweep_drop(other)):.1%} at most in two '
                          f'sweeps of {len(result.train_lrs)} steps, too little to show clearly where it turns up: its '
                          'suggestions may be far off. A net with a long plateau before it learns (small transformers '
                          'often have one) is safer with tune() or a few short fits at lrs you choose', UserWarning,
                          stacklevel=user_stacklevel())
    if hold_check and suggest == 'fit' and checks_hold(learn.opt, learn.model):
        t0 = time.perf_counter()
        mom = finder.mom   # the probes run at the momentum the sweep assumed of the fit
        moms = ONE_CYCLE_MOMS if mom == 'auto' else None if mom is None else (mom, mom)
        # a climb may undo the 'fit' rule's lowering for the fit's length, no more
        unlowered = geometric_mean(*(_unlowered_fit(r) for r in read))
        lr, held = check_held(learn, result.suggestion, result.fit_steps, moms=moms, ceiling=unlowered)
        if held:
            result.held, result.suggestion = held, lr
            result.suggestions['fit'] = lr
            result.cost['train_steps'] += held['steps']
            result.cost['seconds'] += time.perf_counter() - t0
            if getattr(learn, 'progress', False): print(held_line(held, lr), flush=True)
    for cb in learn.cbs:   # loggers attached to the learner (TensorBoardLogger...) keep the plot
        if callable(getattr(type(cb), 'log_lr_find', None)): cb.log_lr_find(result)
    return result
