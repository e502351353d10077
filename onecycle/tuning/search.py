"""Short-run searches for the hyper-parameters the range test cannot give: momentum and weight decay
(Smith 2018, sections 4.3 and 4.4), and the learning-rate probes that locate the edge of stability.

Every search runs a few short trials and compares them on the validation loss of a fixed validation
subset, measured every few steps. Each trial starts from the learner's weights (or, for weight
decay, from one shared snapshot) and afterwards the learner is exactly as it was, both through
:class:`~onecycle.core.snapshot.TrainingState`: weights, optimizer (object, state, hyper-parameters),
weight decay, counters, loaders, recorder history and RNG states are restored bitwise.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from torch import nn

from ..core.callback import Callback, CancelFitException, CancelValidateException
from ..core.checks import (check_candidates, check_choice, check_int, check_lr, check_mom_candidate, check_positive,
                           check_range)
from ..core.hyper import WEIGHT_LAYER_TYPES, has_hyper, is_adaptive, lr_range
from ..core.data import check_loader
from ..core.snapshot import TrainingState, preserved
from ..schedules.functions import Constant, Cosine, Warmup, one_cycle
from ..schedules.scheduler import ParamScheduler
from .short_runs import StepLoss, divergence_limit, epochs_for_steps, fixed_valid_batches, subset_loss

__all__ = ['DivergedSearch', 'SearchResult', 'Trial', 'run_trial', 'branch_trials', 'pick_best', 'format_candidate',
           'lr_search', 'edge_search', 'log_parabola_vertex', 'momentum_search', 'wd_search', 'default_wds',
           'is_adaptive', 'is_deep']

SHALLOW_WDS = (1e-2, 1e-3, 1e-4)
DEEP_WDS = (1e-4, 1e-5, 1e-6, 0.)
SMITH_MOMS = (0.99, 0.97, 0.95, 0.9)


# --- one trial ------------------------------------------------------------------------------------
@dataclass
class Trial:
    "One short run: validation loss every `eval_every` steps (at `steps`), its score and whether it diverged."
    label: str
    steps: list = field(default_factory=list)
    valid_losses: list = field(default_factory=list)
    train_losses: list = field(default_factory=list)
    diverged: bool = False
    n_steps: int = 0
    seconds: float = 0.
    score_on: str = 'tail'

    @property
    def score(self) -> float:
        """Mean validation loss over the last quarter of the measurements (`score_on` 'tail'), or the
        last measurement alone ('end': a 1cycle trial's annealed result, as its fit will end); inf
        when it diverged."""
        vals = self.valid_losses
        if self.diverged or not vals or not all(math.isfinite(v) for v in vals): return float('inf')
        k = 1 if self.score_on == 'end' else max(1, len(vals) // 4)
        return sum(vals[-k:]) / k

    @property
    def start_loss(self) -> float:
        return self.valid_losses[0] if self.valid_losses else float('nan')


class _TrialCallback(StepLoss, Callback):
    """Runs exactly `n_steps` optimizer steps, measures the validation subset every `eval_every`, skips the
    epoch's validation."""
    order = 5
    handles_divergence = True
    is_trial = True   # loggers, EarlyStopping and SaveModel stand aside

    def __init__(self, n_steps, eval_every, batches, trial, time_limit=None):
        self.n_steps, self.eval_every, self.batches, self.trial = n_steps, eval_every, batches, trial
        self.time_limit = time_limit

    def before_fit(self):
        self._t0 = time.perf_counter()
        self._reset_step_loss()
        self.trial.steps.append(0); self.trial.valid_losses.append(subset_loss(self.learn, self.batches))

    def before_validate(self):
        raise CancelValidateException()

    def after_step(self):
        t, learn = self.trial, self.learn
        loss = self.step_loss()
        t.train_losses.append(loss); t.n_steps = n = learn.step_count
        if not math.isfinite(loss): t.diverged = True; raise CancelFitException()
        if n % self.eval_every == 0 or n >= self.n_steps:
            v = subset_loss(learn, self.batches)
            t.steps.append(n); t.valid_losses.append(v)
            # blown up: far above where it started (a diverging run is not worth finishing)
            if not math.isfinite(v) or v > divergence_limit(t.valid_losses[0], 3) + 1e-8:
                t.diverged = True; raise CancelFitException()
        if n >= self.n_steps: raise CancelFitException()
        if self.time_limit is not None and time.perf_counter() - self._t0 > self.time_limit: raise CancelFitException()

    def after_fit(self):
        self.trial.seconds = time.perf_counter() - getattr(self, '_t0', time.perf_counter())


def _schedules(learn, lr, mom, wd, schedule, n_steps, pct_start):
    pgs = learn.opt.param_groups
    lrs = lr_range(lr, len(pgs))
    if schedule == 'one_cycle':
        scheds = {'lr': [one_cycle(l / 25, l, l / 2500, pct_start, total_steps=n_steps) for l in lrs]}
    elif schedule == 'anneal':
        scheds = {'lr': [Cosine(l, l / 100) for l in lrs]}
    elif schedule == 'hold':   # the fit's warm-up, compressed, then its peak held: what a long fit meets there
        scheds = {'lr': [Warmup(Constant(l), pct_start, start=l / 25) for l in lrs]}
    else:
        scheds = {'lr': [Constant(l) for l in lrs]}
    if mom is not None:
        if not has_hyper(pgs[0], 'mom'):
            raise ValueError(f'the optimizer {type(learn.opt).__name__} has no momentum to search')
        if isinstance(mom, (tuple, list)):
            hi, lo = mom
            scheds['mom'] = one_cycle(hi, lo, hi, pct_start, total_steps=n_steps) if schedule == 'one_cycle' \
                else Warmup(Constant(lo), pct_start, start=hi) if schedule == 'hold' \
                else Constant(hi)
        else: scheds['mom'] = Constant(mom)
    if wd is not None: scheds['wd'] = Constant(wd)
    return scheds


def run_trial(learn, n_steps, lr, mom=None, wd=None, schedule='one_cycle', eval_every=None, valid_batches=None,
              label='', pct_start=0.3, _batches=None, time_limit=None, score_on='tail') -> Trial:
    """Train `learn` for `n_steps` optimizer steps from where it is, measuring the validation loss
    on a fixed subset every `eval_every` steps. `schedule`: 'one_cycle' (a short 1cycle peaking at
    `lr`), 'constant', 'anneal' (cosine from lr to lr/100) or 'hold' (1cycle's warm-up over `pct_start`
    of the steps, then `lr` held: how a long fit fares near its peak). `mom` is a constant momentum or a
    (high, low) cyclical pair; `wd` a decoupled weight decay; `score_on` what the trial's score
    reads (see :class:`Trial`). The learner is NOT restored: wrap the call in :func:`preserved` for
    that (the searches below do)."""
    check_int('n_steps', n_steps, min_value=2)
    check_lr('lr', lr)
    check_choice('schedule', schedule, ('one_cycle', 'constant', 'anneal', 'hold'))
    check_choice('score_on', score_on, ('tail', 'end'))
    eval_every = check_int('eval_every', eval_every, min_value=1, allow_none=True) or max(1, n_steps // 8)
    batches = _batches if _batches is not None else fixed_valid_batches(learn, valid_batches)
    trial = Trial(label or f'lr={lr}', score_on=score_on)
    if wd is not None: learn.set_wd(wd)
    sched = ParamScheduler(_schedules(learn, lr, mom, wd, schedule, n_steps, pct_start), total_steps=n_steps)
    learn.fit(epochs_for_steps(learn, n_steps),
              cbs=[_TrialCallback(n_steps, eval_every, batches, trial, time_limit), sched])
    return trial


# --- results --------------------------------------------------------------------------------------
def format_candidate(v) -> str:
    "A candidate as the tables and plots show it: floats to 3 significant digits, pairs in parentheses."
    if isinstance(v, (tuple, list)): return '(' + ', '.join(format_candidate(x) for x in v) + ')'
    if isinstance(v, float): return f'{v:.3g}'
    return str(v)


@dataclass
class SearchResult:
    """The trials of one search, their validation losses, the best candidate and the cost.

    ``extra`` holds search-specific figures (for weight decay: the snapshot step and the steps saved
    against searching from scratch)."""
    name: str
    candidates: list
    trials: list
    best: object
    steps: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def scores(self) -> list[float]:
        return [t.score for t in self.trials]

    def table(self) -> str:
        "One line per candidate: final validation loss, score, diverged; the best marked."
        lines = [f'{self.name:>14s}  {"score":>8s}  {"first":>8s}  {"last":>8s}  steps']
        picked = self.extra.get('rung', self.best)   # a refined pick lies between candidates: mark its rung
        for c, t in zip(self.candidates, self.trials):
            mark = ' <- best' if c == picked else (' diverged' if t.diverged else '')
            last = t.valid_losses[-1] if t.valid_losses else float('nan')
            lines.append(f'{format_candidate(c):>14s}  {t.score:8.4f}  {t.start_loss:8.4f}  {last:8.4f}  '
                         f'{t.n_steps}{mark}')
        extra = ', '.join(f'{k}={format_candidate(v)}' for k, v in self.extra.items()
                          if isinstance(v, (int, float, tuple)))
        lines.append(f'{self.steps} steps, {self.seconds:.1f}s' + (f'; {extra}' if extra else ''))
        if 'rung' in self.extra:
            why = self.extra.get('refined_by', f'vertex of a parabola in log {self.name}')
            lines.append(f'best rung refined to {format_candidate(self.best)} ({why})')
        return '\n'.join(lines)

    __str__ = table

    def plot(self, ax=None):
        "Validation loss against optimizer step, one line per candidate, the best drawn thick; returns the Figure."
        import matplotlib.pyplot as plt
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
        offset, picked = self.extra.get('snapshot_step', 0), self.extra.get('rung', self.best)
        for i, (c, t) in enumerate(zip(self.candidates, self.trials)):
            best = c == picked
            ax.plot([offset + s for s in t.steps], t.valid_losses, 'o-' if best else '.-', lw=2.5 if best else 1,
                    color=f'C{i}', label=f'{self.name}={format_candidate(c)}' + (' (best)' if best else '')
                    + (' diverged' if t.diverged else ''))
        pre = self.extra.get('plateau_trial')
        if pre is not None:
            ax.plot(pre.steps, pre.valid_losses, 'k.-', lw=1,
                    label=f'{self.name}={format_candidate(self.extra["mid"])} until plateau')
            ax.axvline(offset, color='k', ls=':', lw=1)
        finite = [v for t in self.trials for v in t.valid_losses if math.isfinite(v)]
        if finite:
            lo, hi = min(finite) * 0.95, min(max(finite), 3 * min(finite)) * 1.05
            if hi > lo: ax.set_ylim(lo, hi)   # all equal (or all 0): leave matplotlib's own margins
        ax.set_xlabel('optimizer step'); ax.set_ylabel('validation loss')
        refined = f' (refined to {format_candidate(self.best)})' if 'rung' in self.extra else ''
        ax.set_title(f'{self.name} search' + refined)
        ax.legend(fontsize=8)
        return fig


class DivergedSearch(RuntimeError):
    "Every trial of a search diverged; ``steps`` says how many optimizer steps they took."
    def __init__(self, msg, steps=0):
        super().__init__(msg); self.steps = steps


def pick_best(candidates, trials, prefer_large=False, tol=0.):
    "The candidate with the lowest score; with `prefer_large`, the largest within `tol` (relative) of it."
    scores = [t.score for t in trials]
    i_best = min(range(len(scores)), key=scores.__getitem__)
    if not math.isfinite(scores[i_best]):
        raise DivergedSearch('every trial diverged: lower the learning rate', sum(t.n_steps for t in trials))
    if prefer_large:
        ok = [i for i, s in enumerate(scores) if s <= scores[i_best] + abs(scores[i_best]) * tol]   # losses may be < 0
        i_best = max(ok, key=lambda i: candidates[i])
    return candidates[i_best]


def branch_trials(learn, name, candidates, trial_kwargs, n_steps, eval_every, valid_batches, start, time_limit=None,
                  before_trial=None) -> list:
    """One :func:`run_trial` per candidate c, with the keyword arguments ``trial_kwargs(c)``, each
    from `start` (a :class:`~onecycle.core.snapshot.TrainingState`, restored before it), all measured
    on the same validation subset and sharing `time_limit`; `before_trial(c)`, when given, readies the
    learner for candidate c after the restore. The learner is left as the last trial left it:
    restore `start` (or run this inside :func:`~onecycle.core.snapshot.preserved`) afterwards."""
    batches = fixed_valid_batches(learn, valid_batches)
    trials = []
    t_end = None if time_limit is None else time.perf_counter() + time_limit
    for c in candidates:
        start.restore()
        if before_trial is not None: before_trial(c)
        left = None if t_end is None else max(t_end - time.perf_counter(), 0.)
        trials.append(run_trial(learn, n_steps, eval_every=eval_every, label=f'{name}={format_candidate(c)}',
                                _batches=batches, time_limit=left, **trial_kwargs(c)))
    return trials


def _check_common(learn, n_steps, eval_every, valid_batches):
    check_int('n_steps', n_steps, min_value=2)
    check_int('eval_every', eval_every, min_value=1, allow_none=True)
    if eval_every is not None and eval_every > n_steps:
        raise ValueError(f'eval_every must be <= n_steps ({n_steps}), got {eval_every}')
    check_int('valid_batches', valid_batches, min_value=1, allow_none=True)
    check_loader(learn.dls.train, 'dls.train'); check_loader(learn.dls.valid, 'dls.valid')


# --- the searches ---------------------------------------------------------------------------------
def lr_search(learn, lrs, n_steps=200, mom=None, wd=None, schedule='one_cycle', eval_every=None, valid_batches=None,
              tol=0.02, time_limit=None) -> SearchResult:
    """Short runs at each learning rate of `lrs` (a short 1cycle peaking there by default). The best
    is the LARGEST lr whose validation score is within `tol` (relative) of the lowest: the best
    training sits just below the instability line (Smith), and a larger lr regularizes more. Trials
    that blew up are marked diverged; ``extra['edge']`` is the largest lr that did not."""
    _check_common(learn, n_steps, eval_every, valid_batches)
    lrs = sorted(check_candidates('lrs', lrs, lambda v: check_positive('lrs', v)))
    check_positive('tol', tol, allow_zero=True)
    t0 = time.perf_counter()
    with preserved(learn) as start:
        trials = branch_trials(learn, 'lr', lrs, lambda c: dict(lr=c, mom=mom, wd=wd, schedule=schedule), n_steps,
                         eval_every, valid_batches, start, time_limit)
    stable = [c for c, t in zip(lrs, trials) if not t.diverged]
    best = pick_best(lrs, trials, prefer_large=True, tol=tol)
    return SearchResult('lr', lrs, trials, best, sum(t.n_steps for t in trials), time.perf_counter() - t0,
                        {'edge': max(stable) if stable else None})


def log_parabola_vertex(lrs, scores):
    """The lr at the vertex of the parabola through three (log lr, score) points, or None when the
    points do not curve upwards (no minimum between them). With the middle score the lowest, the
    vertex lies within half a rung of the middle lr (on a log scale), so it refines a coarse ladder
    without ever leaving the bracket the ladder found."""
    if len(lrs) != 3 or len(scores) != 3:
        raise ValueError('log_parabola_vertex needs exactly three lrs and three scores')
    (x0, x1, x2), (y0, y1, y2) = [math.log(l) for l in lrs], scores
    if not all(math.isfinite(v) for v in (y0, y1, y2)) or not x0 < x1 < x2: return None
    # Newton's divided differences: y = y0 + d1 (x - x0) + d2 (x - x0)(x - x1)
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    d2 = (d12 - d01) / (x2 - x0)
    if d2 <= 0: return None
    x = (x0 + x1) / 2 - d01 / (2 * d2)
    return math.exp(min(max(x, x0), x2))


def edge_search(learn, start_lr, n_steps=160, factor=2., max_trials=5, mom=None, wd=None, schedule='one_cycle',
                eval_every=None, valid_batches=None, tol=0.02, refine=True, time_limit=None) -> SearchResult:
    """Walk a ladder of short runs to the edge of stability: probe `start_lr` / `factor` and
    `start_lr`, then keep multiplying by `factor` while the top probe is still the best (within
    `tol`) and has not blown up; if the lowest probe is the best, step down instead. At most
    `max_trials` runs. The pick is the largest lr within `tol` of the lowest validation score, as in
    :func:`lr_search`; ``extra['edge']`` is the largest lr that did not diverge.

    With `refine`, a picked rung that has a finished rung on each side is refined to the vertex of
    the parabola through the three scores against log lr (:func:`log_parabola_vertex`): a ladder of
    factor 2 is too coarse to say where between two rungs the best lr lies, and the scores on each
    side say it without another run. ``extra['rung']`` keeps the rung the ladder picked."""
    _check_common(learn, n_steps, eval_every, valid_batches)
    check_positive('start_lr', start_lr); check_positive('tol', tol, allow_zero=True)
    check_int('max_trials', max_trials, min_value=2)
    check_positive('factor', factor)
    if factor <= 1: raise ValueError(f'factor must be > 1, got {factor}')
    t0 = time.perf_counter()
    t_end = None if time_limit is None else t0 + time_limit
    done = {}
    with preserved(learn) as start:
        batches = fixed_valid_batches(learn, valid_batches)
        def probe(lr):
            start.restore()
            left = None if t_end is None else max(t_end - time.perf_counter(), 0.)
            done[lr] = run_trial(learn, n_steps, lr, mom=mom, wd=wd, schedule=schedule, eval_every=eval_every,
                                 label=f'lr={lr:.3g}', _batches=batches, time_limit=left)
        probe(start_lr / factor); probe(start_lr)
        while len(done) < max_trials and (t_end is None or time.perf_counter() < t_end):
            lrs = sorted(done)
            best = pick_best(lrs, [done[l] for l in lrs], prefer_large=True, tol=tol) if any(
                math.isfinite(done[l].score) for l in lrs) else None
            if best is None or best == lrs[0]: probe(lrs[0] / factor)
            elif best == lrs[-1] and not done[lrs[-1]].diverged: probe(lrs[-1] * factor)
            else: break
    lrs = sorted(done)
    trials = [done[l] for l in lrs]
    stable = [l for l in lrs if not done[l].diverged]
    best = pick_best(lrs, trials, prefer_large=True, tol=tol)
    extra = {'edge': max(stable) if stable else None}
    i = lrs.index(best)
    if refine and 0 < i < len(lrs) - 1 and not any(done[l].diverged for l in lrs[i - 1:i + 2]):
        vertex = log_parabola_vertex(lrs[i - 1:i + 2], [done[l].score for l in lrs[i - 1:i + 2]])
        if vertex is not None: extra['rung'], best = best, vertex
    return SearchResult('lr', lrs, trials, best, sum(t.n_steps for t in trials), time.perf_counter() - t0, extra)


def momentum_search(learn, lr, moms=SMITH_MOMS, n_steps=150, wd=None, schedule='one_cycle', eval_every=None,
                    valid_batches=None, time_limit=None) -> SearchResult:
    """Smith's momentum search: one short run per candidate at learning rate `lr`, each from the
    learner's weights; the candidate with the lowest validation score wins. A candidate is a
    constant momentum (0.99, 0.97, 0.95, 0.9 by default) or a cyclical (high, low) pair such as
    (0.95, 0.85), which falls while the lr rises. Momentum means ``betas[0]`` for Adam-like
    optimizers."""
    _check_common(learn, n_steps, eval_every, valid_batches)
    check_lr('lr', lr)
    moms = check_candidates('moms', moms, lambda m: check_mom_candidate('moms', m))
    moms = [tuple(m) if isinstance(m, list) else m for m in moms]
    if not has_hyper(learn.opt.param_groups[0], 'mom'):
        raise ValueError(f'the optimizer {type(learn.opt).__name__} has no momentum to search')
    t0 = time.perf_counter()
    with preserved(learn) as start:
        trials = branch_trials(learn, 'mom', moms, lambda c: dict(lr=lr, mom=c, wd=wd, schedule=schedule), n_steps,
                         eval_every, valid_batches, start, time_limit)
    best = pick_best(moms, trials)
    return SearchResult('mom', moms, trials, best, sum(t.n_steps for t in trials), time.perf_counter() - t0)


def is_deep(model: nn.Module, min_layers=10) -> bool:
    "True when `model` has at least `min_layers` weight layers (convolutions and linear layers)."
    return sum(isinstance(m, WEIGHT_LAYER_TYPES) for m in model.modules()) >= min_layers


SGD_WD_SCALE = 10.
ADAPTIVE_WD_SCALE = 100.


def default_wds(model: nn.Module, opt=None) -> tuple:
    """Smith's candidates, in the units the learner's decoupled weight decay (p <- p(1 - lr wd)) takes:
    shallow models need more regularization (Smith's 1e-2, 1e-3, 1e-4), deep ones less (1e-4, 1e-5,
    1e-6, 0). His values are L2 for SGD, where the decay term passes through momentum and acts
    1/(1-mom) times (about 10 at 0.9): decoupled, SGD-like optimizers need ``SGD_WD_SCALE`` times
    them (shallow: 0.1, 0.01, 0.001, whose middle is the one-liners' ``DEFAULT_WD``). An Adam-like
    `opt` (see :func:`is_adaptive`) moves each weight by about lr per step at lrs ~100x smaller than
    SGD's, so the decay needs ~100x Smith's values to shrink the weights as much against those steps
    (as with AdamW, whose usual values are 1e-2 to 1): ``ADAPTIVE_WD_SCALE``; the shallow middle, 0.1, is the
    one-liners' ``ADAPTIVE_PLAIN_WD`` on MLPs and recurrent nets (``core.hyper.fallback_wd``)."""
    wds = DEEP_WDS if is_deep(model) else SHALLOW_WDS
    return tuple(w * (ADAPTIVE_WD_SCALE if is_adaptive(opt) else SGD_WD_SCALE) for w in wds)


def _middle(wds):
    "The candidate in the middle on a log scale (0 counts as the smallest)."
    s = sorted(wds)
    return s[(len(s) - 1) // 2] if len(s) % 2 else s[len(s) // 2]


class _Plateau(Callback):
    "Stops a run once the validation loss has improved by less than `rel_tol` over the last `patience` measurements."
    order = 6

    def __init__(self, trial, patience, rel_tol, min_steps):
        self.trial, self.patience, self.rel_tol, self.min_steps = trial, patience, rel_tol, min_steps

    def after_step(self):
        v, t = self.trial.valid_losses, self.trial
        if len(t.steps) < self.patience + 2 or t.steps[-1] != self.learn.step_count \
                or self.learn.step_count < self.min_steps: return
        before = min(v[:-self.patience])
        if min(v[-self.patience:]) > before * (1 - self.rel_tol): raise CancelFitException()


def wd_search(learn, lr, wds=None, mid_wd=None, plateau_steps=600, branch_steps=150, mom=None, patience=3,
              rel_tol=0.02, branch_schedule='constant', eval_every=None, valid_batches=None, tol=0.02,
              time_limit=None) -> SearchResult:
    """Weight-decay search from a snapshot (Smith 2018, 4.4): train at constant `lr` with the middle
    weight decay until the validation loss plateaus (no relative gain of `rel_tol` over `patience`
    measurements, at most `plateau_steps` steps), snapshot in memory, then branch one run of
    `branch_steps` per candidate from that snapshot and compare their validation loss early.

    The pick is the LARGEST weight decay whose score is within `tol` (relative) of the lowest: a
    short branch favours the least regularized candidate, whose gain comes at once, while the gain
    of regularization shows in a long run; a near-tie is therefore settled for more of it
    (``tol=0`` takes the lowest score as is).

    `wds` defaults to Smith's candidates for the model's depth and the optimizer (see :func:`default_wds`).
    ``extra['steps_saved']`` is what the snapshot saved against running every candidate from
    scratch up to the same point: (candidates - 1) x the steps to the plateau."""
    _check_common(learn, branch_steps, eval_every, valid_batches)
    check_lr('lr', lr)
    check_int('plateau_steps', plateau_steps, min_value=1)
    check_int('patience', patience, min_value=1)
    check_range('rel_tol', rel_tol, 0, 1)
    check_choice('branch_schedule', branch_schedule, ('constant', 'anneal'))
    if mom is not None: check_range('mom', mom, 0, 1, hi_open=True)
    wds = list(default_wds(learn.model, learn.opt)) if wds is None else \
        check_candidates('wds', wds, lambda v: check_positive('wds', v, allow_zero=True))
    mid_wd = _middle(wds) if mid_wd is None else check_positive('mid_wd', mid_wd, allow_zero=True)
    check_positive('tol', tol, allow_zero=True)
    t0 = time.perf_counter()
    eval_every_pre = eval_every or max(1, plateau_steps // 12)
    with preserved(learn):
        batches = fixed_valid_batches(learn, valid_batches)
        pre = Trial(f'wd={format_candidate(mid_wd)}')
        learn.set_wd(mid_wd)
        sched = ParamScheduler(_schedules(learn, lr, mom, mid_wd, 'constant', plateau_steps, 0.3),
                               total_steps=plateau_steps)
        learn.fit(epochs_for_steps(learn, plateau_steps),
                  cbs=[_TrialCallback(plateau_steps, eval_every_pre, batches, pre, time_limit),
                       _Plateau(pre, patience, rel_tol, min_steps=2 * eval_every_pre), sched])
        if pre.diverged:
            raise DivergedSearch(f'training at lr={lr}, wd={mid_wd} diverged before the snapshot: lower lr',
                                 pre.n_steps)
        snap = TrainingState(learn)
        left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 0.)
        trials = branch_trials(learn, 'wd', wds, lambda c: dict(lr=lr, mom=mom, wd=c, schedule=branch_schedule),
                               branch_steps, eval_every, valid_batches, snap, left)
    best = pick_best(wds, trials, prefer_large=True, tol=tol)
    n_pre = pre.n_steps
    steps = n_pre + sum(t.n_steps for t in trials)
    extra = {'mid': mid_wd, 'snapshot_step': n_pre, 'steps_saved': (len(wds) - 1) * n_pre,
             'steps_from_scratch': steps + (len(wds) - 1) * n_pre, 'plateau_trial': pre}
    return SearchResult('wd', wds, trials, best, steps, time.perf_counter() - t0, extra)
