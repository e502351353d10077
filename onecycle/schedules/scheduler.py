"""ParamScheduler: sets any hyper-parameter of any param group from schedules at every optimizer
step. 1cycle, cyclical momentum and the range test are thin uses of it."""
from __future__ import annotations

import math

from ..core.callback import Callback, check_callbacks
from ..core.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_lr,
    check_moms,
    check_positive,
    check_range,
)
from ..core.hyper import WD_KEY, has_hyper, hyper_setter, lr_range
from ..core.plotting import plot_hypers
from ._aliases import keyword_aliases
from .functions import (
    CLR_MODES,
    Cosine,
    CosineWarmRestarts,
    Cyclical,
    FlatCos,
    Warmup,
    one_cycle,
    progress_of_step,
)

__all__ = ['ONE_CYCLE_MOMS', 'ParamScheduler', 'OneCycleScheduler', 'CyclicalMomentum', 'CyclicalWeightDecay',
           'SGDRScheduler', 'FlatCosScheduler', 'CLRScheduler', 'WarmupCosScheduler', 'plot_sched', 'callback_list',
           'per_group_scheds']

# the (high, low) momentum of a 1cycle fit by default (Smith; PyTorch's OneCycleLR and fastai use the same)
ONE_CYCLE_MOMS = (0.95, 0.85)


def callback_list(callbacks) -> list:
    """The one-liners' `cbs` (or `callbacks`) argument as a list: None, one callback, or a list/tuple of them;
    anything else is refused naming its position, before any work."""
    return check_callbacks('cbs', callbacks)


def per_group_scheds(name, s, n_groups) -> list:
    "One schedule per param group: a single schedule serves every group, a list must have one per group."
    if not isinstance(s, (list, tuple)): return [s] * n_groups
    if len(s) != n_groups:
        raise ValueError(f'{len(s)} schedules given for {name!r} but the optimizer has {n_groups} param groups')
    return list(s)


class ParamScheduler(Callback):
    """Sets hyper-parameters from schedules before every training batch.

    Args:
        scheds: ``{name: schedule}`` with name ``'lr'``, ``'mom'``, ``'wd'``, ``'beta2'``, ``'eps'`` or
            any param-group key; a schedule is ``f(pct) -> value`` or a list of them, one per param group.
        total_steps: optimizer steps the schedules span (default: the steps of the fit).
        start_step: where in the schedules this fit starts (to continue an earlier run).

    Progress at optimizer step i is ``(start_step + i) / (total_steps - 1)``: the first step sees the
    schedule at 0 and the last at 1, as torch's schedulers do. With gradient accumulation every batch
    of a group sees the value of the step it contributes to. A cancelled step (skipped for a non-finite
    gradient, or by the fp16 GradScaler for an overflow) is not counted: the next batch gets the value
    the skipped one had, so the schedule is followed step by step and a fit with skips ends short of its end.
    """
    order = 10

    def __init__(self, scheds: dict, total_steps=None, start_step=0):
        if not isinstance(scheds, dict) or not scheds:
            raise TypeError('scheds must be a non-empty dict {hyper-parameter name: schedule}')
        for k, s in scheds.items():
            for f in (s if isinstance(s, (list, tuple)) else [s]):
                if not callable(f):
                    raise TypeError(f'the schedule for {k!r} must be callable (or a list of callables), '
                                    f'got {type(f).__name__}')
        check_int('total_steps', total_steps, min_value=1, allow_none=True)
        check_int('start_step', start_step, min_value=0)
        self.scheds, self.total_steps, self.start_step = dict(scheds), total_steps, start_step

    def _per_group(self, name, n_groups, scheds=None):
        return per_group_scheds(name, (self.scheds if scheds is None else scheds)[name], n_groups)

    def before_fit(self):
        pgs = self.learn.opt.param_groups
        for name in self.scheds:
            if not has_hyper(pgs[0], name):
                hint = '; it has no momentum to set (moms=None leaves momentum alone)' if name == 'mom' else ''
                raise ValueError(f'{type(self).__name__}: the optimizer {type(self.learn.opt).__name__} has no '
                                 f'hyper-parameter {name!r} '
                                 f'(param group keys: {sorted(k for k in pgs[0] if k != "params")}){hint}')
        self._setters = [(hyper_setter(pgs[0], k), self._per_group(k, len(pgs))) for k in self.scheds]
        self._total = self.total_steps or self.learn.n_steps
        self._check_schedule()
        if WD_KEY in self.scheds:   # scheduled decoupled wd replaces the optimizer's own, as Learner.set_wd does
            for pg in pgs:
                if 'weight_decay' in pg: pg['weight_decay'] = 0.

    def before_batch(self):
        if self.learn.training: self.set_hypers(self.start_step + self.learn.step_count)

    def state_dict(self) -> dict:
        "Where the schedules start and how many steps they span; the position itself is ``learn.step_count``."
        return {'total_steps': getattr(self, '_total', None), 'start_step': self.start_step}

    def load_state_dict(self, sd: dict):
        "Resuming a fit checks that this fit's schedules span the same steps as the checkpoint's."
        mine = self.state_dict()
        if mine != sd:
            raise ValueError(f'{type(self).__name__}: the checkpoint\'s schedules span {sd} '
                             f'but this fit\'s span {mine}: '
                             'resume with the same arguments (epochs, tot_epochs, start_epoch) as the interrupted fit')

    def _check_values(self, step, strict_names=('lr',)):
        "Every scheduled value at `step` as a float, refusing a NaN/inf, or a negative lr/wd, before it is set."
        pct = progress_of_step(step, self._total)
        out = []
        for name, scheds in zip(self.scheds, (s for _, s in self._setters)):
            vals = []
            for g, f in enumerate(scheds):
                v = f(pct)
                try: fv = float(v)
                except (TypeError, ValueError):
                    raise TypeError(f'{type(self).__name__}: the {name!r} schedule of param group {g} returned '
                                    f'{type(v).__name__} {v!r} at step {step}; schedules return numbers') from None
                if not math.isfinite(fv) or (name in ('lr', WD_KEY) and fv < 0):
                    raise ValueError(f'{type(self).__name__}: the {name!r} schedule of param group {g} gives {fv} at '
                                     f'step {step} of {self._total} (progress {pct:.4g}); {name} must be a finite '
                                     f'number{" >= 0" if name in ("lr", WD_KEY) else ""}')
                vals.append(fv)
            out.append(vals)
        return out

    def _check_schedule(self):
        "Before any step: the schedules at their ends and on a grid of up to 1000 steps between."
        n = self._total
        steps = sorted({0, n - 1, *range(0, n, max(1, n // 1000))})
        for s in steps: self._check_values(self.start_step + s if s < n - self.start_step else s)

    def set_hypers(self, step):
        for (put, _), vals in zip(self._setters, self._check_values(step)):
            for pg, v in zip(self.learn.opt.param_groups, vals): put(pg, v)

    def plan(self, n_groups, total_steps, steps_per_epoch=None) -> dict:
        "The schedules a fit of `total_steps` steps with `n_groups` param groups would use."
        return self.scheds

    def sample(self, n_steps=None, n_groups=1, steps_per_epoch=None) -> dict:
        """The values each step of a run of `n_steps` (default: total_steps, else 100) would get, without
        training: ``{name: [[value per param group] per step]}``, the layout of ``Recorder.hps``.
        `steps_per_epoch` matters only to schedulers laid out in epochs."""
        n_steps = check_int('n_steps', n_steps if n_steps is not None else (self.total_steps or 100), min_value=1)
        n_groups = check_int('n_groups', n_groups, min_value=1)
        check_positive('steps_per_epoch', steps_per_epoch, allow_none=True)
        scheds = self.plan(n_groups, n_steps, steps_per_epoch)
        hps = {}
        for name, s in scheds.items():
            fs = list(s) if isinstance(s, (list, tuple)) else self._per_group(name, n_groups, scheds)
            hps[name] = [[float(f(progress_of_step(i, n_steps))) for f in fs] for i in range(n_steps)]
        return hps

    def plot(self, n_steps=None, n_groups=1, steps_per_epoch=None):
        "Draw the schedules over `n_steps` optimizer steps, before any training; returns the Figure."
        return plot_hypers(self.sample(n_steps, n_groups, steps_per_epoch), title=type(self).__name__)


def _cycle_bounds(learn, tot_epochs, start_epoch, n_epoch):
    tot = tot_epochs if tot_epochs is not None else start_epoch - 1 + n_epoch
    return tot * learn.steps_per_epoch, (start_epoch - 1) * learn.steps_per_epoch


class _EpochCycle(ParamScheduler):
    "A ParamScheduler whose schedules are built at the start of a fit, once the step count is known."
    def __init__(self, tot_epochs=None, start_epoch=1, anneal_strategy='cos', pct_start=0.3, three_phase=False):
        check_int('tot_epochs', tot_epochs, min_value=1, allow_none=True)
        check_int('start_epoch', start_epoch, min_value=1)
        if tot_epochs is not None and start_epoch > tot_epochs:
            raise ValueError(f'start_epoch must be <= tot_epochs, '
                             f'got start_epoch={start_epoch}, tot_epochs={tot_epochs}')
        check_choice('anneal_strategy', anneal_strategy, ('cos', 'linear'))
        check_fraction('pct_start', pct_start); check_bool('three_phase', three_phase)
        if three_phase and pct_start >= 0.5:
            raise ValueError(f'pct_start must be below 0.5 with three_phase=True, got {pct_start}')
        self.tot_epochs, self.start_epoch, self.anneal_strategy = tot_epochs, start_epoch, anneal_strategy
        self.pct_start, self.three_phase = pct_start, three_phase
        self.scheds, self.total_steps, self.start_step = {}, None, 0

    def before_fit(self):
        self.total_steps, self.start_step = _cycle_bounds(self.learn, self.tot_epochs, self.start_epoch,
                                                          self.learn.n_epoch)
        if self.start_step + self.learn.n_steps > self.total_steps:
            raise ValueError(f'this fit runs past the end of the cycle: start_epoch={self.start_epoch} + '
                             f'{self.learn.n_epoch} epochs > tot_epochs={self.tot_epochs}')
        self.scheds = self.build(len(self.learn.opt.param_groups), self.total_steps)
        super().before_fit()

    def _cycle(self, start, peak, end, total_steps):
        return one_cycle(start, peak, end, self.pct_start, self.anneal_strategy, self.three_phase, total_steps)

    def plan(self, n_groups, total_steps, steps_per_epoch=None):
        return self.build(n_groups, total_steps)


class OneCycleScheduler(_EpochCycle):
    """The 1cycle learning-rate policy: from max_lr/div_factor up to max_lr over the first `pct_start`
    of the cycle, then down to max_lr/div_factor/final_div_factor. Step for step the same values as
    ``torch.optim.lr_scheduler.OneCycleLR`` with the same settings.

    `max_lr` is a number, one number per param group, or ``slice(lo, hi)`` spread across groups.
    `tot_epochs`/`start_epoch` (1-based) let a fit cover only part of a longer cycle.
    """
    def __init__(self, max_lr, div_factor=25., pct_start=0.3, final_div_factor=1e4, anneal_strategy='cos',
                 three_phase=False, tot_epochs=None, start_epoch=1):
        check_lr('max_lr', max_lr); check_positive('div_factor', div_factor)
        check_positive('final_div_factor', final_div_factor)
        his = [max_lr.stop] if isinstance(max_lr, slice) else list(max_lr) if isinstance(max_lr, (list, tuple)) \
            else [max_lr]
        for hi in his:
            lo = hi / div_factor
            if not (math.isfinite(lo) and math.isfinite(lo / final_div_factor) and lo / final_div_factor > 0):
                raise ValueError(f'div_factor={div_factor} and final_div_factor={final_div_factor} give max_lr={hi} a '
                                 f'starting lr of {lo} and a final lr of {lo / final_div_factor}: both must be finite '
                                 'and > 0')
        super().__init__(tot_epochs, start_epoch, anneal_strategy, pct_start, three_phase)
        self.max_lr, self.div_factor, self.final_div_factor = max_lr, div_factor, final_div_factor

    def build(self, n_groups, total_steps):
        out = []
        for hi in lr_range(self.max_lr, n_groups):
            lo = hi / self.div_factor
            out.append(self._cycle(lo, hi, lo / self.final_div_factor, total_steps))
        return {'lr': out}


class CyclicalMomentum(_EpochCycle):
    """Momentum that falls from moms[0] to moms[1] while the learning rate rises, then comes back
    (Smith: large momentum early, small while the lr is large). Matches OneCycleLR's cycle_momentum;
    works on SGD/RMSprop ``momentum`` and Adam-like ``betas[0]``. A third value (fastai's
    ``(start, middle, end)``) is the momentum the cycle ends at."""
    def __init__(self, moms=ONE_CYCLE_MOMS, pct_start=0.3, anneal_strategy='cos', three_phase=False,
                 tot_epochs=None, start_epoch=1):
        check_moms('moms', moms, allow_none=False)
        super().__init__(tot_epochs, start_epoch, anneal_strategy, pct_start, three_phase)
        self.moms = tuple(moms)

    def build(self, n_groups, total_steps):
        hi, lo = self.moms[0], self.moms[1]
        end = self.moms[2] if len(self.moms) == 3 else hi   # fastai's (start, middle, end) form
        return {'mom': self._cycle(hi, lo, end, total_steps)}


class CyclicalWeightDecay(_EpochCycle):
    """Weight decay that falls from wds[0] to wds[1] while the learning rate rises, then comes back,
    in the 1cycle shape (decoupled wd, any optimizer; the optimizer's own ``weight_decay`` is set to 0).
    Smith (2018) found a constant wd works as well or better; this is here to test that on your data."""
    def __init__(self, wds=(1e-3, 1e-4), pct_start=0.3, anneal_strategy='cos', three_phase=False,
                 tot_epochs=None, start_epoch=1):
        if not isinstance(wds, (tuple, list)) or len(wds) != 2:
            raise TypeError(f'wds must be a pair (outer, middle) of weight decays, e.g. (1e-3, 1e-4), got {wds!r}')
        for w in wds: check_positive('wds', w, allow_zero=True)
        super().__init__(tot_epochs, start_epoch, anneal_strategy, pct_start, three_phase)
        self.wds = tuple(float(w) for w in wds)

    def build(self, n_groups, total_steps):
        hi, lo = self.wds
        return {WD_KEY: self._cycle(hi, lo, hi, total_steps)}


def plot_sched(scheds, n_steps=100, n_groups=1, name='lr', steps_per_epoch=None):
    """Draw schedules before any training, as they would run over `n_steps` optimizer steps with
    `n_groups` param groups; returns the Figure.

    `scheds` is a schedule (drawn as hyper-parameter `name`), a dict ``{name: schedule or one per
    group}``, a ParamScheduler (OneCycleScheduler, CyclicalMomentum...), a TorchScheduler (drawn from
    a starting lr of 1e-3), or a list of them.
    `steps_per_epoch` places the epochs of schedulers laid out in epochs (CLRScheduler).
    """
    hps = {}
    for item in (scheds if isinstance(scheds, (list, tuple)) else [scheds]):
        if isinstance(item, ParamScheduler) or callable(getattr(type(item), 'sample', None)): cb = item
        elif isinstance(item, dict): cb = ParamScheduler(item)
        elif callable(item): cb = ParamScheduler({name: item})
        else:
            raise TypeError(f'scheds must be a schedule, a dict of them, a ParamScheduler or a list of those, '
                            f'got {type(item).__name__}')
        for k, v in cb.sample(n_steps, n_groups, steps_per_epoch).items():
            if k in hps: raise ValueError(f'{k!r} is scheduled twice; give each hyper-parameter one schedule')
            hps[k] = v
    return plot_hypers(hps, title='Schedule')


class _FitLayout(ParamScheduler):
    """A ParamScheduler whose schedules are built in ``before_fit`` by ``build(n_groups, total_steps,
    steps_per_epoch)``, spanning the whole fit."""
    def __init__(self):
        self.scheds, self.total_steps, self.start_step = {}, None, 0

    def before_fit(self):
        self.scheds = self.build(len(self.learn.opt.param_groups), self.learn.n_steps, self.learn.steps_per_epoch)
        super().before_fit()

    def plan(self, n_groups, total_steps, steps_per_epoch=None):
        return self.build(n_groups, total_steps, steps_per_epoch)


class _LRPerGroup(_FitLayout):
    """A layout with one lr schedule per param group, ``lr_sched(v)`` for each group's peak lr `v`, which
    ends at v / `final_div_factor`."""
    def __init__(self, max_lr, final_div_factor):
        self.max_lr = check_lr('max_lr', max_lr)
        self.final_div_factor = check_positive('final_div_factor', final_div_factor)
        super().__init__()

    def build(self, n_groups, total_steps, steps_per_epoch):
        return {'lr': [self.lr_sched(v) for v in lr_range(self.max_lr, n_groups)]}


class SGDRScheduler(_FitLayout):
    """SGDR (Loshchilov & Hutter): `n_cycles` cosine anneals from `max_lr` down to `lr_min`, the first
    `cycle_len` epochs long and each next one `cycle_mult` times longer, restarting at `max_lr`.
    In all cycle_len * (1 + cycle_mult + ... + cycle_mult**(n_cycles-1)) epochs.
    (`lr_max=` is the deprecated name of `max_lr`.)"""
    @keyword_aliases(deprecated={'lr_max': 'max_lr'})
    def __init__(self, n_cycles, cycle_len=1, max_lr=3e-3, cycle_mult=2, lr_min=0.):
        self.n_cycles = check_int('n_cycles', n_cycles, min_value=1)
        self.cycle_len = check_int('cycle_len', cycle_len, min_value=1)
        self.cycle_mult = check_int('cycle_mult', cycle_mult, min_value=1)
        self.max_lr, self.lr_min = check_lr('max_lr', max_lr), check_positive('lr_min', lr_min, allow_zero=True)
        super().__init__()
        self.n_epoch = sum(cycle_len * cycle_mult ** i for i in range(n_cycles))

    def build(self, n_groups, total_steps, steps_per_epoch):
        spe = steps_per_epoch if steps_per_epoch is not None else total_steps / self.n_epoch
        return {'lr': [CosineWarmRestarts(hi, self.lr_min, self.cycle_len * spe, self.cycle_mult, total_steps)
                       for hi in lr_range(self.max_lr, n_groups)]}


class FlatCosScheduler(_LRPerGroup):
    """`max_lr` held flat for the first `pct_start` of training, then a half cosine down to
    max_lr/final_div_factor. (`lr=` and `div_final=` are the deprecated names of `max_lr` and
    `final_div_factor`.)"""
    @keyword_aliases(deprecated={'lr': 'max_lr', 'div_final': 'final_div_factor'})
    def __init__(self, max_lr=3e-3, pct_start=0.75, final_div_factor=1e5):
        super().__init__(max_lr, final_div_factor)
        self.pct_start = check_range('pct_start', pct_start, 0, 1, hi_open=True)

    def lr_sched(self, v): return FlatCos(v, v / self.final_div_factor, self.pct_start)


class CLRScheduler(_FitLayout):
    """Cyclical learning rates (Smith 2017): between `base_lr` (default max_lr/4, Smith's 1/3 to 1/4 of
    the top) and `max_lr`, rising over `step_size` epochs (2 to 10 is Smith's advice; fractions are
    fine) and falling over `step_size_down` (default the same), in `mode` 'triangular',
    'triangular2' (amplitude halved each cycle) or 'exp_range' (amplitude times `gamma` per optimizer
    step). `moms=(high, low)` cycles momentum the other way. See ``Cyclical`` for the formula."""
    def __init__(self, max_lr, base_lr=None, step_size=2., step_size_down=None, mode='triangular', gamma=1.,
                 moms=None):
        self.max_lr, self.base_lr = check_lr('max_lr', max_lr), check_lr('base_lr', base_lr, allow_none=True)
        self.step_size = check_positive('step_size', step_size)
        self.step_size_down = check_positive('step_size_down', step_size_down, allow_none=True)
        self.mode, self.gamma = check_choice('mode', mode, CLR_MODES), check_range('gamma', gamma, 0, 1, lo_open=True)
        self.moms = check_moms('moms', moms)
        if self.moms is not None and len(self.moms) != 2:
            raise ValueError(f'moms must be a (high, low) pair for cyclical learning rates, got {moms!r}')
        if isinstance(base_lr, (int, float)) and isinstance(max_lr, (int, float)) and base_lr > max_lr:
            raise ValueError(f'base_lr must not exceed max_lr, got {base_lr} > {max_lr}')
        super().__init__()

    def build(self, n_groups, total_steps, steps_per_epoch):
        if steps_per_epoch is None:
            raise ValueError('CLRScheduler lays its cycles out in epochs: '
                             'give steps_per_epoch to plot it before training')
        up = self.step_size * steps_per_epoch
        down = self.step_size_down * steps_per_epoch if self.step_size_down is not None else None
        his = lr_range(self.max_lr, n_groups)
        los = lr_range(self.base_lr, n_groups) if self.base_lr is not None else [h / 4 for h in his]
        for lo, hi in zip(los, his):
            if lo > hi: raise ValueError(f'base_lr must not exceed max_lr, got {lo} > {hi}')
        cyc = lambda a, b: Cyclical(a, b, up, down, self.mode, self.gamma, total_steps)
        out = {'lr': [cyc(lo, hi) for lo, hi in zip(los, his)]}
        if self.moms is not None: out['mom'] = cyc(self.moms[0], self.moms[1])
        return out


class WarmupCosScheduler(_LRPerGroup):
    """Linear warm-up from 0 to `max_lr` over the first `warmup_pct` of training, then a half cosine
    down to max_lr/final_div_factor (the transformer recipe). (`lr=` and `div_final=` are the
    deprecated names of `max_lr` and `final_div_factor`.)"""
    @keyword_aliases(deprecated={'lr': 'max_lr', 'div_final': 'final_div_factor'})
    def __init__(self, max_lr=3e-3, warmup_pct=0.1, final_div_factor=1e5):
        super().__init__(max_lr, final_div_factor)
        self.warmup_pct = check_range('warmup_pct', warmup_pct, 0, 1, hi_open=True)

    def lr_sched(self, v): return Warmup(Cosine(v, v / self.final_div_factor), self.warmup_pct)
