"""What a checkpoint holds: built from a learner, checked against one, and put back into it."""
from __future__ import annotations

from pathlib import Path

import numbers

import numpy as np
import torch

from ..core.checks import check_bool
from ..core.dist import broadcast_module, is_distributed, is_main_process, rank, unwrap_model, world_size
from ..core.hyper import opt_params
from ..core.recorder import Recorder
from ..core.rng import get_rng_state, set_rng_state
from .files import FORMAT, VERSION, CheckpointError, atomic_save, check_path, check_plain, read_checkpoint

__all__ = ['checkpoint_state', 'save_checkpoint', 'load_checkpoint', 'check_compatible', 'load_weights',
           'stateful_callbacks', 'validate_checkpoint', 'opt_layout', 'for_this_rank', 'register_model_loader',
           'load_model_weights']


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


def _plain(o):
    "`o` with numpy scalars and other Real/Integral numbers as Python numbers (a safe load refuses numpy objects)."
    if isinstance(o, dict): return {k: _plain(v) for k, v in o.items()}
    if type(o) in (list, tuple): return type(o)(_plain(v) for v in o)
    if isinstance(o, (torch.Tensor, str, bytes, bool)) or o is None: return o
    if isinstance(o, np.ndarray): return torch.from_numpy(o.copy())
    if isinstance(o, numbers.Integral): return int(o)
    if isinstance(o, numbers.Real): return float(o)
    return o


def _qualname(obj) -> str:
    t = type(obj)
    return f'{t.__module__}.{t.__qualname__}'


def opt_layout(learn) -> dict:
    """What the optimizer's state is laid out for: its class, and per param group the names (in the
    model) and shapes of its parameters, in order."""
    names = {id(p): n for n, p in unwrap_model(learn.model).named_parameters(remove_duplicate=False)}
    return {'type': _qualname(learn.opt),
            'groups': [[names.get(id(p), f'<not in model: {i}>') for i, p in enumerate(pg['params'])]
                       for pg in learn.opt.param_groups],
            'shapes': [[list(p.shape) for p in pg['params']] for pg in learn.opt.param_groups]}


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
            'opt_layout': opt_layout(learn) if with_opt else None,
            'grads': grads if with_opt else None,
            'recorder': _plain(learn.recorder.state_dict()),
            'callbacks': _plain(cbs), 'rng': rng, 'fit': _plain(fit)}


def _gather_rank_rng(ck) -> list:
    "Every rank's RNG states and accumulated gradients (a collective: under torchrun every rank saves)."
    import torch.distributed as dist
    fit = ck['fit'] or {}
    mine = {'rng': ck['rng'], 'epoch_rng': fit.get('epoch_rng'), 'train_end_rng': fit.get('train_end_rng'),
            'grads': ck['grads']}   # an accumulation group in progress: each rank's own gradients (no_sync)
    out = [None] * world_size()
    dist.all_gather_object(out, mine)
    return out


def for_this_rank(ck) -> dict:
    """`ck` with this rank's RNG states (a checkpoint of a fit on several processes holds every rank's);
    refused when the number of processes differs, since the data would be shared out otherwise."""
    ranks = ck.get('rank_rng')
    if not ranks or world_size() == 1: return ck   # world_size: torchrun's, before the group is joined too
    if not isinstance(ranks, list) or len(ranks) != world_size():
        n = len(ranks) if isinstance(ranks, list) else '?'
        raise CheckpointError(f'the checkpoint was saved by a fit on {n} processes, this one runs on {world_size()}: '
                              'a fit continues exactly only on as many processes; load it with learn.load(path, '
                              'with_rng=False) and start a new fit')
    mine = ranks[rank()]
    if not isinstance(mine, dict) or 'rng' not in mine: _bad(f"rank_rng[{rank()}] has no RNG states")
    ck = dict(ck, rng=mine['rng'], grads=mine.get('grads', ck['grads']))
    if ck['fit'] is not None:
        ck['fit'] = dict(ck['fit'], epoch_rng=mine.get('epoch_rng'), train_end_rng=mine.get('train_end_rng'))
    return ck


def save_checkpoint(learn, path, with_opt=True) -> Path:
    """Write `learn`'s checkpoint to `path` atomically. `with_opt=False` leaves out the optimizer
    state (a smaller file for inference; such a checkpoint cannot resume a fit).

    Under torchrun call it on every rank (as SaveModel does): the checkpoint gathers every rank's RNG
    states, so that a fit resumes exactly on as many processes; rank 0 writes the file."""
    path = check_path(path)
    check_bool('with_opt', with_opt)
    ck = checkpoint_state(learn, with_opt)
    if is_distributed() and world_size() > 1:
        ck['rank_rng'] = _gather_rank_rng(ck)
        if rank() != 0: return path
    check_plain(ck)   # refuse, before writing, what a safe load could not read back
    return atomic_save(ck, path)


# --- what comes out ----------------------------------------------------------------------------
_REQUIRED = ('model', 'opt', 'grads', 'recorder', 'callbacks', 'rng', 'fit')
_FIT_KEYS = ('n_epoch', 'epochs_done', 'batches_done', 'step_count', 'n_iter', 'steps_per_epoch', 'epoch_rng')
_RECORDER_KEYS = ('hps', 'losses', 'epochs', 'batches_per_epoch')
# param-group keys that only some optimizers have: a difference in these means another optimizer
_OPT_KINDS = ('momentum', 'betas', 'alpha', 'lr_decay', 'rho', 'etas', 'step_sizes', 'lambd', 't0',
              'initial_accumulator_value', 'momentum_decay', 'max_iter', 'history_size', 'dampening', 'amsgrad',
              'nesterov', 'centered', 'beta3', 'ns_steps')


def _bad(what):
    raise CheckpointError(f'the checkpoint is incomplete or damaged: {what}; nothing was loaded')


def _dry_run_rng(state, what):
    "Check that RNG state `state` can be put back, by doing so and undoing it."
    if not isinstance(state, dict): _bad(f'{what} is not a dict of RNG states')
    keep = get_rng_state(cuda=False)
    try: set_rng_state({k: v for k, v in state.items() if k != 'cuda'})
    except Exception as e: _bad(f'{what} cannot be put back ({type(e).__name__}: {e})')
    finally: set_rng_state(keep)
    cuda = state.get('cuda')
    if cuda is not None and not (isinstance(cuda, (list, tuple)) and all(isinstance(c, torch.Tensor) for c in cuda)):
        _bad(f'{what}["cuda"] is not a list of tensors')
    loaders = state.get('loaders', [])
    if not isinstance(loaders, (list, tuple)) or not all(isinstance(g, torch.Tensor) for g in loaders):
        _bad(f'{what}["loaders"] is not a list of generator states')
    for i, g in enumerate(loaders):
        try: torch.Generator().set_state(g)
        except Exception as e: _bad(f'{what}["loaders"][{i}] is not a generator state ({type(e).__name__}: {e})')


def validate_checkpoint(ck, with_opt=True, with_rng=True):
    """Check, changing nothing, that checkpoint dict `ck` has every entry and that each can be put back:
    the recorder history and RNG states are tried on scratch objects. Raises CheckpointError naming
    the first problem."""
    missing = [k for k in _REQUIRED if k not in ck]
    if missing: _bad(f'it has no {", ".join(map(repr, missing))} entr{"ies" if len(missing) > 1 else "y"}')
    if not isinstance(ck['model'], dict) or not ck['model']: _bad("'model' is not a state dict")
    opt = ck['opt']
    if opt is not None and with_opt:
        if not (isinstance(opt, dict) and isinstance(opt.get('state'), dict)
                and isinstance(opt.get('param_groups'), list)
                and all(isinstance(pg, dict) and isinstance(pg.get('params'), list) for pg in opt['param_groups'])):
            _bad("'opt' is not an optimizer state dict")
        if ck['grads'] is not None and not (isinstance(ck['grads'], list) and all(
                g is None or isinstance(g, torch.Tensor) for g in ck['grads'])):
            _bad("'grads' is not a list of gradients")
    if not isinstance(ck['callbacks'], dict): _bad("'callbacks' is not a dict")
    rec = ck['recorder']
    if not isinstance(rec, dict) or any(k not in rec for k in _RECORDER_KEYS):
        _bad(f"'recorder' lacks {[k for k in _RECORDER_KEYS if not isinstance(rec, dict) or k not in rec]}")
    try: Recorder().load_state_dict(rec)
    except Exception as e: _bad(f"'recorder' cannot be loaded ({type(e).__name__}: {e})")
    if with_rng: _dry_run_rng(ck['rng'], "'rng'")
    fit = ck['fit']
    if fit is not None:
        if not isinstance(fit, dict) or any(k not in fit for k in _FIT_KEYS):
            _bad(f"'fit' lacks {[k for k in _FIT_KEYS if not isinstance(fit, dict) or k not in fit]}")
        for k in ('n_epoch', 'epochs_done', 'batches_done', 'step_count', 'n_iter'):
            if isinstance(fit[k], bool) or not isinstance(fit[k], int) or fit[k] < 0: _bad(f"fit[{k!r}] is {fit[k]!r}")
        for k in ('epoch_rng', 'train_end_rng'):
            if fit.get(k) is not None: _dry_run_rng(fit[k], f"fit[{k!r}]")


def _opt_name(qualname: str) -> str:
    return qualname.rsplit('.', 1)[-1]


def _check_opt(learn, ck):
    opt, saved = learn.opt, ck['opt']
    layout = ck.get('opt_layout')
    mine = [len(pg['params']) for pg in opt.param_groups]
    theirs = [len(pg['params']) for pg in saved['param_groups']]
    if layout is not None:   # version 2: the optimizer's class and what each group holds
        own = opt_layout(learn)
        if layout.get('type') != own['type']:
            theirs_name = _opt_name(str(layout.get('type')))
            raise CheckpointError(f'the checkpoint\'s optimizer is {theirs_name}, this learner\'s '
                                  f'is {_opt_name(own["type"])}: make the learner with the same opt_func, or load with '
                                  'with_opt=False (weights only)')
    if mine != theirs:
        raise CheckpointError(f'the checkpoint\'s optimizer has param groups of sizes {theirs}, this learner\'s has '
                              f'{mine}: build the learner the same way (splitter, frozen layers) before loading')
    if layout is not None:
        if layout.get('groups') != own['groups'] or layout.get('shapes') != own['shapes']:
            diff = next(((g, i, a, b) for g, (ga, gb) in enumerate(zip(layout.get('groups') or [], own['groups']))
                         for i, (a, b) in enumerate(zip(ga, gb)) if a != b), None)
            where = (f': group {diff[0]} position {diff[1]} holds {diff[2]!r} in the checkpoint, {diff[3]!r} here'
                     if diff else '')
            raise CheckpointError('the checkpoint\'s optimizer holds other parameters in its param groups (another '
                                  f'order or splitter){where}; build the learner the same way before loading')
    for g, (pa, pb) in enumerate(zip(saved['param_groups'], opt.param_groups)):
        ka, kb = {k for k in pa if k in _OPT_KINDS}, {k for k in pb if k in _OPT_KINDS}
        if ka != kb:
            raise CheckpointError(f'the checkpoint\'s optimizer is of another kind (param group {g} has '
                                  f'{sorted(ka)}, this {type(opt).__name__} has {sorted(kb)}): make the learner with '
                                  'the same opt_func, or load with with_opt=False (weights only)')
    params = opt_params(opt)
    flat = [i for pg in saved['param_groups'] for i in pg['params']]
    index = {pid: j for j, pid in enumerate(flat)}
    for pid, st in saved['state'].items():
        if pid not in index:
            raise CheckpointError(f'the checkpoint\'s optimizer has state for an unknown parameter {pid}')
        p = params[index[pid]]
        for k, v in (st.items() if isinstance(st, dict) else ()):
            if isinstance(v, torch.Tensor) and v.ndim and tuple(v.shape) != tuple(p.shape):
                raise CheckpointError(f'the checkpoint\'s optimizer state {k!r} of parameter {index[pid]} has shape '
                                      f'{tuple(v.shape)}, the parameter has {tuple(p.shape)}: another model, '
                                      'splitter or parameter order')
    grads = ck.get('grads')
    if grads is not None:
        if len(grads) != len(params):
            raise CheckpointError(f'the checkpoint has {len(grads)} gradients for {len(params)} parameters')
        for i, (g, p) in enumerate(zip(grads, params)):
            if g is not None and tuple(g.shape) != tuple(p.shape):
                raise CheckpointError(f'the checkpoint\'s gradient {i} has shape {tuple(g.shape)}, the parameter has '
                                      f'{tuple(p.shape)}')


def check_compatible(learn, ck, with_opt, with_rng=True):
    """Raise, before anything changes, if the checkpoint is incomplete or damaged, or if its model or
    optimizer (class, param-group layout, shapes) does not fit this learner."""
    validate_checkpoint(ck, with_opt, with_rng)
    own = learn.model.state_dict()
    theirs = ck['model']
    missing, unexpected = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
    bad = [k for k in own
           if k in theirs and isinstance(own[k], torch.Tensor) and not isinstance(theirs[k], torch.Tensor)]
    if bad: _bad(f'model entries {bad[:5]} are not tensors')
    shapes = [f'{k}: {tuple(theirs[k].shape)} vs {tuple(own[k].shape)}' for k in own
              if k in theirs and hasattr(own[k], 'shape') and tuple(theirs[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f'missing {missing[:5]}' if missing else '', f'unexpected {unexpected[:5]}' if unexpected else '',
                 f'shape mismatch {shapes[:5]}' if shapes else '']
        raise CheckpointError('the checkpoint was saved from a different model: ' + '; '.join(p for p in parts if p))
    if with_opt and ck['opt'] is not None: _check_opt(learn, ck)


def load_weights(learn, ck, with_opt):
    """Put the model (and optimizer) state of a checked checkpoint into `learn`: the optimizer first (its
    load replaces its state wholesale), then the model; if the model's load fails, the optimizer's
    previous state is put back."""
    before = learn.opt.state_dict() if with_opt and ck['opt'] is not None else None
    if before is not None: learn.opt.load_state_dict(ck['opt'])
    try: learn.model.load_state_dict(ck['model'])
    except BaseException:
        if before is not None: learn.opt.load_state_dict(before)
        raise


def load_checkpoint(learn, path, with_opt=True, with_rng=True):
    """Load the model (and optimizer, recorder history and RNG states) saved at `path` into `learn`.
    Everything is checked first (digest, completeness, model and optimizer layout): a checkpoint that
    is unreadable, damaged, unsafe or made for another model or optimizer changes nothing. Afterwards
    ``learn.fit(..., resume=True)`` continues the fit the checkpoint was saved from."""
    check_bool('with_opt', with_opt); check_bool('with_rng', with_rng)
    ck = read_checkpoint(path)
    if with_rng: ck = for_this_rank(ck)
    check_compatible(learn, ck, with_opt, with_rng)
    load_weights(learn, ck, with_opt)
    learn.recorder.load_state_dict(ck['recorder'])
    if with_rng: set_rng_state(ck['rng'], learn.dls.train)
    learn.position.loaded = ck   # for fit(..., resume=True), and for a save before the next fit
    return learn


# --- model weights only (SaveModel's load_best) -------------------------------------------------
_MODEL_LOADERS = []   # (accepts(path) -> bool, load(model, path)): other checkpoint formats, registered above


def register_model_loader(accepts, load):
    """Let ``load_model_weights`` read another checkpoint format: `accepts(path)` says whether `path` is
    one, `load(model, path)` puts its weights into `model` (on every rank). A higher layer registers its
    format this way (sharded checkpoints: ``onecycle.distributed.sharded``), so that this layer never
    imports it."""
    if not (callable(accepts) and callable(load)): raise TypeError('accepts and load must be callables')
    if (accepts, load) not in _MODEL_LOADERS: _MODEL_LOADERS.append((accepts, load))


def load_model_weights(model, path):
    """Put only the model weights of checkpoint `path` into `model` (history, optimizer, RNG and fit
    position untouched). Call it on every rank: a checkpoint file is read by rank 0 and its weights
    broadcast; a registered format (a sharded checkpoint directory) is read by its own loader."""
    for accepts, load in _MODEL_LOADERS:
        if accepts(path): return load(model, path)
    model = unwrap_model(model)
    if is_main_process(): model.load_state_dict(read_checkpoint(path)['model'])
    broadcast_module(model)
