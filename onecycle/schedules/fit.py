"""One-liners beside ``fit_one_cycle`` for the other common schedules: SGDR, flat-then-cosine,
cyclical learning rates and warm-up then cosine.

Each is a ParamScheduler whose schedules are laid out once the fit's length is known (epochs and
steps per epoch, after gradient accumulation), plus a ``fit_*`` function that runs it; like
``fit_one_cycle``, each takes `wd`, extra `callbacks`, and `resume` to continue an interrupted call.
"""
from __future__ import annotations

import inspect

from ..callbacks.discriminative import freeze, unfreeze
from ..core.checks import (
    check_fraction,
    check_int,
    check_moms,
    check_number,
    check_positive,
    check_wd,
)
from ..core.hyper import opt_params
from .scheduler import (
    CLRScheduler,
    CyclicalMomentum,
    FlatCosScheduler,
    OneCycleScheduler,
    SGDRScheduler,
    WarmupCosScheduler,
    callback_list,
)

__all__ = ['fit_one_cycle', 'fit_sgdr', 'fit_flat_cos', 'fit_clr', 'fit_warmup_cos', 'fine_tune']



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


def fine_tune(learn, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
              pct_start: float = 0.3, div_factor: float = 25., wd=None, moms=(0.95, 0.85), train_norm: bool = True,
              **kwargs) -> dict:
    """Transfer learning in one line: train the head with the body frozen for `freeze_epochs` epochs of
    1cycle at `base_lr`, then unfreeze and train everything for `epochs` epochs of 1cycle with
    discriminative rates ``slice(base_lr / lr_mult, base_lr)`` (body smallest, head largest).

    The learner needs two or more param groups (a splitter) unless ``freeze_epochs=0``. Other keyword
    arguments go to both :func:`fit_one_cycle` calls. Returns the recorder history of each phase,
    ``{'frozen': ..., 'unfrozen': ...}`` (``recorder.state_dict()`` form); ``learn.recorder`` keeps
    the last phase as usual.
    """
    check_int('epochs', epochs, min_value=1)
    check_int('freeze_epochs', freeze_epochs, min_value=0)
    check_positive('base_lr', base_lr)
    check_number('lr_mult', lr_mult)
    if lr_mult < 1: raise ValueError(f'lr_mult must be >= 1 (body lr = base_lr / lr_mult), got {lr_mult}')
    check_fraction('pct_start', pct_start); check_positive('div_factor', div_factor)
    check_positive('wd', wd, allow_zero=True, allow_none=True); check_moms('moms', moms)
    allowed = set(inspect.signature(fit_one_cycle).parameters) - {'learn', 'cyc_len', 'max_lr'}
    bad = sorted(set(kwargs) - allowed)
    if bad: raise TypeError(f'fine_tune got unexpected keyword arguments {bad}; it passes on only those of '
                            f'fit_one_cycle: {sorted(allowed)}')
    if freeze_epochs and len(learn.opt.param_groups) < 2:
        raise ValueError('fine_tune needs at least two param groups (body and head) to freeze the body: give the '
                         'Learner a splitter, e.g. Learner(..., splitter=split_head()), or pass freeze_epochs=0')
    kw = dict(pct_start=pct_start, div_factor=div_factor, wd=wd, moms=moms, **kwargs)
    history, was = {}, [(p, p.requires_grad) for p in opt_params(learn.opt)]
    try:
        if freeze_epochs:
            freeze(learn, train_norm)
            fit_one_cycle(learn, freeze_epochs, base_lr, **kw)
            history['frozen'] = learn.recorder.state_dict()
        unfreeze(learn)
    except BaseException:   # a failed or interrupted head phase leaves the trainable flags as they were
        for p, rg in was: p.requires_grad_(rg)
        raise
    fit_one_cycle(learn, epochs, slice(base_lr / lr_mult, base_lr), **kw)
    history['unfrozen'] = learn.recorder.state_dict()
    return history


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
