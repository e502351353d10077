"""One-liners beside ``fit_one_cycle`` for the other common schedules: SGDR, flat-then-cosine,
cyclical learning rates and warm-up then cosine.

Each is a ParamScheduler whose schedules are laid out once the fit's length is known (epochs and
steps per epoch, after gradient accumulation), plus a ``fit_*`` function that runs it; like
``fit_one_cycle``, each takes `wd`, extra `callbacks`, and `resume` to continue an interrupted call.
"""
from __future__ import annotations

from .checks import check_choice, check_int, check_lr, check_moms, check_positive, check_range
from .hyper import lr_range
from .schedule import _CLR_MODES, Cosine, CosineWarmRestarts, Cyclical, FlatCos, Warmup
from .schedulers import ParamScheduler, callback_list

__all__ = ['SGDRScheduler', 'FlatCosScheduler', 'CLRScheduler', 'WarmupCosScheduler',
           'fit_sgdr', 'fit_flat_cos', 'fit_clr', 'fit_warmup_cos']


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
    "A layout with one lr schedule per param group, ``lr_sched(v)`` for each group's lr `v` from ``self.lr``."
    def build(self, n_groups, total_steps, steps_per_epoch):
        return {'lr': [self.lr_sched(v) for v in lr_range(self.lr, n_groups)]}


class SGDRScheduler(_FitLayout):
    """SGDR (Loshchilov & Hutter): `n_cycles` cosine anneals from `lr_max` down to `lr_min`, the first
    `cycle_len` epochs long and each next one `cycle_mult` times longer, restarting at `lr_max`.
    In all cycle_len * (1 + cycle_mult + ... + cycle_mult**(n_cycles-1)) epochs."""
    def __init__(self, n_cycles, cycle_len=1, lr_max=3e-3, cycle_mult=2, lr_min=0.):
        self.n_cycles = check_int('n_cycles', n_cycles, min_value=1)
        self.cycle_len = check_int('cycle_len', cycle_len, min_value=1)
        self.cycle_mult = check_int('cycle_mult', cycle_mult, min_value=1)
        self.lr_max, self.lr_min = check_lr('lr_max', lr_max), check_positive('lr_min', lr_min, allow_zero=True)
        super().__init__()
        self.n_epoch = sum(cycle_len * cycle_mult ** i for i in range(n_cycles))

    def build(self, n_groups, total_steps, steps_per_epoch):
        spe = steps_per_epoch if steps_per_epoch is not None else total_steps / self.n_epoch
        return {'lr': [CosineWarmRestarts(hi, self.lr_min, self.cycle_len * spe, self.cycle_mult, total_steps)
                       for hi in lr_range(self.lr_max, n_groups)]}


class FlatCosScheduler(_LRPerGroup):
    """`lr` held flat for the first `pct_start` of training, then a half cosine down to lr/div_final."""
    def __init__(self, lr=3e-3, pct_start=0.75, div_final=1e5):
        self.lr, self.div_final = check_lr('lr', lr), check_positive('div_final', div_final)
        self.pct_start = check_range('pct_start', pct_start, 0, 1, hi_open=True)
        super().__init__()

    def lr_sched(self, v): return FlatCos(v, v / self.div_final, self.pct_start)


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
        self.mode, self.gamma = check_choice('mode', mode, _CLR_MODES), check_range('gamma', gamma, 0, 1, lo_open=True)
        self.moms = check_moms('moms', moms)
        if isinstance(base_lr, (int, float)) and isinstance(max_lr, (int, float)) and base_lr > max_lr:
            raise ValueError(f'base_lr must not exceed max_lr, got {base_lr} > {max_lr}')
        super().__init__()

    def build(self, n_groups, total_steps, steps_per_epoch):
        if steps_per_epoch is None:
            raise ValueError('CLRScheduler lays its cycles out in epochs: give steps_per_epoch to plot it before training')
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
    """Linear warm-up from 0 to `lr` over the first `warmup_pct` of training, then a half cosine down
    to lr/div_final (the transformer recipe)."""
    def __init__(self, lr=3e-3, warmup_pct=0.1, div_final=1e5):
        self.lr, self.div_final = check_lr('lr', lr), check_positive('div_final', div_final)
        self.warmup_pct = check_range('warmup_pct', warmup_pct, 0, 1, hi_open=True)
        super().__init__()

    def lr_sched(self, v): return Warmup(Cosine(v, v / self.div_final), self.warmup_pct)


def fit_sgdr(learn, n_cycles, cycle_len=1, lr_max=3e-3, cycle_mult=2, lr_min=0., wd=None, callbacks=None, resume=None):
    """Fit `learn` with SGDR: `n_cycles` cosine cycles from `lr_max` to `lr_min`, the first `cycle_len`
    epochs long, each next one `cycle_mult` times longer; returns the number of epochs run.
    ``fit_sgdr(learn, 3, 1, 1e-2)`` runs 1 + 2 + 4 = 7 epochs."""
    check_positive('wd', wd, allow_zero=True, allow_none=True)
    cb = SGDRScheduler(n_cycles, cycle_len, lr_max, cycle_mult, lr_min)
    learn.fit(cb.n_epoch, wd=wd, cbs=[cb] + callback_list(callbacks), resume=resume)
    return cb.n_epoch


def fit_flat_cos(learn, n_epoch, lr=3e-3, pct_start=0.75, div_final=1e5, wd=None, callbacks=None, resume=None):
    "Fit `learn` for `n_epoch` epochs at a flat `lr`, annealed by a half cosine over the last 1 - `pct_start`."
    check_int('n_epoch', n_epoch, min_value=1); check_positive('wd', wd, allow_zero=True, allow_none=True)
    learn.fit(n_epoch, wd=wd, cbs=[FlatCosScheduler(lr, pct_start, div_final)] + callback_list(callbacks), resume=resume)


def fit_clr(learn, n_epoch, max_lr, base_lr=None, step_size=2., step_size_down=None, mode='triangular', gamma=1.,
            moms=None, wd=None, callbacks=None, resume=None):
    """Fit `learn` for `n_epoch` epochs with cyclical learning rates between `base_lr` and `max_lr`
    (see ``CLRScheduler``); Smith's advice is to stop at the end of a cycle, i.e. n_epoch a multiple of
    step_size + step_size_down."""
    check_int('n_epoch', n_epoch, min_value=1); check_positive('wd', wd, allow_zero=True, allow_none=True)
    cb = CLRScheduler(max_lr, base_lr, step_size, step_size_down, mode, gamma, moms)
    learn.fit(n_epoch, wd=wd, cbs=[cb] + callback_list(callbacks), resume=resume)


def fit_warmup_cos(learn, n_epoch, lr=3e-3, warmup_pct=0.1, div_final=1e5, wd=None, callbacks=None, resume=None):
    "Fit `learn` for `n_epoch` epochs: linear warm-up from 0 to `lr` over `warmup_pct`, then cosine down."
    check_int('n_epoch', n_epoch, min_value=1); check_positive('wd', wd, allow_zero=True, allow_none=True)
    learn.fit(n_epoch, wd=wd, cbs=[WarmupCosScheduler(lr, warmup_pct, div_final)] + callback_list(callbacks), resume=resume)
