"""tune(): Smith's whole procedure in one call, within a budget of optimizer steps (or seconds).

1. LR range test -> Smith's max bound M (the largest lr at which the loss still falls).
2. Edge of stability: short 1cycle runs peaking at M/2 and M, then doubling while the top run is
   still the best (see ``edge_search``); the largest lr whose validation loss is within a hair of
   the best is kept (training is best just below the line where it turns unstable, and the large
   lr regularizes), then refined between its neighbours to the vertex of a parabola through the
   three scores against log lr (a factor-2 ladder is too coarse, and its best rung often sits
   above the optimum: short runs tolerate lrs that long ones do not).
3. (When asked) batch size: short runs at each candidate batch size, the lr rescaled with it.
4. Momentum: short runs with cyclical momentum ranges at that lr.
5. Weight decay: train at the middle candidate until the validation loss plateaus, snapshot, branch;
   the largest candidate within 2% of the best score wins (short branches favour less
   regularization, whose gain comes at once; see ``wd_search``).

Every run starts from the learner's weights; afterwards the learner is exactly as it was (weights,
optimizer, weight decay, loaders, recorder, RNG...: see ``onecycle.core.snapshot.TrainingState``).
``fit_one_cycle(learn, n, **result.fit_kwargs)`` then trains with the findings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..callbacks.progress import StageProgress
from ..core.checks import (check_bool, check_candidates, check_choice, check_int, check_mom_candidate,
                           check_positive)
from ..core.data import check_loader
from ..core.hyper import has_hyper, scale_lr
from ..core.snapshot import preserved
from .batch_size import noise_scale, with_batch_size
from .tune_report import plot_tune, range_test_line, search_line, skipped_line
from .search import (DivergedSearch, SearchResult, branch_trials, default_wds, edge_search, format_candidate,
                     momentum_search, pick_best, wd_search)

__all__ = ['tune', 'TuneResult']

DEFAULT_MOMS = ((0.99, 0.9), (0.95, 0.85), (0.9, 0.8))
EDGE_TRIALS = 5
# shares of the step budget: range test, lr probes, batch size (when asked), momentum, weight decay
_SHARES = {'range': 0.075, 'lr': 0.4, 'bs': 0.2, 'mom': 0.225, 'wd': 0.3}


@dataclass
class TuneResult:
    """What tune found and the evidence. ``fit_kwargs`` goes straight to ``fit_one_cycle``; a tuned
    batch size is in ``batch_size`` (``with_batch_size(learn.dls.train, result.batch_size)``)."""
    max_lr: float
    moms: tuple | None
    wd: float | None
    batch_size: int | None
    noise_scale: float | None
    lr_find: object = None
    lr_search: SearchResult | None = None
    bs_search: SearchResult | None = None
    mom_search: SearchResult | None = None
    wd_search: SearchResult | None = None
    steps: int = 0
    seconds: float = 0.
    budget: int | None = None
    time_budget: float | None = None
    skipped: list = field(default_factory=list)

    @property
    def fit_kwargs(self) -> dict:
        out = {'max_lr': self.max_lr}
        if self.moms is not None: out['moms'] = self.moms
        if self.wd is not None: out['wd'] = self.wd
        return out

    @property
    def searches(self) -> list:
        return [s for s in (self.lr_search, self.bs_search, self.mom_search, self.wd_search) if s is not None]

    def summary(self) -> str:
        lines = [f'max_lr={self.max_lr:.3g}  moms={format_candidate(self.moms)}  wd={format_candidate(self.wd)}  '
                 f'batch_size={self.batch_size}'
                 + (f'  noise scale g={self.noise_scale:.3g}' if self.noise_scale is not None else ''),
                 f'tuning: {self.steps} optimizer steps' + (f' of {self.budget}' if self.budget else '')
                 + f', {self.seconds:.1f}s' + (f' of {self.time_budget:.0f}s' if self.time_budget else '')]
        if self.lr_find is not None:
            lines.append('range test: ' + ', '.join(f'{k}={v:.3g}' for k, v in self.lr_find.suggestions.items()))
        for s in self.searches: lines += ['', s.table()]
        if self.skipped: lines.append('skipped (out of budget): ' + ', '.join(self.skipped))
        return '\n'.join(lines)

    __str__ = summary

    def plot(self):
        "The range test and each search's validation curves, one panel each; returns the Figure."
        return plot_tune(self)


def _n_samples(learn):
    try: return len(learn.dls.train.dataset)
    except (TypeError, AttributeError): return None


def tune(learn, budget=2000, time_budget=None, moms=DEFAULT_MOMS, wds=None, batch_sizes=None, lr_rule='sqrt',
         search_moms=True, search_wd=True, valid_batches=None, edge_tol=0.) -> TuneResult:
    """Find max_lr, momentum and weight decay for ``fit_one_cycle`` with a few short runs, spending at
    most `budget` optimizer steps (and, given `time_budget`, about that many seconds).

    Args:
        budget: optimizer steps all tuning runs together may take.
        time_budget: seconds; stages that would start after it are skipped (defaults used instead).
        moms: cyclical (high, low) momentum candidates (constant values work too).
        wds: weight-decay candidates (Smith's, by model depth and optimizer, when None: see ``default_wds``).
        batch_sizes: candidate batch sizes to compare (None: keep the loader's); the lr is rescaled by
            `lr_rule` ('linear' or 'sqrt') for each.
        valid_batches: measure the validation loss on the first this many validation batches.
        edge_tol: take the largest probed lr whose short-run validation loss is within this fraction
            of the best (0: the best itself; short runs tolerate lrs that long runs do not).
    Returns a :class:`TuneResult`; the learner is left exactly as it was.
    """
    check_int('budget', budget, min_value=200)
    check_positive('time_budget', time_budget, allow_none=True)
    check_choice('lr_rule', lr_rule, ('linear', 'sqrt'))
    check_int('valid_batches', valid_batches, min_value=1, allow_none=True)
    check_positive('edge_tol', edge_tol, allow_zero=True)
    check_bool('search_moms', search_moms); check_bool('search_wd', search_wd)
    check_loader(learn.dls.train, 'dls.train')
    check_loader(learn.dls.valid, 'dls.valid')
    if search_moms:
        if not has_hyper(learn.opt.param_groups[0], 'mom'):
            raise ValueError(f'the optimizer {type(learn.opt).__name__} has no momentum: pass search_moms=False')
        moms = check_candidates('moms', moms, lambda m: check_mom_candidate('moms', m))
    if wds is not None: check_candidates('wds', wds, lambda v: check_positive('wds', v, allow_zero=True))
    base_bs = getattr(learn.dls.train, 'batch_size', None)
    if batch_sizes is not None:
        batch_sizes = sorted(set(check_candidates('batch_sizes', batch_sizes,
                                                  lambda b: check_int('batch_sizes', b, min_value=1))))
        if base_bs is None: raise ValueError('batch_sizes needs dls.train to be a DataLoader built with batch_size')

    t0 = time.perf_counter()
    shares = dict(_SHARES)
    if batch_sizes is None: shares.pop('bs')
    if not search_moms: shares.pop('mom')
    if not search_wd: shares.pop('wd')
    total = sum(shares.values())
    steps_for = {k: int(budget * v / total) for k, v in shares.items()}
    time_for = {k: (None if time_budget is None else time_budget * v / total) for k, v in shares.items()}
    res = TuneResult(max_lr=float('nan'), moms=None, wd=None, batch_size=base_bs, noise_scale=None, budget=budget,
                     time_budget=time_budget)

    def over_time():
        return time_budget is not None and time.perf_counter() - t0 > time_budget

    # one line per stage (a bar during it where a person watches), when the learner shows progress
    say = StageProgress('tune', enabled=getattr(learn, 'progress', False))
    with preserved(learn), learn.added_cbs([say]):   # also puts back a training loader swapped for another batch size
        # 1. range test
        n_rt = max(20, steps_for['range'])
        say.begin('range test', n_rt)
        res.lr_find = learn.lr_find(num_it=n_rt)
        say.end(range_test_line(res.lr_find))
        sugg = res.lr_find.suggestions
        m = sugg.get('max_bound') or sugg['minimum'] * 10
        res.steps += res.lr_find.cost.get('train_steps', n_rt)

        # 2. batch size, compared at the range test's max bound (the edge is then found for the batch chosen)
        if batch_sizes is not None and not over_time():
            n_bs = max(10, steps_for['bs'] // len(batch_sizes))
            dl0 = learn.dls.train
            trials_lr = {b: scale_lr(m, b, base_bs, lr_rule) for b in batch_sizes}
            def use_batch_size(b): learn.dls.train = with_batch_size(dl0, b) if b != base_bs else dl0
            ts = time.perf_counter()
            say.begin('batch size', n_bs * len(batch_sizes))
            with preserved(learn) as start:   # the next stage starts from the learner as it was, not the last trial
                trials = branch_trials(learn, 'bs', batch_sizes, lambda b: dict(lr=trials_lr[b]), n_bs, None,
                                       valid_batches, start, time_for['bs'], before_trial=use_batch_size)
            best = pick_best(batch_sizes, trials)
            res.bs_search = SearchResult('bs', batch_sizes, trials, best, sum(t.n_steps for t in trials),
                                         time.perf_counter() - ts, {'lr_rule': lr_rule})
            res.steps += res.bs_search.steps
            res.batch_size, m = best, trials_lr[best]
            say.end(search_line(res.bs_search))
            if best != base_bs: learn.dls.train = with_batch_size(dl0, best)
        elif batch_sizes is not None: res.skipped.append('batch size'); say.end(skipped_line('batch size'))
        # 3. edge of stability
        say.begin('edge of stability', max(10, steps_for['lr'] // EDGE_TRIALS) * EDGE_TRIALS)
        res.lr_search = edge_search(learn, m, n_steps=max(10, steps_for['lr'] // EDGE_TRIALS), max_trials=EDGE_TRIALS,
                                    tol=edge_tol, valid_batches=valid_batches, time_limit=time_for['lr'])
        res.steps += res.lr_search.steps
        lr = res.max_lr = res.lr_search.best
        say.end(search_line(res.lr_search))

        # 4. momentum
        if search_moms and not over_time():
            say.begin('momentum', max(10, steps_for['mom'] // len(moms)) * len(moms))
            try:
                res.mom_search = momentum_search(learn, lr, moms, n_steps=max(10, steps_for['mom'] // len(moms)),
                                                 valid_batches=valid_batches, time_limit=time_for['mom'])
            except DivergedSearch as e:   # past the edge after all: step back from it
                res.steps += e.steps
                res.max_lr = lr = lr / 2
                res.skipped.append('momentum (every trial diverged: max_lr halved)')
                say.end(f'momentum: every trial diverged; max_lr halved to {lr:.3g}; {e.steps} steps')
            else:
                res.steps += res.mom_search.steps
                best = res.mom_search.best
                res.moms = tuple(best) if isinstance(best, (tuple, list)) else (best, best)
                say.end(search_line(res.mom_search))
        elif search_moms: res.skipped.append('momentum'); say.end(skipped_line('momentum'))

        # 5. weight decay, from a snapshot, at the lower bound Smith uses for cyclical schedules
        cands = list(wds) if wds is not None else list(default_wds(learn.model, learn.opt))
        left = budget - res.steps
        if search_wd and not over_time() and left >= 20 * len(cands):
            n_branch = min(steps_for['wd'] // 2, left // 2) // len(cands)
            n_plateau = left - n_branch * len(cands)
            mom = res.moms[0] if res.moms is not None and search_moms else None
            say.begin('weight decay', left)
            try:
                res.wd_search = wd_search(learn, lr / 3, cands, plateau_steps=n_plateau, branch_steps=n_branch,
                                          mom=mom, branch_schedule='anneal', valid_batches=valid_batches,
                                          time_limit=time_for['wd'])
            except DivergedSearch as e:
                res.steps += e.steps
                res.skipped.append('weight decay (training diverged)')
                say.end(f'weight decay: training diverged before the snapshot; {e.steps} steps')
            else:
                res.steps += res.wd_search.steps
                res.wd = res.wd_search.best
                say.end(search_line(res.wd_search))
        elif search_wd: res.skipped.append('weight decay'); say.end(skipped_line('weight decay'))

    n = _n_samples(learn)
    bs = res.batch_size
    if n and bs: res.noise_scale = noise_scale(res.max_lr, n, min(bs, n)) if bs < n else 0.
    res.seconds = time.perf_counter() - t0
    say.end(f'done: {", ".join(f"{k}={format_candidate(v)}" for k, v in res.fit_kwargs.items())}; '
            f'{res.steps} of {budget} optimizer steps, {res.seconds:.1f}s')
    return res
