"""The learning-rate range test: train briefly while the lr grows, watch the loss, put everything back."""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from ..callbacks.gpu import Compile
from ..callbacks.progress import RangeTestProgress
from ..core.callback import CancelFitException, CancelValidateException
from ..core.checks import check_bool, check_choice, check_int, check_positive, check_range
from ..core.data import FirstLayerInput, batch_size_of, check_loader, input_squares, split_batch
from ..core.dist import collective_device, is_distributed, max_over_ranks, sum_over_ranks
from ..core.hyper import (caps_own_step, divides_by_running_max, get_hyper, has_attention, has_convolution, has_hyper,
                          has_recurrence, is_adaptive, is_normalized, is_regression_loss, keeps_running_rms,
                          steps_with_gradient, sums_squared_gradients, weight_scale)
from ..core.rng import reseed
from ..core.snapshot import TrainingState, preserved
from ..core.warn import user_stacklevel
from ..distributed.ddp import effective_batch_size
from ..schedules.functions import Constant, Exponential, Linear
from ..schedules.scheduler import ONE_CYCLE_MOMS, ParamScheduler
from .hold_check import check_held, checks_hold, held_line, long_end_ratio, spike_steps
from .range_test_plot import plot_range_tests
from .short_runs import (REPLICATE_SEED, StepLoss, divergence_limit, epochs_for_steps, fixed_valid_batches,
                         optimizer_steps_per_epoch, steps_for_samples, subset_loss)
from .suggest import (INPUT_RMS_LIMIT, SGD_INPUT_LIMIT, applied_lr_limit, divided_step_input_limit,
                      divided_step_multiple, exposure_exponent, far_above_unit_scale, geometric_mean,
                      input_scale_factor, lr_bounds, plateau_anchor, range_test_spike, sgd_input_limit, smooth_sweep,
                      smoothed_slopes, spike_lift, step_limit, suggest_edge, suggest_for_fit, suggest_max_bound,
                      suggest_minimum, suggest_steep, suggest_valley)

__all__ = ['LRFinder', 'LRFinderResult', 'lr_find', 'SUGGESTERS', 'SUGGESTIONS', 'planned_fit_steps', 'sweep_drop',
           'learnt_too_little', 'never_turned_up']


@dataclass
class LRFinderResult:
    """What a range test saw and what it suggests.

    ``lrs``/``losses`` are the measured curve: the training loss of every step, or with validation
    the loss on the fixed validation subset at every evaluation (``measured`` says which).
    ``smooth_losses`` is that curve with losses above the starting level capped and a zero-lag
    debiased EMA applied; suggestions and plots read it. ``suggestions`` maps 'fit', 'minimum',
    'steep', 'valley', 'max_bound', 'edge' (where the loss floor ends and the loss turns up) and 'spike'
    (the last lr before a step's own loss first jumped above the starting level; two steps in a row on a net
    with dropout and no normalization layers) to a learning rate;
    ``suggestion`` is the one asked for ('fit' by default: a max_lr for a 1cycle fit of ``fit_steps``
    optimizer steps, see :func:`~onecycle.tuning.suggest.suggest_for_fit`).
    ``bounds`` gives Smith's minimum-bound ranges (low, high) for the max bound: 'cyclical_min'
    (max/4 to max/3) and 'one_cycle_min' (max/20 to max/10). ``cost`` counts the steps, validation forward
    passes and seconds spent (both sweeps' when ``extended``: lr_find swept again, longer, because its
    default sweep learnt too little to read, see ``lr_find``'s `num_it`; the hold probes' steps too).
    ``held`` is empty unless lr_find checked the 'fit' suggestion at a held peak (see
    :func:`~onecycle.tuning.hold_check.check_held`): then it holds the probes' 'lrs' (the unchecked suggestion, its
    half, then a quarter or twice it), their 'ends' (end losses), whether each 'spiked', their 'starts' (losses over
    their first steps), their 'steps' (all probes') and 'probe_steps' (each one's), the 'unchecked' suggestion, and
    where they ran the 'long' probes at it and its half (their 'lrs', 'ends', 'spiked', 'starts' and 'probe_steps').
    ``replicate`` is lr_find's second sweep, on another data order, when it ran one (its default `num_it`):
    then each entry of ``suggestions`` is the geometric mean of the two sweeps' values for that rule (the first
    sweep's own where both learnt too little to be read; the curves, ``lrs`` and ``losses``, are the first
    sweep's), and ``cost`` counts both.
    ``limit`` is the lr the 'fit' suggestion may not pass: for an Adam-like optimizer the weights' typical size
    (:func:`~onecycle.core.hyper.weight_scale`), as each Adam step moves a weight by about the lr (twice it for
    Adamax, whose steps are smaller; see :func:`~onecycle.tuning.suggest.step_limit`; on a plain MLP with inputs
    far above unit scale, times :func:`~onecycle.tuning.suggest.input_scale_factor`); for others, none, but on a
    plain MLP or CNN with inputs far above unit scale :func:`~onecycle.tuning.suggest.sgd_input_limit` for SGD and
    :func:`~onecycle.tuning.suggest.divided_step_input_limit` for RMSprop and Adagrad; for one that caps its own step at
    1/sqrt(step) (Adafactor), the largest lr the sweep applied (:func:`~onecycle.tuning.suggest.applied_lr_limit`)
    at most; ``limit_why`` says which, for the plot's legend.
    ``input_rms`` is the root mean square of the floating-point input the first layer with weights received on the
    first training batch (:class:`~onecycle.core.data.FirstLayerInput`: past an input BatchNorm, or a forward that
    divides pixels by 255; what a token embedding gives; the batch's own inputs inside a compiled forward, None
    where none is a float): lr_find warns where it lies far above 1. ``target_rms`` is that of the first training
    batch's floating-point targets (a regression's; None for class labels): lr_find warns where it lies far above 1.
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
    limit_why: str = ''   # what sets `limit`, for the plot's legend ('' where none is set)
    input_rms: float | None = None
    target_rms: float | None = None

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
# (checked at the held peak: 0.61) scored 98.6% against 94.6% at 1.47. (REPLICATE_SEED lives in short_runs: the hold
# check and tune draw the same second order.)

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
    per_epoch = max(1, optimizer_steps_per_epoch(learn))
    if n_epoch is None: return max(DEFAULT_FIT_EPOCHS * per_epoch, DEFAULT_FIT_STEPS)
    return n_epoch * per_epoch


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
        self._first_layer = None   # watches the first batch for the input scale the first weights meet

    def before_fit(self):
        # first: whatever fails below, after_fit restores it
        if self.state is None: self.state = TrainingState(self.learn)
        self._t0 = time.perf_counter()
        self.scheds = {'lr': self.lr_sched, **self._mom_scheds()}
        super().before_fit()
        self.lrs, self.losses, self.stopped_early = [], [], False   # per training step
        self.input_rms, self.target_rms, self._inputs_seen = None, None, False
        # a compiled forward (Compile, or torch.compile's wrapper module) would compile once more when the hooks come
        # off: the batch's scale there
        compiled = any(isinstance(cb, Compile) for cb in self.learn.cbs) or hasattr(self.learn.model, '_orig_mod')
        self._first_layer = None if compiled else FirstLayerInput(self.learn.model)
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

    def after_pred(self):
        if self.learn.training and not self._inputs_seen:   # the first batch's inputs: how large they are
            self._inputs_seen = True
            met = self._first_layer   # as the first layer with weights met them; the batch's where none was seen
            if met is not None: met.remove()
            total, n = (met and met.squares) or input_squares(self.learn.xb)
            y_total, y_n = input_squares(self.learn.yb)   # float targets: a regression's scale
            if is_distributed():   # over the global batch: every rank suggests alike
                sums, _ = sum_over_ranks(torch.tensor([total, n, y_total, y_n], dtype=torch.float64,
                                                      device=collective_device()), 0)
                total, n, y_total, y_n = sums.tolist()
            self.input_rms = math.sqrt(float(total) / float(n)) if n else None
            self.target_rms = math.sqrt(float(y_total) / float(y_n)) if y_n else None

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
        if self._first_layer is not None: self._first_layer.remove()   # a fit cut short too
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
        smooth, adaptive, model = smooth_sweep(losses), is_adaptive(self.learn.opt), self.learn.model
        normalized, attention = is_normalized(model), has_attention(model)
        regression = _keeps_regression_edge(self.learn)
        limit = step_limit(adaptive, weight_scale(model) if adaptive else None, divides_by_running_max(self.learn.opt))
        limit, why = self._input_scale_limit(limit, adaptive, not (normalized or attention or has_recurrence(model)))
        caps, lasting = caps_own_step(self.learn.opt), _sweep_spike_steps(model)
        if caps:   # its lrs above 1/sqrt(step) were never applied (Adafactor)
            limit = min(applied_lr_limit(self.lrs, self._opt_steps), limit or math.inf)
        sugg = {'fit': suggest_for_fit(lrs, smooth, fit_steps, sweep_lrs=self.lrs, raw_losses=losses,
                                       exponent=exposure_exponent(adaptive, normalized, attention, regression),
                                       lift=spike_lift(adaptive), limit=limit, spike_cap=not regression,
                                       plateau=_plateau_share(adaptive, _normalized_plain(model), smooth),
                                       spike_steps=lasting)}
        sugg.update({name: f(lrs, smooth) for name, f in SUGGESTERS.items()})
        sugg['spike'] = range_test_spike(lrs, losses, smooth, lasting=lasting)
        return LRFinderResult(list(lrs), list(losses), smooth, sugg, sugg[suggest], self.stopped_early,
                              bounds=lr_bounds(sugg['max_bound']), measured=self.measured,
                              train_lrs=list(self.lrs), train_losses=list(self.losses), cost=self.cost(),
                              fit_steps=fit_steps, limit=limit, input_rms=self.input_rms, target_rms=self.target_rms,
                              **({'limit_why': 'the largest lr the sweep applied (the optimizer caps its own step)'}
                                 if caps else {'limit_why': why} if why else {}))

    def _input_scale_limit(self, limit, adaptive: bool, plain: bool) -> tuple:
        """(`limit`, Adam's step limit or None, as inputs far above unit scale leave it; what sets it, for
        ``limit_why``, or None where no limit is set). Such inputs move a plain net's (`plain`: no normalization,
        attention or recurrent layers) outputs further at each step: an Adam-like optimizer's limit comes down in
        proportion on an MLP (:func:`~onecycle.tuning.suggest.input_scale_factor`); SGD, whose step grows with the
        inputs too, RMSprop and Adagrad get one on an MLP or a CNN (:func:`~onecycle.tuning.suggest.sgd_input_limit`,
        :func:`~onecycle.tuning.suggest.divided_step_input_limit`)."""
        rms, opt, model = self.input_rms, self.learn.opt, self.learn.model
        if limit is not None:
            running_max = divides_by_running_max(opt)
            size = "twice the weights' typical size" if running_max else "the weights' typical size"
            why = "Adamax's steps are smaller than the lr" if running_max else "Adam's steps are about the lr"
            factor = input_scale_factor(rms, adaptive, plain and not has_convolution(model))
            if factor == 1: return limit, f'{size} ({why})'
            return limit * factor, f'{size} x {factor:.2g} (inputs far above unit scale)'
        sgd = sgd_input_limit(rms, steps_with_gradient(opt), plain)
        if sgd is not None:
            return sgd, f"{SGD_INPUT_LIMIT:g} / the inputs' mean square ({rms:.3g}^2: far above unit scale)"
        running = keeps_running_rms(opt)
        multiple = divided_step_multiple(running, sums_squared_gradients(opt))
        if not (multiple and plain and far_above_unit_scale(rms)): return None, None
        limit = divided_step_input_limit(rms, multiple, plain, weight_scale(model))   # (a collective under DDP)
        why = (f"the weights' typical size x {multiple:g} x {INPUT_RMS_LIMIT / rms:.2g} "
               f"({'RMSprop' if running else 'Adagrad'}; inputs far above unit scale)")
        return limit, why if limit is not None else None


# A sweep that fell by less than MIN_SWEEP_DROP under an SGD-like optimizer, and never came below its plateau by more
# than twice the noise of its batches, reads its edge from noise (its lowest point is where lucky batches fell): its
# 'fit' suggestion is anchored where its loss left the plateau for good (suggest.suggest_plateau_edge), lowered for the
# fit's length as an edge is (thirty-seventh session). Of the 185 SGD-like problems of bench/recommend.py and
# bench/suggest_unseen.py (torchvision's aside) it moves seven, plain CNNs and an encoder stuck on a plateau (one-liner
# means: a 2x2-patch encoder on a sequence's argmax 10.7 -> 37.7%, one seed 11.1 -> 92.0%; CNNs with global average
# pooling 10.0 -> 64.3% and 11.9 -> 21.7%; 16x16 CNNs 37.8 -> 63.1%, 75.7 -> 76.7%, 92.0% as before; spirals at batch
# 8 99.6% as before); tune, on thirteen SGD problems whose sweeps learnt too little, +284 points summed over 39 seeds
# (no seed lower by more than 1.0: S read as 2.7e-8 before on four). A normalized net without attention, whose
# suggestion is not lowered for the fit's length, is anchored at half its plateau edge (NORMALIZED_PLATEAU_SHARE):
# torchvision's nets on the 8x8 digits under SGD put their best lr from half that edge (MobileNetV2, ShuffleNetV2) to
# four times it (RegNetX); at the edge itself MobileNetV2 fell to 61-74% on three seeds of six (its edge 0.018-0.057
# from seed to seed), 80.3% against 87.7% read from noise before; at half, 90.5% (RegNetX 39.8 -> 62.1%,
# ShuffleNetV2 82.9 -> 82.1%; the share was read on these three). Three noises instead of two took in a patch
# encoder's seed, 78.4 -> 54.6%. Not for Adam-like optimizers: their sweeps on a plateau rose 3-70x above the edges
# other seeds of the same encoders read from a dip (0.10-0.22 against 0.003-0.03), their steps bounded by the lr itself.
PLATEAU_SHARE, NORMALIZED_PLATEAU_SHARE = 1., 0.5


def _plateau_share(adaptive: bool, normalized: bool, smooth) -> float:
    """The share of its plateau edge (:func:`~onecycle.tuning.suggest.suggest_plateau_edge`) a sweep with this
    smoothed loss is anchored at, 0 where it is not: an SGD-like optimizer's sweep that fell by less than
    MIN_SWEEP_DROP, at half the edge on a `normalized` net without attention, whose suggestion is not lowered
    for the fit's length (see the note above)."""
    if adaptive or _drop(smooth) >= MIN_SWEEP_DROP: return 0.
    return NORMALIZED_PLATEAU_SHARE if normalized else PLATEAU_SHARE


def _normalized_plain(model) -> bool:
    "A normalized model without attention: one whose SGD suggestion is not lowered for the fit's length."
    return is_normalized(model) and not has_attention(model)


def _plateau_read(learn, result: LRFinderResult) -> float | None:
    "Where `result`'s 'fit' suggestion was anchored on its plateau (see the note above), or None where it was not."
    share = _plateau_share(is_adaptive(learn.opt), _normalized_plain(learn.model), result.smooth_losses)
    if not share: return None
    return plateau_anchor(result.lrs, result.losses, result.smooth_losses)


def _sweep(learn, finder, suggest, n_epoch) -> LRFinderResult:
    "One range test with `finder`, the learner put back as it was afterwards."
    finder.fit_steps = planned_fit_steps(learn, n_epoch)
    finder.state = TrainingState(learn)   # before fit() resets the counters and gradients: those come back too
    bar = [RangeTestProgress(finder.num_it, finder.beta)] if getattr(learn, 'progress', False) else []   # its own
    learn.fit(epochs_for_steps(learn, finder.num_it), cbs=[finder, *bar])
    return finder.result(suggest)


def _keeps_regression_edge(learn) -> bool:
    """An SGD-like optimizer fitting a regression's loss (``core.hyper.is_regression_loss``) on a net without
    attention: its 'fit' suggestion keeps the sweep's edge, neither lowered for the fit's length nor capped by an
    earlier spike (see :func:`~onecycle.tuning.suggest.exposure_exponent`), so the hold check has nothing to climb
    back to."""
    return (not is_adaptive(learn.opt) and not has_attention(learn.model)
            and is_regression_loss(learn.loss_func))


def _sweep_spike_steps(model) -> int:
    """How many steps in a row above the start make a spike in `model`'s sweep: two on a net with dropout
    (hold_check.spike_steps), one on a normalized net with dropout too: MobileNetV2 (BatchNorm, dropout before its
    head) under AdamW had one seed's S held by a one-step spike, 85.6% there, 53.8% at the 1.36x S read past it;
    MobileNetV3-small under SGD 17.3 -> 14.0% (thirty-ninth session)."""
    return 1 if is_normalized(model) else spike_steps(model)


def _unlowered_fit(result: LRFinderResult, model) -> float:
    """A sweep's 'fit' suggestion for SGD before the rule lowers it for the fit's length, below the same limit: the
    hold check's ceiling (the check runs on models without normalization layers or with attention only)."""
    return suggest_for_fit(result.lrs, result.smooth_losses, result.fit_steps, sweep_lrs=result.train_lrs,
                           raw_losses=result.losses, exponent=0., lift=spike_lift(False), limit=result.limit,
                           plateau=_plateau_share(False, False, result.smooth_losses),
                           spike_steps=_sweep_spike_steps(model))


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
        if result.limit is not None and other.limit is not None:   # (their inputs' scales may differ a little)
            result.limit = geometric_mean(result.limit, other.limit)
        result.bounds = lr_bounds(result.suggestions['max_bound'])
    return read


def sweep_drop(result: LRFinderResult) -> float:
    """How far a sweep's smoothed loss (``result.smooth_losses``) fell below where it started, as a fraction
    of that start. A loss that starts at or below 0 (a Gaussian NLL can) gives no scale to measure a fall by:
    1, so that its sweep is read as it is."""
    return _drop(result.smooth_losses)


def _drop(smooth) -> float:
    "sweep_drop of a smoothed curve."
    return (smooth[0] - min(smooth)) / smooth[0] if smooth[0] > 0 else 1.


# What lr_find's warning tells the user whose sweeps learnt too little. Plain nets (no normalization layers) under SGD
# that sit on a plateau fit anywhere between chance and their best at neighbouring lrs (a 16x16 CNN: 59.6% at 0.178,
# 8.6% at 0.171), and no rule read from short runs picked among them (a ladder of hold probes: -4.7 points summed
# over twelve such seeds, twenty-eighth session); with a BatchNorm layer after each hidden layer the same nets swept
# readably and the one-liner fitted a 6-layer MLP on the digits at batch 16 at 97.6-98.2% (57.8-91.2% plain), the
# 16x16 CNN at 98.8-99.4% (59.6-87.4%), a CNN with global average pooling at 98.4-99.0% (9.6-15.2%), 3 seeds each.
# Small transformers, normalized already, have plateaus too: tune's longer trials compare S with S/4 there. Recurrent
# nets (GRUs under SGD at batches 16-32 had such sweeps) are not pointed at BatchNorm, which does not suit them.
def _plateau_advice(model) -> str:
    "What to do about a model whose range test learnt too little to read."
    if not (is_normalized(model) or has_attention(model) or has_recurrence(model)):
        return ('A plain net like this one (no normalization layers) often sits on a plateau that its fits leave at '
                'one lr and not at the next; with a normalization layer (BatchNorm) after each hidden layer it '
                'usually learns at once, and its range test reads clearly')
    return ('A net with a long plateau before it learns (small transformers often have one) is safer with tune() or '
            'a few short fits at lrs you choose')


# how lr_find's warnings on inputs and targets far above unit scale, and on sweeps that never turned up, begin (tune
# says them once for its two sweeps)
INPUT_SCALE_WARNING = "lr_find: the inputs' root mean square"
TARGET_SCALE_WARNING = "lr_find: the targets' root mean square"
TURN_UP_WARNING = 'lr_find: the loss had not turned up'


def learnt_too_little(*results: LRFinderResult) -> bool:
    """Whether every one of these sweeps fell by less than MIN_SWEEP_DROP (:func:`sweep_drop`), too little for
    their curves to be read; every rank decides alike (the widest drop wins)."""
    return not max_over_ranks(max(sweep_drop(r) for r in results) >= MIN_SWEEP_DROP)


# a sweep whose smoothed loss came below this fraction of where it started fit its batches: with no gradient left, no
# lr is unstable, and a longer sweep would not show an edge either (a linearly separable toy task under SGD to lr 10)
FIT_LOSS_FRACTION = 1e-3
# an edge within this fraction of a sweep's steps from its end is the end: a still-falling curve's last steps wobble
# by more than the edge's band (a sweep to 0.03 on noisy labels put its edge two steps of 400 before the end)
END_FRACTION = 0.05


def never_turned_up(*results: LRFinderResult) -> bool:
    """Whether every one of these sweeps ran to its last lr without its loss turning up: none stopped at a
    divergence, each one's smoothed loss stayed on its floor until the end (its edge, :func:`~onecycle.tuning.
    suggest.suggest_edge`, within its last END_FRACTION of steps), above FIT_LOSS_FRACTION of where it started.
    Their 'edge' and 'max_bound' are then where the sweep stopped, not where the loss turns up, and the 'fit'
    suggestion read from them may lie below a fit's best max_lr. Every rank decides alike (one that saw the loss
    turn up decides for all)."""
    def ran_out(r):
        if r.stopped_early or len(r.lrs) < 2: return False
        at = r.lrs.index(suggest_edge(r.lrs, r.smooth_losses))
        return at >= (1 - END_FRACTION) * (len(r.lrs) - 1) and \
            min(r.smooth_losses) > FIT_LOSS_FRACTION * abs(r.smooth_losses[0])
    ended = all(ran_out(r) for r in results)
    return not max_over_ranks(not ended)


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
    smaller batch: 400 at 8, see :func:`~onecycle.tuning.short_runs.steps_for_samples`), and when their smoothed
    loss fell by less than a tenth of where it started (``sweep_drop``: a net that learns slowly, whose
    curve is flat but for noise), sweeps once more with 300 from the same state and reads that one
    (``result.extended``); then it sweeps the one it read again from the same state on another data order
    (``result.replicate``) and suggests, for each rule, the geometric mean of the two sweeps' values (one
    sweep's edge moves by 20-40% with the data order, up to 3x on noisy problems); where both fell too little,
    the first one's, with a warning (``UserWarning``) that says what helps that kind of net (for a plain one, a
    normalization layer after each hidden layer). Under an SGD-like optimizer a sweep that fell that little and
    never came below its plateau by more than twice the noise of its batches has its 'fit' suggestion read where
    its loss left the plateau for good (:func:`~onecycle.tuning.suggest.suggest_plateau_edge`; at half of it on a
    normalized model without attention), not from its lowest point, which lands wherever lucky batches fell. A
    number sweeps exactly that many steps, once. Inputs far above unit scale on a net without normalization layers
    (the root mean square of what its first layer with weights receives on the first batch above INPUT_RMS_LIMIT,
    ``result.input_rms``) draw a warning to standardize them:
    such a net's long fits can collapse at lrs its sweep reads as safe; on a plain MLP the limit on the 'fit'
    suggestion (``result.limit``) comes down in proportion for an Adam-like optimizer
    (:func:`~onecycle.tuning.suggest.input_scale_factor`), and on a plain MLP or CNN it is set to 16 / rms^2 for SGD
    (:func:`~onecycle.tuning.suggest.sgd_input_limit`), to a tenth of Adam's for RMSprop and to 8 times it for
    Adagrad (:func:`~onecycle.tuning.suggest.divided_step_input_limit`). Floating-point targets far above unit
    scale (a regression's, ``result.target_rms``) draw a warning to standardize them. Sweeps that ran to `end_lr`
    with the loss still on its floor (:func:`never_turned_up`) draw a warning to sweep further. An SGD-like optimizer
    fitting a regression's loss (mean squared, absolute, smooth L1 or Huber: ``core.hyper.is_regression_loss``) on a
    net without attention keeps the edge: no lowering for the fit's length, no cap at an earlier spike (its loss
    past the edge is the noise of its steps, which the fit anneals away; see
    :func:`~onecycle.tuning.suggest.exposure_exponent`); the hold check below still runs.

    `hold_check`: on a model without normalization layers or with attention (where the 'fit' rule lowers an SGD-like
    optimizer's edge for the fit's length), whatever the optimizer, the 'fit' suggestion is then checked where a fit
    meets its peak: 100-step probes (of 32 samples: more steps at a smaller batch) from the same state, the fit's
    warm-up compressed and the lr held, at it and at half of it (a third, lower still, when the lower one spiked
    too), and it is halved while its probe ends more than 3x above the one below, or falls less than half as far
    (:func:`~onecycle.tuning.hold_check.check_held`; ``result.held`` says what they saw, ``result.cost`` counts
    their steps). A long fit at an lr that only undoes its training once the net has sharpened collapses to chance,
    and no range test, whose steps at that lr come right after lower ones, shows it; where a kept suggestion's probe
    fell less than 0.9x as far as its half's, or wherever a probe at or below the lr taken spiked, that lr and its
    half run again three times as long, and it is halved when it fell less than 0.8x as far there (a net past that
    edge learns, then stalls); on a net with attention, whatever the optimizer, they run whenever the suggestion is
    kept, and halve it too where its long probe ended more than 1.3x above its half's; where its long probe sat on a
    plateau (learnt under 15% of its start, under 2% once held: a fit at it may never leave it), it is taken to 4x
    (2x where 4x diverged or lies above the weights' typical size under an Adam-like optimizer) where a probe three
    times as long again leaves the plateau (:data:`~onecycle.tuning.hold_check.HOLD_STUCK_LEARNT`). The other way, a
    kept suggestion whose probe ended below its half's is probed at twice itself, and doubled when that probe ended
    lower, or did not spike and ended at most 1.15x higher, never past the value before the rule lowered it for the
    fit's length (an Adam-like optimizer's is the sweep's edge, and is never raised): the lowering some nets need
    costs others points. Off, or for another `suggest`, nothing runs after the sweep."""
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
            rise = _plateau_read(learn, result)
            read_at = '' if rise is None else (f" (the 'fit' one is read where the loss left its plateau for good, lr "
                                               f'{rise:.3g}, not from its lowest point)')
            warnings.warn(f'lr_find: the loss fell {max(sweep_drop(result), sweep_drop(other)):.1%} at most in two '
                          f'sweeps of {len(result.train_lrs)} steps, too little to show clearly where it turns up: its '
                          f'suggestions may be far off{read_at}. {_plateau_advice(learn.model)}', UserWarning,
                          stacklevel=user_stacklevel())
    if not learnt_too_little(*read) and never_turned_up(*read):   # a flat sweep's floor runs to its end too
        warnings.warn(f'{TURN_UP_WARNING} by the last lr of the sweep (end_lr={end_lr:g}) in '
                      f'{"either sweep" if len(read) > 1 else "the sweep"}: its edge and max bound are where the sweep '
                      "stopped, not where the loss turns up, and the 'fit' suggestion read from them may lie below "
                      f'the best max_lr. To see the edge, sweep further: lr_find(end_lr={10 * end_lr:g})',
                      UserWarning, stacklevel=user_stacklevel())
    if far_above_unit_scale(result.input_rms) and not is_normalized(learn.model):   # see suggest.INPUT_RMS_LIMIT
        warnings.warn(f"{INPUT_SCALE_WARNING} is {result.input_rms:.3g} (the first batch), far above the unit scale "
                      'layers are initialized for: standardize them (each feature minus its training mean, over its '
                      'standard deviation; pixels scaled to [0, 1]). On inputs this large a net without normalization '
                      'layers starts with outputs far too large, and a long fit can collapse at lrs its range test '
                      'reads as safe (on an MLP, and under SGD, RMSprop or Adagrad on a CNN, the suggestion is held '
                      'below a limit set by their scale; on other nets it is not)', UserWarning,
                      stacklevel=user_stacklevel())
    if far_above_unit_scale(result.target_rms):   # a regression's targets: the loss, and each step, start large
        warnings.warn(f'{TARGET_SCALE_WARNING} is {result.target_rms:.3g} (the first batch), far above unit scale: '
                      'for a regression, standardize them (minus their training mean, over their standard '
                      'deviation) and map the predictions back. A loss that starts this large makes steps far too '
                      "large for the sweep's lrs to carry over (an MLP under SGD on scikit-learn's diabetes table, "
                      'targets 25-346: R^2 about 0 at the suggestion; standardized, 0.42-0.51)', UserWarning,
                      stacklevel=user_stacklevel())
    if hold_check and suggest == 'fit' and checks_hold(learn.model):
        t0 = time.perf_counter()
        mom = finder.mom   # the probes run at the momentum the sweep assumed of the fit
        moms = ONE_CYCLE_MOMS if mom == 'auto' else None if mom is None else (mom, mom)
        # a climb may undo the 'fit' rule's lowering for the fit's length, no more; an Adam-like optimizer's
        # suggestion is not climbed from (its edge is the sweep's own, and on attention nets, whose edge the rule
        # lowers, climbs cost two encoders' seeds 15.0 and 5.3 points against 2.0 and 1.8 won on two others); nor is
        # a regression's under SGD, which the rule did not lower (the ceiling, capped at a spike, sat at or below it).
        # SGD on attention nets climbs (thirty-fifth session, on the fifteen such nets of bench/suggest_unseen.py:
        # on the eight the question was read on, climbs cost four seeds 3.6, 4.9, 6.2 and 1.7 points and won 2.1 and
        # 5.5 on two; on the nine made before it was decided, they won 3.3, 5.6 and 3.3 on a slow-learning
        # character transformer's three seeds and cost a least-token transformer 2.4 on one, five more within 0.1:
        # +1.1 summed, no case for a rule either way)
        unlowered = None if is_adaptive(learn.opt) or _keeps_regression_edge(learn) else \
            geometric_mean(*(_unlowered_fit(r, learn.model) for r in read))
        lr, held = check_held(learn, result.suggestion, result.fit_steps, moms=moms, ceiling=unlowered,
                              long_end=long_end_ratio(learn.model),
                              leave_plateau=has_attention(learn.model), limit=result.limit)
        if held:
            result.held, result.suggestion = held, lr
            result.suggestions['fit'] = lr
            result.cost['train_steps'] += held['steps']
            result.cost['seconds'] += time.perf_counter() - t0
            if getattr(learn, 'progress', False): print(held_line(held, lr), flush=True)
    for cb in learn.cbs:   # loggers attached to the learner (TensorBoardLogger...) keep the plot
        if callable(getattr(type(cb), 'log_lr_find', None)): cb.log_lr_find(result)
    return result
