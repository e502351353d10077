"""What a checkpoint holds: built from a learner, checked against one, and put back into it."""
from __future__ import annotations

from pathlib import Path

from ..core.checks import check_bool
from ..core.hyper import opt_params
from ..core.rng import get_rng_state, set_rng_state
from .files import FORMAT, VERSION, CheckpointError, atomic_save, check_path, read_checkpoint

__all__ = ['checkpoint_state', 'save_checkpoint', 'load_checkpoint', 'check_compatible', 'load_weights',
           'stateful_callbacks']


# --- what goes in ------------------------------------------------------------------------------
def _has_state(cb) -> bool:
    # Look on the class: Callback forwards unknown attributes to the learner.
    return callable(getattr(type(cb), 'state_dict', None)) and callable(getattr(type(cb), 'load_state_dict', None))


def stateful_callbacks(learn) -> dict:
    "{key: callback} for the fit's callbacks with a state, keyed by class name (``Name#1`` for a second one)."
    out, seen = {}, {}
    for cb in learn.position.fit_cbs or learn.cbs:
        if cb is learn.recorder or not _has_state(cb): continue
        name = type(cb).__name__
        n = seen[name] = seen.get(name, -1) + 1
        out[name if n == 0 else f'{name}#{n}'] = cb
    return out


def checkpoint_state(learn, with_opt=True) -> dict:
    """The checkpoint of `learn` as a dict (what ``learn.save`` writes). During a fit, or after one that
    was stopped, it holds the fit's position so that the fit can be resumed; after ``learn.load`` and
    before the next fit, the position of the loaded checkpoint."""
    pos = learn.position
    if pos.loaded is not None:
        fit, grads, cbs, rng = pos.loaded['fit'], pos.loaded['grads'], pos.loaded['callbacks'], pos.loaded['rng']
    else:
        fit, grads = None, None
        if pos.n_epoch:
            done = pos.batches_done
            fit = {'n_epoch': pos.n_epoch, 'epochs_done': pos.epochs_done, 'batches_done': done,
                   'step_count': learn.step_count, 'n_iter': pos.n_iter,
                   'steps_per_epoch': pos.steps_per_epoch, 'epoch_rng': pos.epoch_rng if done else None,
                   'train_done': bool(done and pos.train_done),
                   'train_end_rng': pos.train_end_rng if done and pos.train_done else None}
            if done and opt_params(learn.opt, with_grad=True):   # an accumulation group in progress
                grads = [None if p.grad is None else p.grad.detach() for p in opt_params(learn.opt)]
        cbs = {k: cb.state_dict() for k, cb in stateful_callbacks(learn).items()}
        # after a fit, the RNG states of its end: draws made since (a plot, a sample) do not shift a resume
        rng = pos.end_rng if pos.end_rng is not None else get_rng_state(learn.dls.train)
    return {'format': FORMAT, 'version': VERSION,
            'model': learn.model.state_dict(),
            'opt': learn.opt.state_dict() if with_opt else None,
            'grads': grads if with_opt else None,
            'recorder': learn.recorder.state_dict(),
            'callbacks': cbs, 'rng': rng, 'fit': fit}


def save_checkpoint(learn, path, with_opt=True) -> Path:
    """Write `learn`'s checkpoint to `path` atomically. `with_opt=False` leaves out the optimizer
    state (a smaller file for inference; such a checkpoint cannot resume a fit)."""
    path = check_path(path)
    check_bool('with_opt', with_opt)
    return atomic_save(checkpoint_state(learn, with_opt), path)


# --- what comes out ----------------------------------------------------------------------------
def check_compatible(learn, ck, with_opt):
    "Raise, before anything changes, if the checkpoint's model or optimizer does not fit this learner."
    own = learn.model.state_dict()
    theirs = ck['model']
    missing, unexpected = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
    shapes = [f'{k}: {tuple(theirs[k].shape)} vs {tuple(own[k].shape)}' for k in own
              if k in theirs and hasattr(own[k], 'shape') and tuple(theirs[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f'missing {missing[:5]}' if missing else '', f'unexpected {unexpected[:5]}' if unexpected else '',
                 f'shape mismatch {shapes[:5]}' if shapes else '']
        raise CheckpointError('the checkpoint was saved from a different model: ' + '; '.join(p for p in parts if p))
    if with_opt and ck['opt'] is not None:
        mine = [len(pg['params']) for pg in learn.opt.param_groups]
        saved = [len(pg['params']) for pg in ck['opt']['param_groups']]
        if mine != saved:
            raise CheckpointError(f'the checkpoint\'s optimizer has param groups of sizes {saved}, this learner\'s has '
                                  f'{mine}: build the learner the same way (splitter, frozen layers) before loading')


def load_weights(learn, ck, with_opt):
    learn.model.load_state_dict(ck['model'])
    if with_opt and ck['opt'] is not None: learn.opt.load_state_dict(ck['opt'])


def load_checkpoint(learn, path, with_opt=True, with_rng=True):
    """Load the model (and optimizer, recorder history and RNG states) saved at `path` into `learn`.
    Nothing changes if the checkpoint is unreadable, unsafe or made for another model. Afterwards
    ``learn.fit(..., resume=True)`` continues the fit the checkpoint was saved from."""
    check_bool('with_opt', with_opt); check_bool('with_rng', with_rng)
    ck = read_checkpoint(path)
    check_compatible(learn, ck, with_opt)
    load_weights(learn, ck, with_opt)
    learn.recorder.load_state_dict(ck['recorder'])
    if with_rng: set_rng_state(ck['rng'], learn.dls.train)
    learn.position.loaded = ck   # for fit(..., resume=True), and for a save before the next fit
    return learn

