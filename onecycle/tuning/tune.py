"""tune(): Smith's procedure in one call, sized to the fit it tunes for.

1. LR range test -> the 'fit' suggestion S for a 1cycle fit of the planned length (``n_epoch``):
   the sweep's edge, for SGD-like optimizers moved towards a first spike far beyond it and, on models
   without normalization layers (or with attention, whatever the optimizer), lowered for the time the fit
   spends near its peak (see ``suggest_for_fit``).
   With a budget of ten sweeps or more, a second sweep on another data order: one sweep's edge moves
   by a rung or two of its lr ladder (20-40%) with the data order, and every later stage is anchored
   on S. S is the geometric mean of the two, as lr_find's default reads them, so that an Adam-like
   optimizer's S is the one-liner's (on the 44 problems of bench/recommend.py and bench/suggest_unseen.py
   --against-grid, tune's targets met on 23, against 20 when Adam-like optimizers took the lower of the two
   too; their gaps to the grid's best summed 4.8 points higher). For SGD on a normalized model, the lower
   one: a spike or an early edge in either sweep is evidence of instability there, the trials can still
   climb, and the geometric mean put a BatchNorm CNN's fit past its edge on one seed (90.4% against 96.4%).
   SGD on a net with attention is read as on a plain model here and below, its LayerNorms notwithstanding, as
   the one-liner's rule reads it.
   On a plain model (or one with attention), whatever the optimizer, S is then checked at a held peak
   wherever lr_find's one-liner checks it (``hold_check.checks_hold``) and as it does
   (``hold_check.check_held``: 100-step probes, more steps below a batch of 32, at S and S/2, halving S while
   its probe ends more than 3x above the one below or falls less than half as far), when the probes leave the
   trials half the budget; without lr_find's long probes, which look again where a probe spiked, unless they leave
   it half as well, so an S whose probe spiked and ended above its half's is halved instead (more than 1.05x above
   at full length, ``hold_check.HOLD_SPIKED_ABOVE``):
   plain CNNs collapse at an S that tune's short trials, which leave their peak at once, cannot tell apart
   (a max-pooling CNN on the digits: fits at 91.3 / 98.0 / 90.2% before, 96.5 / 97.5 / 97.3% with it).
2. (When asked) batch size: short runs at each candidate batch size, the lr rescaled with it.
3. Short 1cycle trials, each a compressed copy of the planned fit (never longer than it): the same cyclical
   momentum, the same weight decay, the same peak lr. (A compressed cycle spends fewer steps near its peak, which
   lets a run survive a higher lr, but also warms up in fewer steps, which does not; raising the
   trial's lr by the exposure law that lowers S made the trials of the larger candidates fail to
   learn where the full fit at that lr did best.) One coordinate at a time, each stage's candidates
   compared with the stage before's winner:
   lr (S/sqrt2, S, sqrt2 S; when an end of that bracket beats S clearly, up to two more steps past it by a
   factor 2 each; for an Adam-like optimizer none above the weights' typical size, the one-liner's limit too
   (``suggest.step_limit``); for SGD on a plain model only S/sqrt2 and S, and the walk only downwards: its short
   trials cannot see the cliff that its long fit meets just above the best lr. When S wins there, hold
   probes look above it: each warms up to S, 2S, 4S and holds the peak as long again, and a doubling is
   taken while its validation loss ends within HOLD_TOL of the lr below's, having fallen from the start at least
   (1 - HOLD_TOL) as far (backed off by sqrt2 where the
   next doubling collapsed); a lifted lr keeps the default weight decay, which the probes ran with), momentum
   ((0.95, 0.85), (0.99, 0.9), (0.9, 0.8), each with SGD at the lr that keeps the peak step lr / (1 - momentum) of the
   default: a higher momentum is otherwise a larger lr in disguise, which the lr stage has tried already),
   weight decay (Smith's candidates for the model's depth and optimizer, in decoupled units, the default the
   middle one, for an Adam-like optimizer the one-liner's decay where it is among them; except for an
   Adam-like optimizer on a normalized model, only the default and those above it: the lr stage ran with
   the default, and a lower decay narrows the lrs a long fit survives; for SGD on a normalized model the
   middle one alone, as its scale-invariant weights step by lr x wd together). A replicate of the first trial
   with another data order measures the seed-to-seed noise of a score; a candidate replaces the default of
   its stage (S, (0.95, 0.85), the default weight decay) only when it beats it by more than that noise (twice
   it for momentum, whose effect on a long fit's stability a short trial misjudges). A trial's score is its
   validation loss at the end of its cycle, annealed, as the fit will end. When the default's trials end within
   MIN_TRIAL_DROP of where they started, no trial can tell settings apart: the stages are skipped and
   the fit gets the one-liner's settings (S from a sweep three times longer where both sweeps learnt too little,
   as lr_find's default reads it, and under an SGD-like optimizer checked at a held peak where the hold check
   runs, as lr_find's is), except that where the rest of the budget holds two trials at least twice as
   long, S and S/4 run that long and the better one is the max_lr.
4. A check: a pick other than the default setting runs once more on the replicate's data order and
   must beat the default there too (a paired comparison); otherwise the default setting is kept. A
   stage picks the best of several noisy scores, which flatters the winner; a second draw does not.
The summary says for each choice how far its runner-up was, in units of that noise.

Every trial starts from an exact copy of the learner's state; afterwards the learner is exactly as it
was (weights, optimizer, weight decay, loaders, recorder, RNG...: see ``onecycle.core.snapshot``).
``fit_one_cycle(learn, n_epoch, **result.fit_kwargs)`` then trains with the findings.
"""
from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass, field

from ..callbacks.progress import StageProgress, fmt_lr
from ..core.checks import (check_bool, check_candidates, check_choice, check_int, check_mom_candidate,
                           check_positive)
from ..core.data import check_loader
from ..core.hyper import (fallback_wd, fit_wd, has_attention, has_hyper, is_adaptive, is_normalized, scale_lr,
                          steps_with_gradient)
from ..core.rng import reseed
from ..core.snapshot import TrainingState, preserved
from ..distributed.ddp import effective_batch_size
from ..schedules.scheduler import ONE_CYCLE_MOMS
from .batch_size import noise_scale, with_batch_size
from .hold_check import (HOLD_BEHIND, HOLD_PROBES, HOLD_SPIKED_ABOVE, HOLD_STEPS, check_held, checks_hold,
                         falls_behind, held_line, hold_check_steps, long_end_ratio, spiked_below)
from .range_test import (EXTEND_FACTOR, INPUT_SCALE_WARNING, TARGET_SCALE_WARNING, TURN_UP_WARNING,
                         learnt_too_little, planned_fit_steps, sweep_drop)
from .search import SearchResult, branch_trials, default_wds, format_candidate, pick_best, run_trial
from .short_runs import REPLICATE_SEED, fixed_valid_batches, steps_for_samples
from .suggest import geometric_mean, pick_held
from .tune_report import plot_tune, range_test_line, search_line, skipped_line

__all__ = ['tune', 'TuneResult', 'DEFAULT_MOMS']

DEFAULT_MOMS = (ONE_CYCLE_MOMS, (0.99, 0.9), (0.9, 0.8))   # the first, fit_one_cycle's, is the one to beat
# lr candidates around the range test's 'fit' suggestion: half a factor 2 either side. The suggestion is
# already within about that of the best lr; trials any wider apart turn a noisy pick into a big miss where
# accuracy changes quickly with the lr
LR_FACTORS = (2 ** -0.5, 2 ** 0.5)
# SGD on a plain model tries nothing above S: a short trial does not see the cliff its long fit meets just above
# the best lr (a GRU's 72-step trials put sqrt2 S first by 10x the noise; its 444-step fit there scored 51.6-86.6%
# against 98% at S), and S already allows for the fit's length
LR_FACTORS_DOWN = (2 ** -0.5,)
# When the best lr candidate is an end of that bracket and beats the suggestion clearly, the stage walks on
# past it by this factor, up to LR_WALK_STEPS more trials (set aside in a budget of 1000 steps or more): down
# for any optimizer, up where the bracket goes up (long Adam fits stood 1.4-2 M on four of five bench problems).
LR_WALK_FACTOR = 2.
LR_WALK_STEPS = 2
# SGD on a plain model, when S wins its bracket: 'hold probes', each the fit's warm-up compressed into half a
# probe and then its peak lr held for the other half (HOLD_TRIALS trials' steps in all), at S, 2S and 4S. A
# doubling is taken while its validation loss at the end stays within HOLD_TOL of the lr below's. A short 1cycle
# trial leaves its peak at once and anneals away an instability; a fit near its peak for hundreds of steps does
# not, and neither does a probe: on 12 SGD problems at S and 2S, nets whose long fits collapse at 2S (a GRU, an
# LSTM, tanh and ReLU MLPs, two CNNs) ended their 2S probes 1.4-60x above their S probes, nets whose long fits
# did better at 2S (MLPs on MNIST-1D, a 3-class problem, noisy moons) within 0.9-1.14x. A doubling must also have
# fallen from the start at least (1 - HOLD_TOL) as far as the lr below did: where probes are short (28 steps at
# batch 16) their losses stay high, and 15% of the level is most of what they learnt (a wide 1-D CNN's walk took 4S
# at losses 1.87, 1.93, 2.12 from a start of 2.31, its fit 35.3%, 90.9% at 2S; a CNN with label smoothing took a
# 4S whose probe ended above its start). Of the 182 seeds (92 problems) whose tune ran hold probes, among the SGD
# problems of the three benches (504 seeds), this moved 24 walks, none of bench/recommend.py or
# bench/suggest_regression.py: tune's accuracy +67.5 points summed, +11.9 without that CNN; four seeds lower, by
# 0.8-5.7 (an MNIST-1D MLP under Nesterov 78.4 -> 72.7% at 2S)
HOLD_TRIALS = 2
HOLD_DOUBLINGS = 2
HOLD_TOL = 0.15
# ... and a doubling that held is backed off by sqrt2 when the one above it ended above HOLD_COLLAPSE x its score
HOLD_COLLAPSE = 1.5
# the default budget: the planned fit's steps, at least this many, whatever the batch (issue 10's limit on tuning's
# cost). Counted in samples (1000 of 32: 4000 at batch 8), tune at batch 8 spent 3000-4000 steps on an 810-step fit
MIN_BUDGET = 1000
RANGE_STEPS = 100               # the range test, as lr_find's default (steps of 32 samples, more at a smaller
                                # batch, at most a quarter of the budget): its two sweeps are lr_find's two (the
                                # same data orders), so that tune's S is the one-liner's (the lower one for SGD on
                                # a normalized model), where the budget holds TWO_SWEEPS of them (below a batch of
                                # 32 the default budget holds one)
TWO_SWEEPS = 10                 # a budget of this many range tests or more runs a second one on another data order
# ... and of the two, one that learnt too little to read (range_test.learnt_too_little) is left out where its
# suggestion lies more than this factor from the other's: a data order moves a sweep's edge by up to 3x on noisy
# problems (lr_find's docstring), and a flat sweep of a classifier stayed within 5.6x of a readable one (30 of 545
# seeds of both benches had one flat sweep of two); on bench/suggest_regression.py's 84 seeds it leaves out two, a token
# GRU's and a token LSTM's under SGD, whose flat sweeps read 7e-6 and 5e-8 against 0.11 and 0.20: their fits' test MSE
# 0.73 -> 0.0027 and 0.91 -> 0.0083, tune's regression targets met on 11 of 17 SGD problems against 9
# (`bench/suggest_regression.py --tune`). At 4x it left out the lower sweep of two classifiers' seeds too (4.4x and
# 5.6x apart), whose fits then lost 1.6 and 0.4 points
FLAT_SWEEP_SPREAD = 10.
MIN_TRIAL_STEPS = 10
# trials whose validation loss ended within this fraction of where it started learnt too little to tell
# settings apart: the lr, momentum and weight-decay stages are skipped, and S is read as the one-liner reads it,
# from a sweep EXTEND_FACTOR times longer where both sweeps learnt too little (`learnt_too_little`). An embedding
# MLP learning (x0 + x1) mod 3 (AdamW): its 100-step sweeps fell 1-3% and put S 10x too low, its 73-step trials
# fell 1%, and the lr stage followed their noise down; the fits scored 36-47%, where the one-liner's 300-step
# sweep gave 100%
MIN_TRIAL_DROP = 0.1
# ... and then, where what is left of the budget holds two trials at least LONG_TRIAL_RATIO times as long (at most the
# fit's length), S and S * LONG_TRIAL_FACTOR run that long and the lower score is taken. A net that sits on a
# plateau before it learns (small transformers) gives a sweep that reads where the loss blows up, no more: a pre-norm
# encoder on digit patches under Adam put S at 0.09-0.10, fits there 85.2 / 72.8%, at S/4 95.2 / 91.4%; with these
# trials (200 steps of a 285-step fit) tune took S/4 on both seeds, 89.2 / 89.8%. On the 14 other runs whose trials
# learnt too little (ten nets: two more encoders, SGD MLPs, CNNs and a GRU at batches of 8 and 16) S won every time:
# S/4's loss ended 1.1-3.8x S's, and 1.002x on one seed of a position task where neither had left its plateau
# (bench/suggest_unseen.py --tune-only). Four pre-norm encoders made after it: four runs of 12 took the longer
# trials, one took S/4 (16x16 digit patches, 90.8 -> 96.2%), three kept S
LONG_TRIAL_RATIO = 2
LONG_TRIAL_FACTOR = 0.25
# a momentum other than the default must win by twice the noise: a short trial misjudges what momentum
# does to a long fit's stability near its peak (the effective step lr/(1-mom) acts for hundreds of steps)
MOM_CLEAR = 2.
NOISE_FLOOR = 0.005             # the noise of a score is taken to be at least this fraction of it


@dataclass
class TuneResult:
    """What tune found and the evidence. ``fit_kwargs`` goes straight to ``fit_one_cycle``; a tuned
    batch size is in ``batch_size`` (``with_batch_size(learn.dls.train, result.batch_size)``).
    ``noise`` is the seed-to-seed spread of a trial's score (two runs of one setting, two data
    orders); ``confidence`` maps each searched name to its runner-up's score margin in units of it.
    ``lr_hold`` holds the hold probes above S (SGD on a plain model, when S won its bracket); ``lr_long`` the
    longer trials at S and S/4 where the short ones learnt too little; ``held`` the
    hold check below it (where lr_find runs it, ``hold_check.checks_hold``; see ``hold_check.check_held``)
    and ``held_lr`` what it left of the sweeps' suggestion (of the longer sweep's where S was read again, under an
    SGD-like optimizer, when the budget held the probes). ``unread`` names the sweep ('first' or 'replicate')
    that learnt too little to read where the other did not, reading more than FLAT_SWEEP_SPREAD from it: S is then
    the other's. ``sweeps_read_again``: how many shorter sweeps (1 or 2; 0: none) ``lr_find``, a longer one, was read
    in place of, because they learnt too little."""
    max_lr: float
    moms: tuple | None
    wd: float | None
    batch_size: int | None
    noise_scale: float | None
    lr_find: object = None
    lr_find_replicate: object = None
    lr_search: SearchResult | None = None
    lr_hold: SearchResult | None = None
    lr_long: SearchResult | None = None
    bs_search: SearchResult | None = None
    mom_search: SearchResult | None = None
    wd_search: SearchResult | None = None
    steps: int = 0
    seconds: float = 0.
    budget: int | None = None
    time_budget: float | None = None
    skipped: list = field(default_factory=list)
    fit_steps: int | None = None
    trial_steps: int | None = None
    noise: float | None = None
    confidence: dict = field(default_factory=dict)
    walks_up: bool = False
    adaptive: bool = False
    has_momentum: bool = True
    held: dict = field(default_factory=dict)
    held_lr: float | None = None
    unread: str | None = None
    sweeps_read_again: int = 0

    @property
    def fit_kwargs(self) -> dict:
        out = {'max_lr': self.max_lr}
        if self.moms is not None: out['moms'] = self.moms
        elif not self.has_momentum: out['moms'] = None   # fit_one_cycle would cycle a momentum it does not have
        if self.wd is not None: out['wd'] = self.wd
        return out

    @property
    def suggestion(self) -> float:
        """S, what the lr stage starts from: the range test's 'fit' suggestion. Of two sweeps', the
        geometric mean, as lr_find's default; the lower one for SGD on a normalized model
        (``takes_lower_sweep``); the one that learnt enough to read where the other did not and reads far from it
        (``unread``). After a hold check (``held``), what it kept of that."""
        if self.lr_find is None: return float('nan')
        if self.held_lr is not None: return self.held_lr
        if self.lr_find_replicate is None or self.unread == 'replicate': return self.lr_find.suggestion
        if self.unread == 'first': return self.lr_find_replicate.suggestion
        if self.takes_lower_sweep: return min(self.lr_find.suggestion, self.lr_find_replicate.suggestion)
        return geometric_mean(self.lr_find.suggestion, self.lr_find_replicate.suggestion)

    @property
    def swept_suggestion(self) -> float:
        "S as the sweeps read it, before a hold check moved it (``suggestion`` is what the check left of it)."
        return self.held['unchecked'] if self.held else self.suggestion

    def _how_s_was_read(self) -> str:
        if self.unread == 'first': return "the other sweep's alone: the first learnt too little to read"
        if self.unread == 'replicate': return "the first sweep's alone: the other learnt too little to read"
        return ('the lower' if self.takes_lower_sweep else 'geometric mean') + ' of the two fit suggestions'

    @property
    def takes_lower_sweep(self) -> bool:
        """An SGD-like optimizer on a normalized model (SGD itself only on one without attention; RMSprop and its
        kin with attention too, see tune): S is the lower of the two sweeps' suggestions. Its lr stage walks up from
        S, and a spike or an early edge in either sweep is evidence of a cliff that a long SGD fit meets; an Adam-like
        optimizer's long fit has none so close, and its S is the one-liner's."""
        return self.walks_up and not self.adaptive

    @property
    def searches(self) -> list:
        found = (self.lr_search, self.lr_hold, self.lr_long, self.bs_search, self.mom_search, self.wd_search)
        return [s for s in found if s is not None]

    def summary(self) -> str:
        lines = [f'max_lr={self.max_lr:.3g}  moms={format_candidate(self.moms)}  wd={format_candidate(self.wd)}  '
                 f'batch_size={self.batch_size}'
                 + (f'  noise scale g={self.noise_scale:.3g}' if self.noise_scale is not None else ''),
                 f'tuning: {self.steps} optimizer steps' + (f' of {self.budget}' if self.budget else '')
                 + (f' for a fit of {self.fit_steps}' if self.fit_steps else '')
                 + (f' (trials of {self.trial_steps})' if self.trial_steps else '')
                 + f', {self.seconds:.1f}s' + (f' of {self.time_budget:.0f}s' if self.time_budget else '')]
        if self.lr_find is not None:
            lines.append('range test: ' + ', '.join(f'{k}={v:.3g}' for k, v in self.lr_find.suggestions.items())
                         + (f' ({len(self.lr_find.train_lrs)} steps: the shorter '
                            + ('sweeps' if self.sweeps_read_again > 1 else 'sweep') + ' learnt too little to read)'
                            if self.lr_find.extended else ''))
        if self.lr_find_replicate is not None:
            lines.append('range test, another data order: '
                         + ', '.join(f'{k}={v:.3g}' for k, v in self.lr_find_replicate.suggestions.items())
                         + f'; S = {self.swept_suggestion:.3g} (' + self._how_s_was_read() + ')')
        if self.held: lines.append(held_line(self.held, self.held_lr))
        if self.noise is not None:
            lines.append(f'seed-to-seed noise of a score: {self.noise:.4g}')
        for name, c in self.confidence.items(): lines.append(f'{name}: {c["text"]}')
        for s in self.searches: lines += ['', s.table()]
        if self.skipped: lines.append('skipped: ' + ', '.join(self.skipped))
        return '\n'.join(lines)

    __str__ = summary

    def plot(self):
        "The range test and each search's validation curves, one panel each; returns the Figure."
        return plot_tune(self)


def _n_samples(learn):
    try: return len(learn.dls.train.dataset)
    except (TypeError, AttributeError): return None


def _confidence(name, cands, scores, picked, default, noise) -> dict:
    "How sure a pick is: the runner-up's score margin over the best, in units of the noise."
    order = sorted(range(len(cands)), key=lambda i: scores[i])
    finite = [i for i in order if math.isfinite(scores[i])]
    if len(finite) < 2:
        return {'margin': float('inf'), 'ratio': float('inf'),
                'text': f'{format_candidate(picked)} (every other candidate diverged)'}
    best, second = finite[0], finite[1]
    margin = scores[second] - scores[best]
    ratio = margin / noise if noise > 0 else (float('inf') if margin > 0 else 0.)
    word = 'clear' if ratio >= 2 else ('weak' if ratio >= 1 else 'a toss-up')
    kept = ' (kept the default: no candidate beat it clearly enough)' \
        if picked == default and cands[best] != default else ''
    return {'margin': margin, 'ratio': ratio,
            'text': f'{format_candidate(picked)}{kept}; best {format_candidate(cands[best])} leads runner-up '
                    f'{format_candidate(cands[second])} by {margin:.4g} = {ratio:.2g}x the noise ({word})'}


def _momentum_lr_scale(mom, default, adaptive=False) -> float:
    """The lr factor that gives a (high, low) cyclical momentum `mom` the peak step of `default`. An SGD
    step with momentum m moves lr / (1 - m) per unit gradient once the velocity has built up, so at
    the peak (where the momentum is at its low) a candidate with a higher low momentum is a larger lr
    in disguise: compared at the same lr, the momentum stage would re-run the lr stage. Scaled by
    (1 - low) / (1 - default low), it compares what momentum itself does (how long it averages the
    gradients). Adam-like optimizers (`adaptive`) average the gradient without amplifying it: 1."""
    if adaptive: return 1.
    return (1 - mom[1]) / (1 - default[1])


def _pick(cands, trials, default, margin):
    "The lowest score, unless the default is within `margin` of it: a pick must beat the default clearly."
    best = pick_best(cands, trials)
    i_def = cands.index(default)
    if best != default and trials[i_def].score <= trials[cands.index(best)].score + margin: return default
    return best


def range_test_plan(budget: int, step_samples: int) -> tuple[int, int]:
    "tune's range tests for `budget`: (steps per sweep, sweeps): RANGE_STEPS of 32 samples, at most a quarter of it."
    n_rt = min(steps_for_samples(RANGE_STEPS, step_samples), budget // 4)
    return n_rt, (2 if budget >= TWO_SWEEPS * n_rt else 1)


# S read again from a longer sweep is checked at S and S/2, and at S/4 where S/2's probe spiked and what is left of the
# budget holds a third probe of the same length (as the one-liner's check walks to three); where the lowest probe still
# spiked, the probes the check on the first sweeps' S ran below it (from the same starting state, the same length) are
# read with them, and one of those is taken where its loss fell at least BEFORE_LEARNT of its start: it left the plateau
# the check's own probes sat on (`_Tuning.read_with_before`). The check on S read again was held to two probes; a third
# within budget moves little (the longer sweep leaves it no room), and the first check's probes cost nothing. Without
# the threshold the lowest such probe was taken where none learnt (lrs of 3e-7 to 0.004 read from a noise sweep; a
# 16x16 CNN at batch 48 80.4 -> 9.6%). On the 645 seeds of both benches under SGD-like optimizers (forty-eighth
# session, tune and its fit) 125 read S again; 5 moved, +68.0 points summed (a 16x16 CNN at batch 128 13.6 -> 82.2%,
# its first check's 0.23 fell 0.12 nats where the probes at 0.92 and 0.46 sat at chance); on seeds 3-5 of their 47
# problems, 3 of 141 moved, +140.4 (two 16x16 nets from chance to 85-94%, one 78.6 -> 57.4%); on seeds 6-8, after the
# threshold was set, 7 of 141 moved, +31.0 (3 up, 2 down: a 16x16 CNN 93.4 -> 75.6%), on seeds 9-11 4 of 141, +79.4
# (3 up, none down: a 16x16 CNN 8.6 -> 84.8%). Plateau nets land at chance or
# near their best by a factor of two in the lr, so single seeds swing both ways. Measured and left: a longer sweep
# shortened to leave room for three probes (-122.9 over 70 seeds: it moves S itself), and the first check on flat
# sweeps stopped at two probes to keep its third's steps for the second (-231.9 over 33)
BEFORE_LEARNT = 0.02


def long_probe_budget(n_long: int, step_samples: int) -> int:
    """The smallest budget whose range tests leave the hold check's `n_long` steps of long probes within its first
    half (where `_Tuning.hold_check` runs them), read from `range_test_plan` so that the two cannot disagree."""
    budget = 2 * n_long                     # the probes alone fill the first half
    while True:                             # at most 4 x a full sweep's steps on (two sweeps at full length)
        n_rt, n_sweeps = range_test_plan(budget, step_samples)
        if n_rt * n_sweeps + n_long <= budget // 2: return budget
        budget += 1


class _Tuning:
    """What one tune() call's stages share: the learner and the result they fill, the state every trial
    starts from, the budget, and the trials run so far (each setting once). Each stage is a method; tune()
    calls them in order."""

    def __init__(self, learn, res, start, say, t0):
        self.learn, self.res, self.start, self.say, self.t0 = learn, res, start, say, t0
        self.t = None          # a trial's optimizer steps
        self.batches = None    # the fixed validation batches every trial is scored on
        self.noise = 0.        # the seed-to-seed noise of a score (the default setting, twice)
        self.later = 0         # trials the stages after lr plan on: momentum, weight decay, the check
        self.longer = False    # the trials learnt too little, and the lr is compared again in longer ones
        self.done = {}         # (lr, mom, wd, data order, steps) -> Trial
        self.held_before = {}  # the hold check's probes on the sweeps a sweep read again replaced

    def over_time(self) -> bool:
        tb = self.res.time_budget
        return tb is not None and time.perf_counter() - self.t0 > tb

    def fits(self, n) -> bool:
        "`n` more trials fit in the budget (steps and seconds)."
        return self.res.steps + n * self.t <= self.res.budget and not self.over_time()

    # 1. range test, then the suggestion for the planned fit
    def range_tests(self, n_epoch, step_samples) -> int:
        "Sweeps as `range_test_plan` sizes them; returns a sweep's steps."
        learn, res = self.learn, self.res
        n_rt, n_sweeps = range_test_plan(res.budget, step_samples)
        two = n_sweeps == 2
        self.say.begin('range test', n_rt * n_sweeps)
        res.lr_find = learn.lr_find(num_it=n_rt, n_epoch=n_epoch, hold_check=False)
        res.steps += res.lr_find.cost.get('train_steps', n_rt)
        line = range_test_line(res.lr_find)
        if not two and not res.walks_up and learnt_too_little(res.lr_find):
            line = self.read_lone_sweep_again(n_rt, n_epoch)
        if two:   # the same sweep on another data order (lr_find puts the learner back as it was)
            reseed(REPLICATE_SEED, learn.dls.train)
            with warnings.catch_warnings():   # the first sweep said it already
                for said in (INPUT_SCALE_WARNING, TARGET_SCALE_WARNING, TURN_UP_WARNING):
                    warnings.filterwarnings('ignore', message=re.escape(said))
                res.lr_find_replicate = learn.lr_find(num_it=n_rt, n_epoch=n_epoch, hold_check=False)
            self.start.restore()   # the data order and RNG the trials start from
            res.steps += res.lr_find_replicate.cost.get('train_steps', n_rt)
            # a sweep that learnt too little and whose suggestion lies more than FLAT_SWEEP_SPREAD from the other's,
            # which learnt, read noise (a regression's single batches top its starting loss long before the net
            # learns): it is not averaged in. A GRU summing tokens under SGD read 7.2e-6 on one data order and 0.115
            # on the other, S = 9e-4, and its fit ended at a test MSE of 0.73 against 0.0024 at the one-liner's S
            # (lr_find's default reads such a first sweep again, three times longer, which tune's budget of 1000
            # steps does not hold with the rest)
            flat = (learnt_too_little(res.lr_find), learnt_too_little(res.lr_find_replicate))
            a, b = res.lr_find.suggestion, res.lr_find_replicate.suggestion
            if flat[0] != flat[1] and max(a, b) > FLAT_SWEEP_SPREAD * min(a, b):
                res.unread = 'first' if flat[0] else 'replicate'
            line = (line.rsplit('; ', 1)[0] + f'; another data order: suggestion '
                    f'{fmt_lr(res.lr_find_replicate.suggestion)}, S = {fmt_lr(res.suggestion)}; {res.steps} steps')
        self.say.end(line)
        return n_rt

    # A lone sweep (below a batch of 32 the default budget holds one) that learnt too little to read, under SGD on a
    # plain model, is read again at once, EXTEND_FACTOR times longer (at most what is left of the budget), as lr_find's
    # one-liner reads its own, and the hold check then takes its two probes on what is left (`check_read_again`; the
    # trials get the rest, often nothing). Until the forty-third session tune kept such a sweep's S wherever its trials
    # learnt: the lr stage looks no further down than S/sqrt2, and trials of a few dozen steps favour the larger lr,
    # so noise read from a flat sweep went to the fit. On the 17 SGD problems of both benches whose tune ran one sweep
    # that learnt too little on some seed (bench/suggest_unseen.py --tune-only; 51 seeds at batches of 8, 16 and 24)
    # +670.7 points summed, 23 seeds up, 12 down: a 6-layer MLP on the digits at batch 16 15.4 -> 70.6%, LeNet at
    # batch 16 34.6 -> 89.1% and under Nesterov at batch 8 29.1 -> 79.6%, the MNIST-1D CNN at batch 16 31.7 -> 74.5%,
    # spirals at batch 8 51.7 -> 77.9%; lower: the MNIST-1D CNN at batch 8 by 9.2 on its mean, an LSTM by 7.9 (a seed
    # read 1.19 from its longer sweep, 75.0% against 96.0%), a GRU by 6.0. The one-liner, whose hold check has long
    # probes too, summed 397.7 points more on them: its checks take 2-4x tune's budget at these batches. On six plain
    # nets at batch 16 made after it (the batch-64 plateau nets of bench/suggest_unseen.py at a batch where the default
    # budget holds one sweep) +175.9 summed over 18 seeds, 5 up and 5 down: a 6-layer MLP on a 10-class table 35.2 ->
    # 78.6%, a 16x16 CNN 37.0 -> 64.5%; a dilated 1-D CNN on MNIST-1D 78.4 -> 69.1% (-21.4, -16.4, +9.7), a 1-D CNN with
    # global average pooling 67.8 -> 65.0%; two CNNs with global average pooling on the digits as before (20-30%).
    # Not where the lr stage walks both ways (Adam-like optimizers, normalized nets): two AdamW problems with such a
    # sweep lost 15.5 points summed over four seeds with it
    def read_lone_sweep_again(self, n_rt, n_epoch) -> str:
        "The first sweep read again, longer, where it learnt too little and no second one runs; returns its line."
        res = self.res
        n_long = self.longer_sweep_steps(n_rt)
        if n_long <= n_rt or self.over_time(): return range_test_line(res.lr_find)
        drop = sweep_drop(res.lr_find)
        self.sweep_again(n_long, n_epoch)
        return range_test_line(res.lr_find) + f', read again after a {n_rt}-step sweep whose loss fell {drop:.0%}'

    # A sweep read again where tune's trials learnt too little (trials_learnt_too_little) is shortened, while it stays
    # longer than the first sweep, so that the hold check's two probes at its S fit in what is left of the budget: at
    # three times the first it often left too few steps, and S read from a plateau net's flat sweep went to the fit
    # unchecked. On the 102 SGD problems of bench/suggest_unseen.py whose one-liner sweeps fell less than 20% (plateau
    # nets; forty-sixth session, seeds 0-2) tune read S again unchecked on 40 seeds: tune and its fit +251.1 points
    # summed, 15 up, 9 down (four 16x16 CNNs and an MLP from chance to 86-98%; down: a 16x16 CNN at batch 32 89.8 ->
    # 11.0%, whose shorter sweep read S from noise, two CNNs with global average pooling and an argmax encoder 37-67
    # points); on seeds 3-5 of the 21 problems among them, 34 such seeds, +340.9, 18 up, 6 down (LeNet and 16x16 CNNs
    # from chance to 93-96%; a 16x16 CNN -67.4, the argmax encoder -56.6). Plateau nets land at chance or near their
    # best by a factor of two in the lr, so single seeds swing both ways.
    def longer_sweep_steps(self, n_rt, check_batch_size=None) -> int:
        """A sweep read again: EXTEND_FACTOR times the first one's `n_rt` steps, or what is left of the budget, if less.
        Given `check_batch_size` (the batch of the hold check that will look at its S, see check_read_again), where
        that check runs: shortened, while it stays longer than the first, to leave the check its probes (note above)."""
        res = self.res
        n = min(n_rt * EXTEND_FACTOR, res.budget - res.steps)
        if check_batch_size is None: return n
        room = res.budget - res.steps - self.read_again_check_steps(check_batch_size)
        return min(n, room) if room > n_rt else n

    def sweep_again(self, n_long, n_epoch):
        """S read from one sweep of `n_long` steps from the starting state, as lr_find reads one that learnt too little:
        it takes the place of the sweeps before it and of what the hold check made of them."""
        res = self.res
        res.sweeps_read_again = 1 if res.lr_find_replicate is None else 2
        self.held_before = res.held   # the check on the sweeps it replaces: check_read_again reads its probes too
        self.start.restore()
        res.lr_find = self.learn.lr_find(num_it=n_long, n_epoch=n_epoch, hold_check=False)
        res.lr_find_replicate, res.held, res.held_lr, res.unread = None, {}, None, None   # S: this sweep's
        res.lr_find.extended = True
        res.steps += res.lr_find.cost.get('train_steps', n_long)

    # SGD on a plain model (or one with attention): S checked where the fit meets its peak, as lr_find's
    # one-liner checks it (the trials, 1cycles of a few dozen steps, leave the peak before a net sharpens past
    # it), where the probes leave at least half the budget to the trials. Below a batch of 32 samples the probes
    # take as many samples as there, more steps, and the default budget does not grow with them: they may take
    # the rest of it, shortened to fit (never below HOLD_STEPS; check_held then holds them to a ratio cut in
    # proportion), and the trials what is left. An MLP on the digits at batch 8, 1000 steps: without the probes
    # 97.6 / 86.0 / 81.2%, with them 97.0 / 97.6 / 98.2%; on 24 problems at batches of 8 and 16 +4.2 points summed
    # (bench/suggest_unseen.py --tune-only); the cut ratio +28 more on 29 (two deep MLPs' seeds 47 -> 95% and
    # 50 -> 87%, none lost more than 0.4). Not where the sweep learnt
    # too little to read: its S is no better than noise, and the trials read it again from a longer sweep. Where a
    # lone sweep was read again already (read_lone_sweep_again), its S is checked as one the trials read again is
    def hold_check(self, moms, batch_size):
        learn, res = self.learn, self.res
        if not checks_hold(learn.model) or self.over_time(): return
        if res.lr_find.extended:
            self.say.begin('hold check', hold_check_steps(res.fit_steps, max_probes=2, batch_size=batch_size))
            checked = self.check_read_again(moms, batch_size)
            self.say.end(held_line(res.held, res.held_lr) if checked else 'hold check: not run on the sweep read again')
            return
        n_held, probe = hold_check_steps(res.fit_steps, batch_size=batch_size), None
        n_short = n_held
        if res.steps + n_held > res.budget // 2:
            left = (res.budget - res.steps) // HOLD_PROBES
            # shortened to what is left only where a small batch made them longer than at 32 samples a step
            if n_held == hold_check_steps(res.fit_steps) or learnt_too_little(res.lr_find) or left < HOLD_STEPS:
                return
            probe, n_held = left, HOLD_PROBES * left
        # the long probes too (hold_check.HOLD_LONG), where they leave half the budget as well: with the default
        # budget (one fit's steps) only for fits of about 2200 steps or more at batch 32; the trials need the rest
        n_long = hold_check_steps(res.fit_steps, batch_size=batch_size, long_probes=True)
        long_probes = probe is None and res.steps + n_long <= res.budget // 2
        self.say.begin('hold check', n_long if long_probes else n_held)
        # without the long probes, an S whose probe spiked and ended above its half's is halved: cut short, above it
        # at all, at full length clearly above it (hold_check.HOLD_SPIKED_ABOVE)
        held = self.check_s_held(moms, probe_steps=probe, long_probes=long_probes, long_end=long_end_ratio(learn.model),
                                 halve_spiked=not long_probes, spiked_above=HOLD_SPIKED_ABOVE)
        held_lr = res.held_lr
        line = held_line(held, held_lr) if held else 'hold check: the fit is too short to probe'
        behind, below = (falls_behind(held, held_lr), spiked_below(held, held_lr)) if held else (False, False)
        if not long_probes and n_long > n_short and (behind or below):
            # the long probes would have looked again, but this budget does not hold them: say the smallest that would
            need = long_probe_budget(n_long, batch_size)
            seen = (f'S fell less than {HOLD_BEHIND:.2g}x as far as S/2' if behind else
                    'the probe at the lr taken spiked, or one below it')
            res.skipped.append(f"the hold check's long probes ({seen}, where a long fit may stall past its edge; "
                               f'a budget of {need} runs them)')
            line += f'; long probes: skipped (a budget of {need} runs them)'
        self.say.end(line)

    def check_s_held(self, moms, **kw) -> dict:
        """S checked at a held peak from the starting state (``check_held`` with `kw`): what the probes saw, and the
        lr they left, go to ``res.held`` and ``res.held_lr`` where any ran, their steps to the budget's count.
        Returns ``held`` (empty: none ran)."""
        res = self.res
        self.start.restore()
        held_lr, held = check_held(self.learn, res.suggestion, res.fit_steps, moms=moms, **kw)
        if held: res.held_lr, res.held = held_lr, held
        res.steps += held.get('steps', 0)
        return held

    # 2. batch size, compared at the suggestion rescaled for each (short 1cycle runs)
    def batch_size_stage(self, batch_sizes, lr, lr_rule, valid_batches) -> float:
        learn, res, t = self.learn, self.res, self.t
        if self.over_time() or res.steps + t * len(batch_sizes) > res.budget:
            res.skipped.append('batch size'); self.say.end(skipped_line('batch size'))
            return lr
        dl0, base_bs = learn.dls.train, res.batch_size
        trials_lr = {b: scale_lr(lr, b, base_bs, lr_rule) for b in batch_sizes}
        def use_batch_size(b): learn.dls.train = with_batch_size(dl0, b) if b != base_bs else dl0
        ts = time.perf_counter()
        self.say.begin('batch size', t * len(batch_sizes))
        with preserved(learn) as bs_start:
            trials = branch_trials(learn, 'bs', batch_sizes, lambda b: dict(lr=trials_lr[b]), t, None,
                                   valid_batches, bs_start, None, before_trial=use_batch_size)
        best = pick_best(batch_sizes, trials)
        res.bs_search = SearchResult('bs', batch_sizes, trials, best, sum(x.n_steps for x in trials),
                                     time.perf_counter() - ts, {'lr_rule': lr_rule})
        res.steps += res.bs_search.steps
        res.batch_size, lr = best, trials_lr[best]
        res.max_lr = lr
        self.say.end(search_line(res.bs_search))
        if best != base_bs: learn.dls.train = with_batch_size(dl0, best)
        self.start = TrainingState(learn)   # the next stages start from the learner with this batch size
        return lr

    def trial(self, lr, mom, wd, label, order=None, steps=None):
        """A short 1cycle from the start at this setting (on data order `order`, else the learner's; `steps` long,
        else a trial's), run once."""
        n = steps or self.t
        key = (lr, mom, wd, order, n)
        if key not in self.done:
            self.start.restore()
            if order is not None: reseed(order, self.learn.dls.train)   # the replicate that measures the noise
            self.done[key] = run_trial(self.learn, n, lr, mom=mom, wd=wd, schedule='one_cycle',
                                       label=label, _batches=self.batches, score_on='end')
            self.res.steps += self.done[key].n_steps
        return self.done[key]

    def noise_trials(self, lr, mom, wd):
        """The default setting, twice, on two data orders: the seed-to-seed noise of a score. Returns both
        trials and the replicate's data order."""
        res = self.res
        self.say.begin('noise', 2 * self.t)
        before = res.steps
        a = self.trial(lr, mom, wd, f'lr={lr:.3g}')
        order = 1 + 7919 * (len(self.done) + 1)
        b = self.trial(lr, mom, wd, f'lr={lr:.3g} (replicate)', order=order)
        spread = abs(a.score - b.score) if math.isfinite(a.score) and math.isfinite(b.score) else 0.
        # floored: two runs can agree closely by chance, and a pick must not hang on a hair
        res.noise = self.noise = max(spread, NOISE_FLOOR * abs(a.score if math.isfinite(a.score) else 0.))
        self.say.end(f'noise: the default setting twice, on two data orders; scores differ by {spread:.4g}; '
                     f'{res.steps - before} steps')
        return a, b, order

    # S read again here is checked at a held peak as the one-liner checks its own (S and S/2, S/4 where the budget holds
    # it, see BEFORE_LEARNT: no climb, no long probes), under an SGD-like optimizer on a model the hold check runs on,
    # where what is left of the budget holds them, on steps the longer trials would have taken (they run on what is
    # left after). Of every SGD
    # problem of both benches (465 seeds, torchvision's nets aside), 52 come here (none of
    # bench/suggest_regression.py's 51; fortieth session, bench/suggest_unseen.py --tune-only): the
    # check ran on 18 (on the rest the longer sweep left too little for its probes), halved S on four, and moved five
    # fits, +117.8 points summed: a 2x2-patch encoder with dropout read 0.248 from its 300-step sweep, fit 50.0%,
    # halved 85.2%; a residual CNN at batch 16 11.2 -> 93.8%; a spiral MLP +0.2; two 16x16 CNNs, one whose longer
    # trials had taken S/4, at chance either way (-0.2, 0.0).
    # Checks that took steps from the trials of runs that never came here were tried (thirty-sixth session, on
    # twenty problems whose sweeps learnt too little) and left out: the check put off until after the noise
    # trials, its steps set aside from theirs (LeNet on 16x16 digits +20 points summed, the rest -155: shorter trials
    # lifted an MNIST-1D CNN's lr into a collapse on two seeds); the first check held to two probes so that the
    # budget holds a second (-77 on two seeds); S read again held at or below the lr the first check kept (-13)
    def trials_learnt_too_little(self, a, b, searched, n_rt, n_epoch, moms, batch_size) -> bool:
        """Trials that learnt too little to tell settings apart, where every candidate would win or lose by
        noise (a trial that ended well above its start was unstable, which the lr stage is there to find):
        the stages are skipped, and S is read from a sweep EXTEND_FACTOR times longer where both sweeps
        learnt too little too, as lr_find's one-liner reads it (or from what is left of the budget, where that is
        less but still longer than the first: a batch of 8's 380-step sweep put S at 1.8e-8 on spirals, whose fit
        scored 35.6%; read from 1003 steps, 99.7%), shortened where that leaves the check room, and checked at a held
        peak (see the notes above this method and above longer_sweep_steps)."""
        res = self.res
        fell = [(x.start_loss - x.score) / x.start_loss for x in (a, b) if math.isfinite(x.score) and x.start_loss > 0]
        if not (fell and all(abs(f) < MIN_TRIAL_DROP for f in fell)): return False
        sweeps = [r for r in (res.lr_find, res.lr_find_replicate) if r is not None]
        drops = [sweep_drop(r) for r in sweeps]
        n_long = self.longer_sweep_steps(n_rt, check_batch_size=batch_size)
        extend = learnt_too_little(*sweeps) and n_long > n_rt and not self.over_time() and not res.lr_find.extended
        planned = res.steps + (n_long if extend else 0)
        before, read = res.steps, ''
        if extend:
            self.sweep_again(n_long, n_epoch)
            read = f"; the sweeps' loss fell {max(drops):.0%} at most, so S is read from one of {n_long} steps"
            if self.check_read_again(moms, batch_size):
                planned = res.steps   # (the sweep's steps as taken: it may have stopped early)
                verdict = 'kept' if res.held_lr == res.held['unchecked'] else f'moved to {fmt_lr(res.held_lr)}'
                read += f', then checked at a held peak ({verdict})'
        # the lr once more in longer trials (see long_trials), where what the sweep leaves of the budget holds them
        self.longer = 'lr' in searched and self.long_trial_steps(planned) > 0
        kept = [n for n in searched if not (self.longer and n == 'lr')]
        res.skipped += [f'{n} (trials learnt too little)' for n in kept]
        res.confidence['trials'] = {'margin': float('nan'), 'ratio': float('nan'), 'text': (
            f"the default setting's validation loss fell {max(fell):.1%} in a trial of {self.t} steps, too "
            f"little to tell settings apart: {', '.join(kept)} keep the one-liner's"
            + ("; the lr is compared again in longer trials (below)" if self.longer else '') + read)}
        self.say.end(f'trials: {res.confidence["trials"]["text"]}; {res.steps - before} steps')
        return True

    def check_read_again(self, moms, batch_size) -> int:
        """S read again from a longer sweep, checked at a held peak (probes at S and S/2, each shortened to what is
        left of the budget where that is less, never below HOLD_STEPS, and S/4 where S/2's spiked and the budget holds
        a third; no long probes, so S is halved where its probe spiked and ended above S/2's; then read_with_before),
        under an SGD-like optimizer on a model the hold check runs on; returns the probes' steps (0: not checked)."""
        res = self.res
        need = self.read_again_check_steps(batch_size)
        if not need or self.over_time(): return 0
        probe, left = None, res.budget - res.steps
        if res.steps + need > res.budget:
            probe = left // 2
            if probe < HOLD_STEPS: return 0
        n = probe or need // 2
        probes = HOLD_PROBES if left >= HOLD_PROBES * n else 2
        held = self.check_s_held(moms, max_probes=probes, probe_steps=probe, long_probes=False, halve_spiked=True)
        if held: self.read_with_before(held)
        return held.get('steps', 0)

    def read_with_before(self, held):
        """Where the lowest of `held`'s probes spiked (the walk down would go on) and the check on the sweeps read
        again ran probes of the same length below it, from the same starting state: those are read with them
        (``held['before']``: their lrs), and the one pick_held picks from all of them is taken where it is one of
        those and its loss fell at least BEFORE_LEARNT of its start (see the note above BEFORE_LEARNT)."""
        res, before = self.res, self.held_before
        if not before or before.get('probe_steps') != held['probe_steps'] or not held['spiked'][-1]: return
        low = min(held['lrs'])
        extra = [i for i in range(len(before['lrs'])) if before['lrs'][i] < low]
        if not extra: return
        for k in ('lrs', 'ends', 'spiked', 'starts'): held[k] = held[k] + [before[k][i] for i in extra]
        held['before'] = [before['lrs'][i] for i in extra]
        picked = pick_held(held['lrs'], held['ends'], held['ratio'], starts=held['starts'])
        i = held['lrs'].index(picked)
        if picked < low and held['starts'][i] - held['ends'][i] >= BEFORE_LEARNT * held['starts'][i]:
            res.held_lr = picked

    def read_again_check_steps(self, batch_size) -> int:
        """The steps check_read_again's two full-length probes take at `batch_size`; 0 where it does not check (an
        Adam-like optimizer, a model the hold check does not run on, a fit too short to probe)."""
        if is_adaptive(self.learn.opt) or not checks_hold(self.learn.model): return 0
        return hold_check_steps(self.res.fit_steps, max_probes=2, batch_size=batch_size)

    def long_trial_steps(self, spent) -> int:
        "Each longer trial's steps with `spent` steps of the budget gone: the rest halved, at most the fit; 0: too few."
        n = min(self.res.fit_steps, (self.res.budget - spent) // 2)
        return n if n >= LONG_TRIAL_RATIO * self.t and not self.over_time() else 0

    def long_trials(self, lr, mom, wd) -> float:
        """Trials too short to learn: S and S * LONG_TRIAL_FACTOR once more, each as long as the rest of the budget
        allows (at most the fit), the lower score taken."""
        res = self.res
        if not self.longer: return lr
        n = self.long_trial_steps(res.steps)
        if not n:   # planned, but the time budget ran out on the way
            res.skipped.append('lr (longer trials: out of time)')
            return lr
        ts, before = time.perf_counter(), res.steps
        self.say.begin('long trials', 2 * n)
        cands = [lr, lr * LONG_TRIAL_FACTOR]   # a tie keeps S
        trials = [self.trial(c, mom, wd, f'lr={c:.3g} long', steps=n) for c in cands]
        try: picked = pick_best(cands, trials)
        except RuntimeError: picked = lr
        res.lr_long = SearchResult('lr long', cands, trials, picked, res.steps - before, time.perf_counter() - ts,
                                   {'steps': n})
        res.confidence['lr long'] = {'margin': float('nan'), 'ratio': float('nan'), 'text': (
            f'{fmt_lr(picked)} (the trials learnt too little: S and S x {LONG_TRIAL_FACTOR:g} again in trials of '
            f'{n} steps, scores ' + ', '.join(f'{fmt_lr(c)}: {x.score:.4g}' for c, x in zip(cands, trials)) + ')')}
        self.say.end(search_line(res.lr_long))
        return picked

    def stage(self, name, cands, default, make, clear=1., walk=None):
        """One coordinate's candidates, each a trial (`make`); the pick must beat `default` by `clear` x the
        noise. `walk`, given, proposes one more candidate past a winning end, while the budget lasts."""
        res = self.res
        ts, before = time.perf_counter(), res.steps
        self.say.begin(name, self.t * len(cands))
        cands = list(cands)
        trials = [make(c) for c in cands]

        def pick():
            try: return _pick(cands, trials, default, clear * self.noise)
            except RuntimeError: return default   # every trial diverged (the default too): keep it
        picked = pick()
        # a pick at an end of the candidates: one more step past it, while it keeps winning
        for _ in range(LR_WALK_STEPS if walk is not None else 0):
            nxt = walk(cands, picked, default)
            if nxt is None or not self.fits(1 + self.later): break   # never at the cost of a later stage
            cands.append(nxt); trials.append(make(nxt))
            picked = pick()
        order = sorted(range(len(cands)), key=lambda i: cands[i]) if walk is not None else range(len(cands))
        cands, trials = [cands[i] for i in order], [trials[i] for i in order]
        res.confidence[name] = _confidence(name, cands, [x.score for x in trials], picked, default, self.noise)
        # steps spent here: a setting an earlier stage ran already (the default) is not run again
        found = SearchResult(name, list(cands), trials, picked, res.steps - before, time.perf_counter() - ts)
        self.say.end(search_line(found))
        return picked, found

    # 3. lr: the suggestion, it / sqrt(2) and (where walks_up) x sqrt(2); past an end that wins, a walk on.
    # An Adam-like optimizer's candidates stop at the weights' typical size, as its suggestion does (see
    # suggest.step_limit): a short trial, like the sweep, leaves the peak before the steps, each about the
    # lr in size, have undone the weights (a bidirectional LSTM's trials walked to 2.7x it: the fit 57.6%,
    # 90-91% at it); any optimizer's, hold probes too, stop at lr_find's limit for inputs far above unit scale
    def below_limit(self, lr) -> float:
        "`lr`, at most the limit of the sweeps S was read from (two: their geometric mean, as lr_find's is)."
        limits = [r.limit for r in (self.res.lr_find, self.res.lr_find_replicate) if r is not None and r.limit]
        return min(lr, geometric_mean(*limits)) if limits else lr

    def lr_walk(self, cands, picked, default):
        if picked == default: return None           # nothing beat the suggestion clearly
        if picked == min(cands): return picked / LR_WALK_FACTOR
        if picked == max(cands) and self.res.walks_up:
            nxt = self.below_limit(picked * LR_WALK_FACTOR)
            return nxt if nxt > picked else None
        return None

    # 3b. SGD on a plain model, S the best of its bracket: above S only where the fit's peak, held, holds, and
    # where the hold check (when it ran) saw S's probe end below its half's. Where it ended no lower, the edge is
    # near, and trials this short do not see it (a deep MLP at batch 8: its probe at S ended 1.4x above S/2's, the
    # trials lifted it to 2S and the fit scored 52.5%, 83.7% at S). Of 52 SGD problems of both benches that run
    # the check, this moved 8: +23.7 points summed (an MNIST-1D MLP at batch 16, made after it, 9.8 -> 48.2% on
    # one seed; two lost 0.5); of 15 under RMSprop, Adagrad, Adafactor, bare SGD and Nesterov, two by -0.2. A
    # probe at S that spiked but ended lower does not stop them, though lr_find's check climbs only from one that
    # did not spike: a noisy 5-class MLP's seed whose probe did so scored 73.7% at 4S, 68.9% at S
    # (tests/tuning/test_tune.py), while three seeds of a 10-class MLP at batch 8 would have gained 3 points each
    def hold_probes(self, lr, mom, wd) -> float:
        learn, res = self.learn, self.res
        n = HOLD_TRIALS * self.t
        if res.held and not res.held['ends'][0] < res.held['ends'][1]:
            res.confidence['lr held'] = {'margin': float('nan'), 'ratio': float('nan'), 'text': (
                f"{fmt_lr(lr)} (nothing above it tried: the hold check's probe at {fmt_lr(res.held['unchecked'])} "
                f"ended no lower than the one at {fmt_lr(res.held['lrs'][1])})")}
            self.say.end(f"lr held: {res.confidence['lr held']['text']}; 0 steps")
            return lr
        if not self.fits(2 * HOLD_TRIALS + self.later): return lr
        ts, before = time.perf_counter(), res.steps

        def probe(c):
            self.start.restore()
            p = run_trial(learn, n, c, mom=mom, wd=wd, schedule='hold', pct_start=0.5,
                          label=f'lr={c:.3g} held', _batches=self.batches, score_on='tail')
            res.steps += p.n_steps
            return p
        self.say.begin('lr held at the peak', (HOLD_DOUBLINGS + 1) * n)
        def within(i, tol):   # probe i ended within `tol` (a fraction) of the one below's loss, not diverged
            a, b = trials[i - 1].score, trials[i].score
            return math.isfinite(b) and b <= a + tol * abs(a)
        def held(i):   # ... and fell from the start at least (1 - HOLD_TOL) as far as it (where that one fell)
            below, fall = [x.start_loss - x.score for x in (trials[i - 1], trials[i])]
            return within(i, HOLD_TOL) and (below <= 0 or fall >= (1 - HOLD_TOL) * below)
        cands, trials = [lr], [probe(lr)]
        for k in range(HOLD_DOUBLINGS):
            if k and not self.fits(HOLD_TRIALS + self.later): break
            nxt = self.below_limit(2 * cands[-1])
            if nxt <= cands[-1]: break   # at lr_find's limit already (inputs far above unit scale)
            cands.append(nxt); trials.append(probe(nxt))
            if not held(len(trials) - 1): break
        i = len(cands) - 1 if held(len(cands) - 1) else len(cands) - 2   # the highest held
        picked, held_steps = cands[i], n - n // 2
        # the doubling above the pick collapsed: the cliff is close above it, a probe this short does not
        # place it well, and a fit there is a coin toss (an MNIST-1D CNN's fits at 2S: 94.7% and 8.9%)
        back = 0 < i < len(cands) - 1 and not within(i + 1, HOLD_COLLAPSE - 1)
        extra = {'steps_held': held_steps}
        if back:
            extra.update(rung=picked, refined_by=f'backed off by sqrt2: the doubling above it ended above '
                                                 f'{HOLD_COLLAPSE:g}x its loss')
            picked = picked / math.sqrt(2)
        res.lr_hold = SearchResult('lr held', cands, trials, picked, res.steps - before,
                                   time.perf_counter() - ts, extra)
        scores = ', '.join(f'{fmt_lr(c)}: {x.score:.4g}' for c, x in zip(cands, trials))
        res.confidence['lr held'] = {'margin': float('nan'), 'ratio': float('nan'), 'text': (
            f'{fmt_lr(picked)} (each lr held {held_steps} steps at its peak; a doubling is taken while its '
            f'validation loss stays within {HOLD_TOL:.0%} of the one below\'s and falls from the start at least '
            f'{1 - HOLD_TOL:.0%} as far: {scores}'
            + (f'; backed off by sqrt2 from {fmt_lr(cands[i])}: the doubling above collapsed' if back else '')
            + ')')}
        self.say.end(search_line(res.lr_hold))
        return picked

    # 6. the pick, once more on the replicate's data order: it must beat the default there too
    def check(self, setting, default_setting, replicate, order):
        res = self.res
        if setting == default_setting or not self.fits(1):
            self.say.end('check: ' + ('the default setting was kept, nothing to check' if setting == default_setting
                                      else 'skipped (out of budget)') + '; 0 steps')
            return setting
        self.say.begin('check', self.t)
        before = res.steps
        c = self.trial(*setting, 'check (replicate order)', order=order)
        kept = not c.score > replicate.score   # both diverged: the stages' evidence stands
        gain = replicate.score - c.score
        res.confidence['check'] = {'margin': gain, 'ratio': gain / self.noise if self.noise > 0 else float('inf'),
                                   'kept': kept, 'text': (
            f'the pick scores {c.score:.4g} against the default setting\'s {replicate.score:.4g} on a second '
            f'data order: ' + ('kept' if kept else 'not reproduced, the default setting is kept'))}
        self.say.end(f'check: {res.confidence["check"]["text"]}; {res.steps - before} steps')
        return setting if kept else default_setting


def tune(learn, budget=None, time_budget=None, moms=DEFAULT_MOMS, wds=None, batch_sizes=None, lr_rule='sqrt',
         search_moms=True, search_wd=True, valid_batches=None, *, n_epoch=None, search_lr=True) -> TuneResult:
    """Find max_lr, momentum and weight decay for ``fit_one_cycle(learn, n_epoch, ...)`` with a
    range test and a few short trials, spending at most `budget` optimizer steps (and, given
    `time_budget`, about that many seconds).

    Args:
        n_epoch: the planned fit's epochs (None: the longer of 10 epochs and 2000 steps, as lr_find).
        budget: optimizer steps all tuning runs together may take (default: the planned fit's steps, at
            least 1000). Below a batch of 32 the range test and the hold probes take as many samples as at 32,
            more steps, so fewer trials fit: at batch 8 one 250-step sweep and 250-step probes may take it all.
            Under SGD on a plain model a lone sweep that learnt too little is read again at once, three times longer,
            and its S checked at a held peak, as lr_find reads and checks its own; the trials get what is left.
            For SGD on a plain model, where S's hold probe fell behind S/2's and the budget does not hold the
            hold check's long probes, ``skipped`` (and ``summary()``) names the budget that runs them.
        time_budget: seconds; stages that would start after it are skipped (defaults used instead).
        moms: cyclical (high, low) momentum candidates (constant values work too); the first is the
            default, which another must beat by more than the noise. An optimizer without momentum
            (Adagrad, Rprop...) skips that stage, and ``fit_kwargs`` then holds ``moms=None``.
        wds: weight-decay candidates; the middle one is the default. None: Smith's, by model depth and
            optimizer (see ``default_wds``): the middle one and those above it, all of them for an
            Adam-like optimizer on a normalized model, the middle one alone for SGD on one. An Adam-like
            optimizer's default is the one-liners' decay where that is a candidate (0.01 on a plain CNN, a
            normalized model or one with attention: ``core.hyper.fallback_wd``).
        search_moms, search_wd: run those stages; when off, the trials use momentum (0.95, 0.85) and the
            weight decay ``fit_one_cycle`` will (see ``core.hyper.fit_wd``).
        batch_sizes: candidate batch sizes to compare (None: keep the loader's); the lr is rescaled by
            `lr_rule` ('linear' or 'sqrt') for each.
        search_lr: compare the range test's suggestion with it / sqrt(2) and (except for SGD on a plain
            model, which runs hold probes at 2x and 4x instead) x sqrt(2), and walk on past an end that wins
            (else take it as is).
        valid_batches: measure the validation loss on the first this many validation batches.
    Returns a :class:`TuneResult`; the learner is left exactly as it was.
    """
    check_int('n_epoch', n_epoch, min_value=1, allow_none=True)
    check_int('budget', budget, min_value=200, allow_none=True)
    check_positive('time_budget', time_budget, allow_none=True)
    check_choice('lr_rule', lr_rule, ('linear', 'sqrt'))
    check_int('valid_batches', valid_batches, min_value=1, allow_none=True)
    check_bool('search_moms', search_moms); check_bool('search_wd', search_wd); check_bool('search_lr', search_lr)
    check_loader(learn.dls.train, 'dls.train')
    check_loader(learn.dls.valid, 'dls.valid')
    has_mom = has_hyper(learn.opt.param_groups[0], 'mom')
    adaptive = is_adaptive(learn.opt)
    # the lr stage walks up past a winning top candidate only where long fits keep the sweep's edge (Adam-like
    # optimizers, normalized models); for SGD on other models a short trial does not see the cliff above. SGD on a
    # net with attention (an optimizer whose step is the lr times the gradient: ``core.hyper.steps_with_gradient``) is
    # read as on a plain one, its LayerNorms notwithstanding, as the one-liner reads it (the 'fit' rule lowers its
    # edge, see suggest.exposure_exponent): S the two sweeps' geometric mean, not the lower, nothing above S in short
    # trials, the hold probes, decays from the default up. On eight such nets of bench/suggest_unseen.py
    # (thirty-fifth session; tune and its fit, 3 seeds) +47.3 points summed, 8 seeds up and 8 down (a transformer
    # tagger whose two sweeps read 0.016 and 0.019 on a plateau, the lower taken: 52.5 -> 92.4%; the largest loss
    # 3.9); on six made before it was set (18 seeds) +9.4, 5 up and 3 down (a least-token transformer 84.8 -> 94.8%,
    # another seed -2.1). Not for RMSprop and its kin, whose step is about the lr whatever the gradient: an RMSprop
    # encoder on a task learnt all at once after a plateau lost a seed 100 -> 60.1% (another +5.3, one the same)
    normalized = is_normalized(learn.model) and not (has_attention(learn.model) and steps_with_gradient(learn.opt))
    walks_up = adaptive or normalized
    # an optimizer without momentum (Adagrad, Rprop...): nothing to search, and the fit must leave it alone
    no_mom = search_moms and not has_mom
    if no_mom and moms is not DEFAULT_MOMS:   # candidates the caller named cannot be tried
        raise ValueError(f'moms: the optimizer {type(learn.opt).__name__} has no momentum to search; '
                         'leave moms at its default or pass search_moms=False')
    if no_mom: search_moms = False
    if search_moms:
        moms = check_candidates('moms', moms, lambda m: check_mom_candidate('moms', m))
        moms = [tuple(m) if isinstance(m, (list, tuple)) else m for m in moms]
    if wds is not None: wds = check_candidates('wds', wds, lambda v: check_positive('wds', v, allow_zero=True))
    base_bs = getattr(learn.dls.train, 'batch_size', None)
    if batch_sizes is not None:
        batch_sizes = sorted(set(check_candidates('batch_sizes', batch_sizes,
                                                  lambda b: check_int('batch_sizes', b, min_value=1))))
        if base_bs is None: raise ValueError('batch_sizes needs dls.train to be a DataLoader built with batch_size')

    t0 = time.perf_counter()
    fit_steps = planned_fit_steps(learn, n_epoch)
    step_samples = effective_batch_size(learn)   # range tests count steps of 32 samples
    if budget is None: budget = max(fit_steps, MIN_BUDGET)
    res = TuneResult(max_lr=float('nan'), moms=None, wd=None, batch_size=base_bs, noise_scale=None, budget=budget,
                     time_budget=time_budget, fit_steps=fit_steps, walks_up=walks_up, adaptive=adaptive,
                     has_momentum=has_mom)
    if no_mom: res.skipped.append('momentum (the optimizer has none)')
    wd_cands = sorted(wds if wds is not None else default_wds(learn.model, learn.opt))
    default_wd = wd_cands[(len(wd_cands) - 1) // 2]
    # Nothing below the default, the decay the lr stage runs with: a lower one narrows the lrs a long fit survives,
    # which short trials do not show. SGD: a GRU's pick of 0.92 at wd 0.01, then 0.001: 51.6%. AdamW on plain
    # shallow nets (default 0.1): a GRU on the digits at lr 0.056 took 0.01 by 4x the noise; its fit 95.8%, 98.4%
    # without 0.01;
    # on bench/recommend.py's grids a step or two above the best lr, 0.01 against 0.1: the GRU at 0.064 92.8 /
    # 98.5%, an MNIST-1D MLP 62.2 / 71.7%, a noisy-label MLP at 0.128 25.6 / 78.6% (an MNIST-1D CNN there 83.1 /
    # 76.2%). Not for an Adam-like optimizer on a normalized model, whose scale-invariant weights take larger steps
    # under a larger decay (a pre-norm transformer's grid: best at 0-0.01; at its best lr 0.1 loses 2.2 points)
    # An Adam-like optimizer starts from the decay its one-liner fits with (``core.hyper.fallback_wd``) where that is
    # a candidate: the middle one, 0.1, on plain MLPs and recurrent nets; 0.01, the lowest, on plain CNNs (then
    # looking up: on nine such CNNs (bench/suggest_unseen.py --tune-only, 3 seeds) +9.8 points summed against
    # starting from 0.1, a dilated 1-D CNN at batch 16 89.6 -> 94.2%, the largest loss 0.23) and on normalized nets
    # and nets with attention (then all three): when no trial tells the decays apart, tune's finding is the
    # one-liner's setting. With 0.1 kept as the default there unless 0.01 beat it by the noise, bench/recommend.py's
    # transformer sat 0.8 points below its best cell, 0.7 below the one-liner. On the 32 such problems of both benches
    # (Adam, AdamW, NAdam, RAdam, Adamax; 95 seeds, tune and its fit as `bench/suggest_unseen.py --tune-only` runs
    # them): +24 points summed, 36 seeds up, 27 down, by problem 13 up, 14 down, 5 the same. The largest moves are
    # encoders on lookup and counting tasks that land up to 52 points apart at the same lr; bench/suggest_unseen.py's
    # six pre-norm SeqEncoders fell on five (0.2-4.4 on the mean; the sixth the same), the TinyTransformers of both
    # benches (pre-norm too) rose on five and fell on three (an Adamax one +2.6; bench/recommend.py's 94.67 -> 95.00%,
    # its target met). On four made after it (BatchNorm and LayerNorm MLPs under binary cross-entropy, a BatchNorm CNN
    # under label smoothing, a post-norm row encoder): -2.1 summed, 2 seeds up, 7 down (the largest -1.7, a seed that
    # then took wd 1 at a higher lr). The twenty-fourth session had left this out on ten attention nets (+2.5 on six,
    # -1.2 on the four made after it; those four -0.6 here). A wash by problem: taken for consistency with the
    # one-liner, not for a measured gain
    one_liners_wd = fallback_wd(learn.model, learn.opt)
    one_liners = next((w for w in wd_cands if math.isclose(w, one_liners_wd)), None)
    if wds is None and adaptive and one_liners is not None: default_wd = one_liners
    if wds is None and not (adaptive and normalized): wd_cands = [w for w in wd_cands if w >= default_wd]
    # SGD on a normalized model: the default only. Its scale-invariant weights take steps that grow with lr x wd,
    # so a larger decay is a larger lr in disguise, which short trials reward and the lr stage tried already
    # (on 18 SGD problems, six seeds: 0.1 picked on 6 of 42 normalized runs, each below the runs at 0.01)
    wd_with_lr = wds is None and not adaptive and normalized
    if wd_with_lr: wd_cands = [default_wd]
    # the lr candidates around S (see LR_FACTORS_DOWN)
    lr_factors = LR_FACTORS if walks_up else LR_FACTORS_DOWN
    default_mom = (moms[0] if search_moms else ONE_CYCLE_MOMS if has_mom else None)
    if isinstance(default_mom, (int, float)): default_mom = (default_mom, default_mom)

    # one line per stage (a bar during it where a person watches), when the learner shows progress
    say = StageProgress('tune', enabled=getattr(learn, 'progress', False))
    with preserved(learn) as start, learn.added_cbs([say]):   # also puts back a loader swapped for another batch size
        run = _Tuning(learn, res, start, say, t0)
        n_rt = run.range_tests(n_epoch, step_samples)
        run.hold_check(default_mom, step_samples)
        lr = res.max_lr = res.suggestion
        # the walk's trials are set aside from a budget of the default's size; a smaller one walks on what is left
        walk_steps = LR_WALK_STEPS if budget >= MIN_BUDGET else 0
        # SGD on a plain model: the slots are the hold probes' above S (and, at a new lr, the momentum stage's
        # default run again), or the walk's below it (never both)
        if not walks_up and search_lr and walk_steps: walk_steps = (HOLD_DOUBLINGS + 1) * HOLD_TRIALS + 1
        n_trials = (len(lr_factors) + walk_steps if search_lr else 0) + (len(moms) - 1 if search_moms else 0) \
            + (len(wd_cands) - 1 if search_wd else 0) + 3 + (len(batch_sizes) if batch_sizes else 0)
        # a trial's steps: never more than the fit's
        run.t = res.trial_steps = max(MIN_TRIAL_STEPS, min(fit_steps, (budget - res.steps) // n_trials))
        if batch_sizes is not None: lr = run.batch_size_stage(batch_sizes, lr, lr_rule, valid_batches)
        run.batches = fixed_valid_batches(learn, valid_batches)

        mom, wd = default_mom, (default_wd if search_wd else fit_wd(learn))   # else the final fit's
        searched = [n for n, on in (('lr', search_lr), ('momentum', search_moms), ('weight decay', search_wd)) if on]
        if searched and not run.fits(2):   # (below a batch of 32 the hold probes may have taken it all)
            why = 'out of time' if run.over_time() else 'out of budget'
            res.skipped += [f'{n} ({why})' for n in searched]
        elif searched:   # (nothing searched: no trial to run, S is the finding)
            default_setting = (lr, mom, wd)
            a, b, order = run.noise_trials(lr, mom, wd)
            if run.trials_learnt_too_little(a, b, searched, n_rt, n_epoch, default_mom, step_samples):
                lr = run.long_trials(res.suggestion, mom, fit_wd(learn))   # S, unless the lr is compared again
                default_setting = (lr, mom, wd)   # nothing for the check to test
                search_lr = search_moms = search_wd = False
            run.later = (len(moms) - 1 if search_moms else 0) + (len(wd_cands) - 1 if search_wd else 0) + 1
            # 3. lr (see _Tuning.below_limit, lr_walk and hold_probes)
            if search_lr and run.fits(len(lr_factors)):
                cands = sorted({run.below_limit(c) for c in [lr] + [lr * f for f in lr_factors]} | {lr})
                lr, res.lr_search = run.stage('lr', cands, lr, lambda c: run.trial(c, mom, wd, f'lr={c:.3g}'),
                                              walk=run.lr_walk)
                if not walks_up and lr == max(cands): lr = run.hold_probes(lr, mom, wd)
            elif search_lr: res.skipped.append('lr (out of budget)'); say.end(skipped_line('lr'))
            # 4. momentum: cyclical, as the fit will use it, at the same effective step at the peak
            if search_moms and run.fits(len(moms) - 1):
                cands = [tuple(m) if isinstance(m, tuple) else (m, m) for m in moms]
                scale = {c: _momentum_lr_scale(c, default_mom, adaptive) for c in cands}
                mom, res.mom_search = run.stage('mom', cands, default_mom,
                                                lambda c: run.trial(lr * scale[c], c, wd, f'mom={c}'), clear=MOM_CLEAR)
                lr = lr * scale[mom]
            elif search_moms: res.skipped.append('momentum'); say.end(skipped_line('momentum'))
            # 5. weight decay, with the lr and cyclical momentum of the fit
            # an lr the hold probes lifted held its peak with the default decay, not a larger one (short trials
            # at that lr reward a larger decay: on an MNIST-1D MLP, 0.1 at 0.7 scored 52.9% against 74-78%)
            lifted = res.lr_hold is not None and res.lr_hold.best != res.lr_hold.candidates[0]
            if lifted and wds is None: wd_cands = [wd]
            if search_wd and len(wd_cands) == 1:   # nothing to compare: the decay the other stages ran with
                why = ('; SGD on a normalized model steps by lr x wd, which the lr stage tried' if wd_with_lr else
                       '; the hold probes that lifted the lr ran with it' if lifted else '')
                res.confidence['wd'] = {'margin': float('nan'), 'ratio': float('nan'),
                                        'text': f'{format_candidate(wd)} (the only candidate{why})'}
                say.end(f'wd: {res.confidence["wd"]["text"]}; 0 steps')
            elif search_wd and run.fits(len(wd_cands) - 1):
                wd, res.wd_search = run.stage('wd', wd_cands, default_wd, lambda c: run.trial(lr, mom, c, f'wd={c:g}'))
            elif search_wd: res.skipped.append('weight decay'); say.end(skipped_line('weight decay'))
            lr, mom, wd = run.check((lr, mom, wd), default_setting, b, order)
        res.max_lr = lr
        res.moms = mom if (search_moms and res.mom_search is not None) else None
        res.wd = wd if (search_wd and (res.wd_search is not None or len(wd_cands) == 1)) else None

    n = _n_samples(learn)
    bs = res.batch_size
    if n and bs: res.noise_scale = noise_scale(res.max_lr, n, min(bs, n)) if bs < n else 0.
    res.seconds = time.perf_counter() - t0
    say.end(f'done: {", ".join(f"{k}={format_candidate(v)}" for k, v in res.fit_kwargs.items())}; '
            f'{res.steps} of {budget} optimizer steps, {res.seconds:.1f}s')
    return res
