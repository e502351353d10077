"""ParamScheduler: sets any hyper-parameter of any param group from schedules at every optimizer
step. 1cycle, cyclical momentum and the range test are thin uses of it."""
from __future__ import annotations

from .callback import Callback
from .checks import check_choice, check_fraction, check_int, check_lr, check_moms, check_positive, check_wd
from .hyper import WD_KEY, has_hyper, hyper_setter, lr_range
from .schedule import one_cycle, progress_of_step

__all__ = ['ParamScheduler', 'OneCycleScheduler', 'CyclicalMomentum', 'CyclicalWeightDecay', 'fit_one_cycle',
           'plot_sched']


def callback_list(callbacks) -> list:
    "The one-liners' `callbacks` argument as a list: None, one callback, or a list/tuple of them."
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else ([callbacks] if callbacks is not None else [])


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
    of a group sees the value of the step it contributes to.
    """
    order = 10

    def __init__(self, scheds: dict, total_steps=None, start_step=0):
        if not isinstance(scheds, dict) or not scheds:
            raise TypeError('scheds must be a non-empty dict {hyper-parameter name: schedule}')
        for k, s in scheds.items():
            for f in (s if isinstance(s, (list, tuple)) else [s]):
                if not callable(f): raise TypeError(f'the schedule for {k!r} must be callable (or a list of callables), got {type(f).__name__}')
        check_int('total_steps', total_steps, min_value=1, allow_none=True)
        check_int('start_step', start_step, min_value=0)
        self.scheds, self.total_steps, self.start_step = dict(scheds), total_steps, start_step

    def _per_group(self, name, n_groups, scheds=None):
        return per_group_scheds(name, (self.scheds if scheds is None else scheds)[name], n_groups)

    def before_fit(self):
        pgs = self.learn.opt.param_groups
        for name in self.scheds:
            if not has_hyper(pgs[0], name):
                raise ValueError(f'{type(self).__name__}: the optimizer {type(self.learn.opt).__name__} has no '
                                 f'hyper-parameter {name!r} (param group keys: {sorted(k for k in pgs[0] if k != "params")})')
        self._setters = [(hyper_setter(pgs[0], k), self._per_group(k, len(pgs))) for k in self.scheds]
        self._total = self.total_steps or self.learn.n_steps
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
            raise ValueError(f'{type(self).__name__}: the checkpoint\'s schedules span {sd} but this fit\'s span {mine}: '
                             'resume with the same arguments (epochs, tot_epochs, start_epoch) as the interrupted fit')

    def set_hypers(self, step):
        pct = progress_of_step(step, self._total)
        for put, scheds in self._setters:
            for pg, f in zip(self.learn.opt.param_groups, scheds): put(pg, f(pct))

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
        from .plotting import plot_hypers
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
            raise ValueError(f'start_epoch must be <= tot_epochs, got start_epoch={start_epoch}, tot_epochs={tot_epochs}')
        check_choice('anneal_strategy', anneal_strategy, ('cos', 'linear'))
        check_fraction('pct_start', pct_start)
        if three_phase and pct_start >= 0.5: raise ValueError(f'pct_start must be below 0.5 with three_phase=True, got {pct_start}')
        self.tot_epochs, self.start_epoch, self.anneal_strategy = tot_epochs, start_epoch, anneal_strategy
        self.pct_start, self.three_phase = pct_start, three_phase
        self.scheds, self.total_steps, self.start_step = {}, None, 0

    def before_fit(self):
        self.total_steps, self.start_step = _cycle_bounds(self.learn, self.tot_epochs, self.start_epoch, self.learn.n_epoch)
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
    works on SGD/RMSprop ``momentum`` and Adam-like ``betas[0]``."""
    def __init__(self, moms=(0.95, 0.85), pct_start=0.3, anneal_strategy='cos', three_phase=False,
                 tot_epochs=None, start_epoch=1):
        check_moms('moms', moms, allow_none=False)
        super().__init__(tot_epochs, start_epoch, anneal_strategy, pct_start, three_phase)
        self.moms = tuple(moms)

    def build(self, n_groups, total_steps):
        hi, lo = self.moms[0], self.moms[1]
        return {'mom': self._cycle(hi, lo, hi, total_steps)}


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
    from .plotting import plot_hypers
    hps = {}
    for item in (scheds if isinstance(scheds, (list, tuple)) else [scheds]):
        if isinstance(item, ParamScheduler) or callable(getattr(type(item), 'sample', None)): cb = item
        elif isinstance(item, dict): cb = ParamScheduler(item)
        elif callable(item): cb = ParamScheduler({name: item})
        else: raise TypeError(f'scheds must be a schedule, a dict of them, a ParamScheduler or a list of those, got {type(item).__name__}')
        for k, v in cb.sample(n_steps, n_groups, steps_per_epoch).items():
            if k in hps: raise ValueError(f'{k!r} is scheduled twice; give each hyper-parameter one schedule')
            hps[k] = v
    return plot_hypers(hps, title='Schedule')


def fit_one_cycle(learn, cyc_len, max_lr=3e-3, moms=(0.95, 0.85), div_factor=25., pct_start=0.3, wd=None,
                  callbacks=None, tot_epochs=None, start_epoch=1, final_div_factor=1e4, anneal_strategy='cos',
                  three_phase=False, resume=None):
    """Fit `learn` for `cyc_len` epochs following the 1cycle policy (lr up then down, momentum the
    other way). `moms=None` leaves momentum alone. `start_epoch` (1-based) and `tot_epochs` continue a
    cycle that an earlier call began: ``fit_one_cycle(learn, 2, lr, tot_epochs=5, start_epoch=4)``
    runs epochs 4 and 5 of a 5-epoch cycle. `resume` (a checkpoint path, or True) continues an
    interrupted call with the same arguments exactly where it stopped (see ``Learner.fit``)."""
    check_int('cyc_len', cyc_len, min_value=1)
    check_int('start_epoch', start_epoch, min_value=1)
    check_int('tot_epochs', tot_epochs, min_value=1, allow_none=True)
    if tot_epochs is not None and start_epoch - 1 + cyc_len > tot_epochs:
        raise ValueError(f'start_epoch - 1 + cyc_len must be <= tot_epochs, got start_epoch={start_epoch}, '
                         f'cyc_len={cyc_len}, tot_epochs={tot_epochs}')
    check_moms('moms', moms)
    check_wd('wd', wd)
    cbs = [OneCycleScheduler(max_lr, div_factor, pct_start, final_div_factor, anneal_strategy, three_phase,
                             tot_epochs, start_epoch)]
    if moms is not None:
        cbs.append(CyclicalMomentum(moms, pct_start, anneal_strategy, three_phase, tot_epochs, start_epoch))
    extra = callback_list(callbacks)
    learn.fit(cyc_len, wd=wd, cbs=cbs + extra, resume=resume)
