"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): every rank writes its own shards in
parallel, nothing funnels through one process, and a checkpoint loads on any number of ranks
(resharding), a single process included.

A sharded checkpoint is a directory: DCP's files (``.metadata`` and one ``*.distcp`` per rank) hold the
model and optimizer state, keyed by parameter name; ``onecycle.pt`` holds the rest of an onecycle
checkpoint (recorder history, callback states, the fit's position, param-group hyper-parameters and
the RNG states of every rank), read with ``torch.load(weights_only=True)`` like any checkpoint.
"""
from __future__ import annotations

import os
import shutil
import uuid
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from ..checkpoint import (CheckpointError, atomic_save, check_resumable, checkpoint_state, read_checkpoint,
                          register_model_loader, set_rng_state)
from ..core.checks import check_bool
from ..core.dist import is_distributed, is_main_process, rank, unwrap_model, world_size
from ..core.hyper import hyper_state, restore_hyper_state

__all__ = ['save_sharded', 'load_sharded', 'load_sharded_model', 'is_sharded_checkpoint', 'read_sharded_rest',
           'check_sharded_resume', 'REST_FILE']

REST_FILE = 'onecycle.pt'


def _check_dir(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'path must be a str or os.PathLike, got {type(path).__name__} {path!r}')
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f'a sharded checkpoint is a directory, but {str(path)!r} is a file: give a directory path')
    return path


def is_sharded_checkpoint(path) -> bool:
    "Whether `path` is a directory written by ``save_sharded`` (``learn.save`` on a sharded model)."
    if not isinstance(path, (str, os.PathLike)): return False
    p = Path(path)
    return p.is_dir() and (p / REST_FILE).is_file() and (p / '.metadata').is_file()


def _all_gather(obj) -> list:
    if not is_distributed(): return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj):
    if not is_distributed(): return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier():
    if is_distributed(): dist.barrier()


def _state_dict_api():
    from torch.distributed.checkpoint import state_dict as api
    return api


def save_sharded(learn, path, with_opt=True) -> Path:
    """Write `learn`'s checkpoint to directory `path`, each rank its own shards (call it on every rank,
    as ``learn.save`` does). The directory appears whole or not at all: it is written beside `path`
    and renamed into place, replacing an older checkpoint there. `with_opt=False` leaves out the
    optimizer (such a checkpoint cannot resume a fit)."""
    import torch.distributed.checkpoint as dcp
    path = _check_dir(path)
    check_bool('with_opt', with_opt)
    api = _state_dict_api()
    model = unwrap_model(learn.model)
    rest = checkpoint_state(learn, with_opt)
    del rest['model'], rest['opt']
    pos = learn.position
    if (with_opt and pos.loaded is None and pos.n_epoch and learn.accum_steps > 1 and pos.batches_done
            and pos.batches_done % learn.accum_steps and pos.batches_done != pos.n_iter):
        warnings.warn('saving a sharded checkpoint in the middle of a gradient accumulation group: its gradients, '
                      'not yet reduced across ranks, are not saved, so a resume from it continues that group without '
                      'the gradients of its earlier batches; save at the group\'s last batch (SaveModel does)',
                      stacklevel=3)
    fit = rest['fit']
    mine = {'rng': rest['rng'], 'epoch_rng': None if fit is None else fit['epoch_rng']}
    rest.update(rng=None, grads=None, sharded=True, world_size=world_size(), ranks=_all_gather(mine),
                params={k: list(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)},
                opt_groups=hyper_state(learn.opt) if with_opt else None,
                opt_state=bool(with_opt and learn.opt.state))
    if fit is not None: rest['fit'] = dict(fit, epoch_rng=None)
    state = {'model': api.get_model_state_dict(model)}
    if rest['opt_state']: state['opt'] = api.get_optimizer_state_dict(model, learn.opt)
    # write beside the target, then rename: an interrupted save leaves any previous checkpoint whole
    tmp = path.parent / _broadcast(f'.{path.name}.{uuid.uuid4().hex[:8]}.tmp')
    if is_main_process(): tmp.mkdir(parents=True)
    _barrier()
    try:
        dcp.save(state, checkpoint_id=str(tmp))
        if is_main_process(): atomic_save(rest, tmp / REST_FILE)
        _barrier()
        if is_main_process():
            old = None
            if path.exists():
                old = path.parent / f'.{path.name}.{uuid.uuid4().hex[:8]}.old'
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None: shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if is_main_process(): shutil.rmtree(tmp, ignore_errors=True)
        raise
    _barrier()
    return path


def read_sharded_rest(path) -> dict:
    "The ``onecycle.pt`` part of sharded checkpoint `path` (everything but the weights and optimizer state)."
    path = _check_dir(path)
    if not is_sharded_checkpoint(path):
        raise CheckpointError(f'{str(path)!r} is not a sharded onecycle checkpoint (a directory with {REST_FILE} '
                              'and .metadata, written by learn.save on a sharded model)')
    rest = read_checkpoint(path / REST_FILE)
    if not rest.get('sharded'): raise CheckpointError(f'{str(path / REST_FILE)!r} is not part of a sharded checkpoint')
    return rest


def _check_model(model, rest):
    own = {k: list(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    theirs = rest['params']
    missing, unexpected = sorted(set(own) - set(theirs)), sorted(set(theirs) - set(own))
    shapes = [f'{k}: {tuple(theirs[k])} vs {tuple(own[k])}' for k in own if k in theirs and theirs[k] != own[k]]
    if missing or unexpected or shapes:
        parts = [f'missing {missing[:5]}' if missing else '', f'unexpected {unexpected[:5]}' if unexpected else '',
                 f'shape mismatch {shapes[:5]}' if shapes else '']
        raise CheckpointError('the checkpoint was saved from a different model: ' + '; '.join(p for p in parts if p))


def _check_compatible(learn, rest, with_opt):
    _check_model(unwrap_model(learn.model), rest)
    if with_opt and rest['opt_groups'] is not None and len(rest['opt_groups']) != len(learn.opt.param_groups):
        raise CheckpointError(f'the checkpoint\'s optimizer has {len(rest["opt_groups"])} param groups, this '
                              f'learner\'s has {len(learn.opt.param_groups)}: build the learner the same way '
                              '(splitter, frozen layers) before loading')


def _dcp_load(state, path):
    import torch.distributed.checkpoint as dcp
    # a plain process (no group) reads every shard itself; ranks of a group each read what they hold
    with warnings.catch_warnings():   # one process reading every shard is what load_sharded is for
        warnings.filterwarnings('ignore', message='torch.distributed is disabled')
        dcp.load(state, checkpoint_id=str(path), no_dist=not is_distributed())


def load_sharded_model(model, path):
    """Put only the weights of sharded checkpoint `path` into `model` (sharded or not, on any number of
    ranks: call it on every rank); the rest of the learner is untouched. ``SaveModel(load_best=True)``
    uses it, through ``onecycle.checkpoint.load_model_weights``."""
    rest = read_sharded_rest(path)
    model = unwrap_model(model)
    _check_model(model, rest)
    api = _state_dict_api()
    state = {'model': api.get_model_state_dict(model)}
    _dcp_load(state, path)
    api.set_model_state_dict(model, state['model'])
    return model


register_model_loader(is_sharded_checkpoint, load_sharded_model)   # for SaveModel(load_best=True)


def load_sharded(learn, path, with_opt=True, with_rng=True):
    """Load sharded checkpoint `path` into `learn`: on any number of ranks (the shards are redistributed)
    and into a learner whose model is sharded or not (a single process gets the full weights). Call it on
    every rank. Afterwards ``learn.fit(..., resume=True)`` continues the checkpoint's fit; its RNG states
    are those of the same rank (rank 0's for ranks the saving run did not have)."""
    check_bool('with_opt', with_opt); check_bool('with_rng', with_rng)
    rest = read_sharded_rest(path)
    _check_compatible(learn, rest, with_opt)
    api = _state_dict_api()
    model = unwrap_model(learn.model)
    state = {'model': api.get_model_state_dict(model)}
    load_opt = with_opt and rest['opt_groups'] is not None
    if load_opt and rest['opt_state']: state['opt'] = api.get_optimizer_state_dict(model, learn.opt)
    _dcp_load(state, path)
    api.set_model_state_dict(model, state['model'])
    if load_opt:
        if 'opt' in state: api.set_optimizer_state_dict(model, learn.opt, state['opt'])
        else: learn.opt.state.clear()   # saved before its first step: no state yet
        restore_hyper_state(learn.opt, rest['opt_groups'])
    learn.recorder.load_state_dict(rest['recorder'])
    ranks = rest['ranks']
    mine = ranks[rank()] if rank() < len(ranks) else ranks[0]
    if with_rng: set_rng_state(mine['rng'], learn.dls.train)
    fit = rest['fit']
    ck = dict(rest, model=model.state_dict(), opt=learn.opt.state_dict() if load_opt else None, grads=None,
              rng=mine['rng'], fit=None if fit is None else dict(fit, epoch_rng=mine['epoch_rng']))
    learn.position.loaded = ck   # for fit(..., resume=True), and for a save before the next fit
    return learn


def check_sharded_resume(path, n_epoch):
    "Refuse, before anything is loaded, a sharded checkpoint that cannot resume a fit of `n_epoch` epochs."
    rest = read_sharded_rest(path)
    check_resumable(rest['fit'], rest['opt_groups'] is not None, n_epoch)
