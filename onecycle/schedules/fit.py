"""One-liners beside ``fit_one_cycle`` for the other common schedules: SGDR, flat-then-cosine,
cyclical learning rates and warm-up then cosine, and ``fine_tune``.

Each is a ParamScheduler whose schedules are laid out once the fit's length is known (epochs and
steps per epoch, after gradient accumulation), plus a ``fit_*`` function that runs it. They share one
vocabulary: `n_epoch` epochs, peak learning rate `max_lr`, final divisor `final_div_factor`, weight
decay `wd`, extra callbacks `cbs` (or `callbacks`), and `resume` to continue an interrupted call.
``fit_one_cycle`` keeps its first parameter `cyc_len` (``n_epoch=`` names the same thing). The old
keyword names ``lr_max``, ``lr``, ``div_final`` and ``epochs`` still work, with a DeprecationWarning.

`wd=None` keeps the weight decay the learner (``Learner(wd=...)``) or the optimizer (a ``weight_decay``
someone gave it) already applies; where nobody set one (PyTorch's SGD and Adam decay nothing by default,
torch's AdamW its untouched 0.01) the one-liners use decoupled weight decay (``core.hyper.fallback_wd``):
0.01 (that of fastai's default optimizer), or 0.1, Smith's shallow-net value in Adam's units, for an
Adam-like optimizer on a model without normalization layers, attention or convolutions (MLPs, recurrent
nets), whose long fits at the suggested lr it keeps stable. ``wd=0`` trains without.
"""
from __future__ import annotations

from ..callbacks.discriminative import freeze, unfreeze
from ..core.checks import (
    check_fraction,
    check_int,
    check_moms,
    check_number,
    check_positive,
    check_wd,
)
from ..core.hyper import fit_wd, opt_params
from ._aliases import keyword_aliases
from .scheduler import (
    ONE_CYCLE_MOMS,
    CLRScheduler,
    CyclicalMomentum,
    FlatCosScheduler,
    OneCycleScheduler,
    SGDRScheduler,
    WarmupCosScheduler,
    callback_list,
)

__all__ = ['fit_one_cycle', 'fit_sgdr', 'fit_flat_cos', 'fit_clr', 'fit_warmup_cos', 'fine_tune']


@keyword_aliases(synonyms={'callbacks': 'cbs'}, deprecated={'lr_max': 'max_lr'})
def fit_sgdr(learn, n_cycles, cycle_len=1, max_lr=3e-3, cycle_mult=2, lr_min=0., wd=None, cbs=None, resume=None):
    """Fit `learn` with SGDR: `n_cycles` cosine cycles from `max_lr` to `lr_min`, the first `cycle_len`
    epochs long, each next one `cycle_mult` times longer; returns the number of epochs run.
    ``fit_sgdr(learn, 3, 1, 1e-2)`` runs 1 + 2 + 4 = 7 epochs."""
    check_positive('wd', wd, allow_zero=True, allow_none=True)
    cb = SGDRScheduler(n_cycles, cycle_len, max_lr, cycle_mult, lr_min)
    learn.fit(cb.n_epoch, wd=fit_wd(learn, wd), cbs=[cb] + callback_list(cbs), resume=resume)
    return cb.n_epoch


@keyword_aliases(synonyms={'callbacks': 'cbs'}, deprecated={'lr': 'max_lr', 'div_final': 'final_div_factor'})
def fit_flat_cos(learn, n_epoch, max_lr=3e-3, pct_start=0.75, final_div_factor=1e5, wd=None, cbs=None, resume=None):
    """Fit `learn` for `n_epoch` epochs at a flat `max_lr`, annealed by a half cosine over the last
    1 - `pct_start` down to max_lr/final_div_factor."""
    check_int('n_epoch', n_epoch, min_value=1); check_positive('wd', wd, allow_zero=True, allow_none=True)
    cb = FlatCosScheduler(max_lr, pct_start, final_div_factor)
    learn.fit(n_epoch, wd=fit_wd(learn, wd), cbs=[cb] + callback_list(cbs), resume=resume)


@keyword_aliases(synonyms={'callbacks': 'cbs'})
def fit_clr(learn, n_epoch, max_lr, base_lr=None, step_size=2., step_size_down=None, mode='triangular', gamma=1.,
            moms=None, wd=None, cbs=None, resume=None):
    """Fit `learn` for `n_epoch` epochs with cyclical learning rates between `base_lr` and `max_lr`
    (see ``CLRScheduler``); Smith's advice is to stop at the end of a cycle, i.e. n_epoch a multiple of
    step_size + step_size_down."""
    check_int('n_epoch', n_epoch, min_value=1); check_positive('wd', wd, allow_zero=True, allow_none=True)
    cb = CLRScheduler(max_lr, base_lr, step_size, step_size_down, mode, gamma, moms)
    learn.fit(n_epoch, wd=fit_wd(learn, wd), cbs=[cb] + callback_list(cbs), resume=resume)


@keyword_aliases(synonyms={'callbacks': 'cbs'}, deprecated={'lr': 'max_lr', 'div_final': 'final_div_factor'})
def fit_warmup_cos(learn, n_epoch, max_lr=3e-3, warmup_pct=0.1, final_div_factor=1e5, wd=None, cbs=None, resume=None):
    """Fit `learn` for `n_epoch` epochs: linear warm-up from 0 to `max_lr` over `warmup_pct`, then a
    half cosine down to max_lr/final_div_factor."""
    check_int('n_epoch', n_epoch, min_value=1); check_positive('wd', wd, allow_zero=True, allow_none=True)
    cb = WarmupCosScheduler(max_lr, warmup_pct, final_div_factor)
    learn.fit(n_epoch, wd=fit_wd(learn, wd), cbs=[cb] + callback_list(cbs), resume=resume)


# fit_one_cycle's keywords that fine_tune passes on to both of its fit_one_cycle calls
_FINE_TUNE_PASSES = ('tot_epochs', 'start_epoch', 'final_div_factor', 'anneal_strategy', 'three_phase', 'resume')


@keyword_aliases(synonyms={'callbacks': 'cbs'}, deprecated={'epochs': 'n_epoch'})
def fine_tune(learn, n_epoch: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
              pct_start: float = 0.3, div_factor: float = 25., wd=None, moms=ONE_CYCLE_MOMS, train_norm: bool = True,
              *, cbs=None, **kwargs) -> dict:
    """Transfer learning in one line: train the head with the body frozen for `freeze_epochs` epochs of
    1cycle at `base_lr`, then unfreeze and train everything for `n_epoch` epochs of 1cycle with
    discriminative rates ``slice(base_lr / lr_mult, base_lr)`` (body smallest, head largest).

    The learner needs two or more param groups (a splitter) unless ``freeze_epochs=0``. `cbs` and the
    other keyword arguments (those of :func:`fit_one_cycle`: tot_epochs, start_epoch,
    final_div_factor, anneal_strategy, three_phase, resume) go to both :func:`fit_one_cycle` calls.
    Returns the recorder history of each phase, ``{'frozen': ..., 'unfrozen': ...}``
    (``recorder.state_dict()`` form); ``learn.recorder`` keeps the last phase as usual.
    (``epochs=`` is the deprecated name of `n_epoch`.)
    """
    check_int('n_epoch', n_epoch, min_value=1)
    check_int('freeze_epochs', freeze_epochs, min_value=0)
    check_positive('base_lr', base_lr)
    check_number('lr_mult', lr_mult)
    if lr_mult < 1: raise ValueError(f'lr_mult must be >= 1 (body lr = base_lr / lr_mult), got {lr_mult}')
    check_fraction('pct_start', pct_start); check_positive('div_factor', div_factor)
    check_positive('wd', wd, allow_zero=True, allow_none=True); check_moms('moms', moms)
    bad = sorted(set(kwargs) - set(_FINE_TUNE_PASSES))
    if bad: raise TypeError(f'fine_tune got unexpected keyword arguments {bad}; it passes on only these of '
                            f'fit_one_cycle: {sorted(_FINE_TUNE_PASSES)}')
    sched_kw = {k: v for k, v in kwargs.items() if k != 'resume'}
    lrs = slice(base_lr / lr_mult, base_lr)
    _one_cycle_cbs('n_epoch', n_epoch, lrs, moms, div_factor, pct_start, wd, **sched_kw)   # every check before any work
    if freeze_epochs:
        _one_cycle_cbs('freeze_epochs', freeze_epochs, base_lr, moms, div_factor, pct_start, wd, **sched_kw)
    if freeze_epochs and len(learn.opt.param_groups) < 2:
        raise ValueError('fine_tune needs at least two param groups (body and head) to freeze the body: give the '
                         'Learner a splitter, e.g. Learner(..., splitter=split_head()), or pass freeze_epochs=0')
    kw = dict(pct_start=pct_start, div_factor=div_factor, wd=wd, moms=moms, cbs=cbs, **kwargs)
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
    fit_one_cycle(learn, n_epoch, lrs, **kw)
    history['unfrozen'] = learn.recorder.state_dict()
    return history


def _one_cycle_cbs(n_name, n_epoch, max_lr, moms, div_factor, pct_start, wd, tot_epochs=None, start_epoch=1,
                   final_div_factor=1e4, anneal_strategy='cos', three_phase=False) -> list:
    "Check a 1cycle fit's arguments (`n_epoch` named `n_name` in errors) and build its scheduler callbacks."
    check_int(n_name, n_epoch, min_value=1)
    check_int('start_epoch', start_epoch, min_value=1)
    check_int('tot_epochs', tot_epochs, min_value=1, allow_none=True)
    if tot_epochs is not None and start_epoch - 1 + n_epoch > tot_epochs:
        raise ValueError(f'start_epoch - 1 + {n_name} must be <= tot_epochs, got start_epoch={start_epoch}, '
                         f'{n_name}={n_epoch}, tot_epochs={tot_epochs}')
    check_moms('moms', moms)
    check_wd('wd', wd)
    cbs = [OneCycleScheduler(max_lr, div_factor, pct_start, final_div_factor, anneal_strategy, three_phase,
                             tot_epochs, start_epoch)]
    if moms is not None:
        cbs.append(CyclicalMomentum(moms, pct_start, anneal_strategy, three_phase, tot_epochs, start_epoch))
    return cbs


@keyword_aliases(synonyms={'n_epoch': 'cyc_len', 'cbs': 'callbacks'})
def fit_one_cycle(learn, cyc_len, max_lr=3e-3, moms=ONE_CYCLE_MOMS, div_factor=25., pct_start=0.3, wd=None,
                  callbacks=None, tot_epochs=None, start_epoch=1, final_div_factor=1e4, anneal_strategy='cos',
                  three_phase=False, resume=None):
    """Fit `learn` for `cyc_len` epochs (or give them as ``n_epoch=``) following the 1cycle policy (lr
    up to `max_lr` then down to max_lr/div_factor/final_div_factor, momentum the other way).
    `moms=None` leaves momentum alone. `wd=None` keeps the weight decay the learner or the optimizer
    was given, else decoupled 0.01 (0.1 for Adam-like optimizers on plain MLPs and recurrent nets; ``wd=0``
    for none; see the module doc).
    `callbacks` (or ``cbs=``) are extra callbacks for this fit.
    `start_epoch` (1-based) and `tot_epochs` continue a cycle that an earlier call began:
    ``fit_one_cycle(learn, 2, lr, tot_epochs=5, start_epoch=4)`` runs epochs 4 and 5 of a 5-epoch
    cycle. `resume` (a checkpoint path, or True) continues an interrupted call with the same arguments
    exactly where it stopped (see ``Learner.fit``)."""
    cbs = _one_cycle_cbs('cyc_len (n_epoch)', cyc_len, max_lr, moms, div_factor, pct_start, wd, tot_epochs,
                         start_epoch, final_div_factor, anneal_strategy, three_phase)
    learn.fit(cyc_len, wd=fit_wd(learn, wd), cbs=cbs + callback_list(callbacks), resume=resume)
