"""Checkpoints: everything a fit needs to continue bitwise where it stopped, written atomically and
read back without running any pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads it and nothing else is ever accepted. It holds the model and
optimizer state, the gradients of an accumulation group in progress, the recorder's history, the
state of every callback that has one (``state_dict``/``load_state_dict``: schedules, accumulation,
the fp16 scaler, SaveModel's best value...), the RNG states (python, numpy, torch, CUDA and the
training DataLoader's generators) and the fit's position (epochs and batches done, optimizer steps).

Resuming (``learn.fit(..., resume=path)``, ``fit_one_cycle(..., resume=path)``) replays the
interrupted epoch's data pipeline from the RNG states it started from and discards the batches
already done, so the shuffling order and any random augmentation match the uninterrupted run; the
cost is reading those batches once more.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .callback import Callback
from .checks import check_bool, check_choice, check_int, check_positive
from .distributed import is_main_process
from .hyper import opt_params

__all__ = ['CheckpointError', 'save_checkpoint', 'load_checkpoint', 'read_checkpoint', 'checkpoint_state',
           'atomic_save', 'get_rng_state', 'set_rng_state', 'SaveModel']

FORMAT, VERSION = 'onecycle.checkpoint', 1


class CheckpointError(ValueError):
    "A checkpoint that cannot be used: unreadable, unsafe to unpickle, not ours, or not matching this learner."


# --- RNG states as plain tensors and numbers ---------------------------------------------------
def _loader_generators(dl) -> list[torch.Generator]:
    "The torch.Generators a DataLoader shuffles with (its own, its sampler's, its batch sampler's), once each."
    cands = [getattr(dl, 'generator', None), getattr(getattr(dl, 'sampler', None), 'generator', None),
             getattr(getattr(getattr(dl, 'batch_sampler', None), 'sampler', None), 'generator', None)]
    out = []
    for g in cands:
        if isinstance(g, torch.Generator) and all(g is not o for o in out): out.append(g)
    return out


def get_rng_state(dl=None, cuda=True) -> dict:
    """The python, numpy, torch (and CUDA, when initialized) RNG states, and those of `dl`'s generators,
    as tensors and numbers that ``torch.load(weights_only=True)`` accepts."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {'python': {'version': version, 'state': torch.tensor(state, dtype=torch.int64), 'gauss': gauss},
            'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                      'has_gauss': int(has_gauss), 'cached': float(cached)},
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if cuda and torch.cuda.is_initialized() else None,
            'loaders': [g.get_state() for g in _loader_generators(dl)] if dl is not None else []}


def set_rng_state(state: dict, dl=None):
    "Put back RNG states from ``get_rng_state`` (the generators of `dl` too, when both have them)."
    py = state['python']
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'], npy['has_gauss'], npy['cached']))
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        for i, s in enumerate(state['cuda'][:torch.cuda.device_count()]): torch.cuda.set_rng_state(s, i)
    if dl is not None:
        for g, s in zip(_loader_generators(dl), state.get('loaders', [])): g.set_state(s)


# --- writing and reading -----------------------------------------------------------------------
def _check_path(path, must_exist=False) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'path must be a str or os.PathLike, got {type(path).__name__} {path!r}')
    path = Path(path)
    if path.is_dir(): raise ValueError(f'path must be a file, got the directory {str(path)!r}')
    if must_exist and not path.exists(): raise FileNotFoundError(f'no checkpoint at {str(path)!r}')
    return path


def _umask() -> int:
    mask = os.umask(0); os.umask(mask)
    return mask


def atomic_save(obj, path) -> Path:
    """``torch.save(obj)`` to a temporary file beside `path`, then ``os.replace`` it into place: a crash
    or an error mid-write leaves the previous file at `path` untouched (and no temporary file)."""
    path = _check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush(); os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes it private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError): os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):   # make the rename itself durable where the OS allows it
        dfd = os.open(path.parent, os.O_RDONLY)
        try: os.fsync(dfd)
        finally: os.close(dfd)
    return path


def read_checkpoint(path) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; anything that would need arbitrary
    unpickling, or that is not an onecycle checkpoint, is refused with a CheckpointError."""
    path = _check_path(path, must_exist=True)
    try:
        ck = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f'refusing to load {str(path)!r}: it holds objects other than tensors, numbers, strings '
                              f'and containers, and loading them could run arbitrary code. onecycle only loads with '
                              f'torch.load(weights_only=True). ({str(e).splitlines()[0]})') from e
    except Exception as e:
        raise CheckpointError(f'could not read {str(path)!r} as a checkpoint (truncated or corrupt?): '
                              f'{type(e).__name__}: {e}') from e
    if not isinstance(ck, dict) or ck.get('format') != FORMAT:
        raise CheckpointError(f'{str(path)!r} is not an onecycle checkpoint (made by learn.save); for bare weights use '
                              'learn.model.load_state_dict(torch.load(path, weights_only=True))')
    if ck.get('version') != VERSION:
        raise CheckpointError(f'{str(path)!r} has checkpoint version {ck.get("version")!r}; this onecycle reads version {VERSION}')
    return ck


# --- what goes in ------------------------------------------------------------------------------
def _has_state(cb) -> bool:
    # Look on the class: Callback forwards unknown attributes to the learner.
    return callable(getattr(type(cb), 'state_dict', None)) and callable(getattr(type(cb), 'load_state_dict', None))


def _stateful_cbs(learn) -> dict:
    "{key: callback} for callbacks with a state, keyed by class name (``Name#1`` for a second one)."
    out, seen = {}, {}
    for cb in getattr(learn, '_fit_cbs', None) or learn.cbs:
        if cb is learn.recorder or not _has_state(cb): continue
        name = type(cb).__name__
        n = seen[name] = seen.get(name, -1) + 1
        out[name if n == 0 else f'{name}#{n}'] = cb
    return out


def checkpoint_state(learn, with_opt=True) -> dict:
    """The checkpoint of `learn` as a dict (what ``learn.save`` writes). During a fit, or after one that
    was stopped, it holds the fit's position so that the fit can be resumed; after ``learn.load`` and
    before the next fit, the position of the loaded checkpoint."""
    loaded = getattr(learn, '_resume_ckpt', None)
    if loaded is not None:
        fit, grads, cbs, rng = loaded['fit'], loaded['grads'], loaded['callbacks'], loaded['rng']
    else:
        fit, grads = None, None
        if learn.n_epoch:
            done = learn.batches_done
            fit = {'n_epoch': learn.n_epoch, 'epochs_done': learn.epochs_done, 'batches_done': done,
                   'step_count': learn.step_count, 'n_iter': learn.fit_n_iter,
                   'steps_per_epoch': learn.fit_steps_per_epoch, 'epoch_rng': learn.epoch_rng if done else None}
            if done and opt_params(learn.opt, with_grad=True):   # an accumulation group in progress
                grads = [None if p.grad is None else p.grad.detach() for p in opt_params(learn.opt)]
        cbs = {k: cb.state_dict() for k, cb in _stateful_cbs(learn).items()}
        # after a fit, the RNG states of its end: draws made since (a plot, a sample) do not shift a resume
        rng = learn.fit_end_rng if learn.fit_end_rng is not None else get_rng_state(learn.dls.train)
    return {'format': FORMAT, 'version': VERSION,
            'model': learn.model.state_dict(),
            'opt': learn.opt.state_dict() if with_opt else None,
            'grads': grads if with_opt else None,
            'recorder': learn.recorder.state_dict(),
            'callbacks': cbs, 'rng': rng, 'fit': fit}


def save_checkpoint(learn, path, with_opt=True) -> Path:
    """Write `learn`'s checkpoint to `path` atomically. `with_opt=False` leaves out the optimizer
    state (a smaller file for inference; such a checkpoint cannot resume a fit)."""
    path = _check_path(path)
    check_bool('with_opt', with_opt)
    return atomic_save(checkpoint_state(learn, with_opt), path)


# --- what comes out ----------------------------------------------------------------------------
def _check_matches(learn, ck, with_opt):
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


def _load_weights(learn, ck, with_opt):
    learn.model.load_state_dict(ck['model'])
    if with_opt and ck['opt'] is not None: learn.opt.load_state_dict(ck['opt'])


def load_checkpoint(learn, path, with_opt=True, with_rng=True):
    """Load the model (and optimizer, recorder history and RNG states) saved at `path` into `learn`.
    Nothing changes if the checkpoint is unreadable, unsafe or made for another model. Afterwards
    ``learn.fit(..., resume=True)`` continues the fit the checkpoint was saved from."""
    check_bool('with_opt', with_opt); check_bool('with_rng', with_rng)
    ck = read_checkpoint(path)
    _check_matches(learn, ck, with_opt)
    _load_weights(learn, ck, with_opt)
    learn.recorder.load_state_dict(ck['recorder'])
    if with_rng: set_rng_state(ck['rng'], learn.dls.train)
    learn._resume_ckpt = ck   # for fit(..., resume=True), and for a save before the next fit
    return learn


class Resume:
    """How a fit continues from a checkpoint. Built by ``Learner.fit(resume=...)`` before the fit
    starts (it reads and checks everything, changing nothing); the loop then calls ``begin`` once
    the callbacks' ``before_fit`` has run, and ``batches`` for the training pass of the interrupted
    epoch, which skips the batches already done."""
    def __init__(self, learn, resume, n_epoch):
        pending = getattr(learn, '_resume_ckpt', None)
        if resume is True:
            if pending is None and not learn.n_epoch:
                raise CheckpointError('resume=True but this learner has no fit to continue: give a checkpoint path, '
                                      'or call learn.load(path) first')
            ck = pending if pending is not None else checkpoint_state(learn)
        elif isinstance(resume, (str, os.PathLike)): ck = read_checkpoint(resume)
        else: raise TypeError(f'resume must be a checkpoint path, True (the state in memory) or None, got {type(resume).__name__} {resume!r}')
        fit = ck['fit']
        if fit is None:
            raise CheckpointError('the checkpoint was saved outside a fit, so there is no fit to resume: '
                                  'load it with learn.load(path) and start a new fit')
        if ck['opt'] is None: raise CheckpointError('the checkpoint was saved with with_opt=False, so it cannot resume a fit')
        if fit['n_epoch'] != n_epoch:
            raise CheckpointError(f'the checkpoint comes from a fit of {fit["n_epoch"]} epochs, this one has {n_epoch}: '
                                  'resume with the same arguments as the interrupted fit')
        if fit['n_iter'] != len(learn.dls.train):
            raise CheckpointError(f'the checkpoint\'s training loader had {fit["n_iter"]} batches per epoch, this one '
                                  f'has {len(learn.dls.train)}: resume on the same data and batch size')
        if len(ck['rng']['loaders']) != len(_loader_generators(learn.dls.train)):
            raise CheckpointError('the training loader shuffles with a different number of generators than the one '
                                  'the checkpoint was saved with: build the DataLoader the same way')
        _check_matches(learn, ck, True)
        self.ck = ck

    def _load_callbacks(self, learn):
        saved, own = self.ck['callbacks'], _stateful_cbs(learn)
        for key, cb in own.items():
            if key in saved: cb.load_state_dict(saved[key])
        lost = sorted(set(saved) - set(own))
        if lost: warnings.warn(f'resume: the checkpoint has state for callbacks this fit lacks: {lost}', stacklevel=4)

    def begin(self, learn) -> int:
        "Put everything back once ``before_fit`` has run; returns the epoch to start at."
        ck, fit = self.ck, self.ck['fit']
        if fit['steps_per_epoch'] != learn.steps_per_epoch:
            raise CheckpointError(f'the checkpoint\'s fit took {fit["steps_per_epoch"]} optimizer steps per epoch, this '
                                  f'one takes {learn.steps_per_epoch}: resume with the same gradient accumulation')
        self._load_callbacks(learn)   # schedules check they span the same steps, before the weights change
        _load_weights(learn, ck, True)
        learn.recorder.load_state_dict(ck['recorder'])
        learn.step_count, learn.epochs_done, learn.batches_done = fit['step_count'], fit['epochs_done'], fit['batches_done']
        set_rng_state(ck['rng'], learn.dls.train)
        if not fit['batches_done']: learn._resume = None   # an epoch boundary: nothing more to do
        return fit['epochs_done']

    def batches(self, learn):
        """(index, batch) pairs for the rest of the interrupted training pass: the pass restarts from
        the RNG states it started from, the batches already done are read and dropped, then the
        states of the moment of the save come back."""
        learn._resume = None
        ck, fit = self.ck, self.ck['fit']
        done, dl = fit['batches_done'], learn.dl
        set_rng_state(fit['epoch_rng'], dl)
        learn.epoch_rng = fit['epoch_rng']
        it = iter(dl)
        for i in range(done):
            try: next(it)
            except StopIteration:
                raise CheckpointError(f'the training loader ran out after {i} batches; the checkpoint had done {done}') from None
        learn.recorder.load_state_dict(ck['recorder'])   # the epoch's losses so far, which before_train cleared
        self._load_callbacks(learn)                      # e.g. the sample count of an accumulation group
        if ck['grads'] is not None:
            for p, g in zip(opt_params(learn.opt), ck['grads']):
                p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype)
        set_rng_state(ck['rng'], dl)
        learn.batches_done = done
        return enumerate(it, start=done)


# --- keeping the best and the last -------------------------------------------------------------
def _auto_mode(monitor):
    return 'min' if any(w in monitor for w in ('loss', 'error', 'perplexity')) else 'max'


class SaveModel(Callback):
    """Keeps checkpoints of a fit in `dirname`: ``{name}_last.pt`` after every epoch (and every
    `every_n_batches` training batches), ``{name}_best.pt`` whenever `monitor` improves.

    Args:
        dirname: the folder for the checkpoints (created when needed).
        monitor: a column of the recorder's epoch table: 'valid_loss', 'train_loss' or a metric's name.
        mode: 'min', 'max', or 'auto' (min for names containing loss or error, else max).
        save_best / save_last: which of the two files to keep.
        every_n_batches: also write the last checkpoint mid-epoch, every that many training batches.
        min_delta: how much better than the best so far a value must be to count.

    Each file is a full checkpoint (``learn.load`` it, or ``fit(..., resume=path)`` from it), written
    atomically, on the main process only. ``best``/``best_epoch`` survive a resume. Its order (70)
    puts it after the Recorder, so each saved file includes the epoch it closes.
    """
    order = 70

    def __init__(self, dirname='checkpoints', monitor='valid_loss', mode='auto', save_best=True, save_last=True,
                 every_n_batches=None, min_delta=0., name='model'):
        if not isinstance(dirname, (str, os.PathLike)):
            raise TypeError(f'dirname must be a str or os.PathLike, got {type(dirname).__name__} {dirname!r}')
        if not isinstance(monitor, str) or not monitor: raise TypeError(f'monitor must be a column name (str), got {monitor!r}')
        check_choice('mode', mode, ('auto', 'min', 'max'))
        check_bool('save_best', save_best); check_bool('save_last', save_last)
        if not (save_best or save_last): raise ValueError('save_best and save_last are both False: nothing would be saved')
        check_int('every_n_batches', every_n_batches, min_value=1, allow_none=True)
        check_positive('min_delta', min_delta, allow_zero=True)
        if not isinstance(name, str) or not name or os.sep in name: raise ValueError(f'name must be a plain file stem, got {name!r}')
        self.dirname, self.monitor, self.fname = Path(dirname), monitor, name
        self.mode = _auto_mode(monitor) if mode == 'auto' else mode
        self.save_best, self.save_last, self.every_n_batches, self.min_delta = save_best, save_last, every_n_batches, min_delta
        self.best, self.best_epoch = None, None

    @property
    def best_path(self) -> Path: return self.dirname / f'{self.fname}_best.pt'
    @property
    def last_path(self) -> Path: return self.dirname / f'{self.fname}_last.pt'

    def state_dict(self): return {'best': self.best, 'best_epoch': self.best_epoch}
    def load_state_dict(self, sd): self.best, self.best_epoch = sd['best'], sd['best_epoch']

    def before_fit(self):
        if not self.save_best: return
        names = self.learn.recorder.metric_names
        if self.monitor not in names[1:-1]:
            raise ValueError(f'SaveModel: monitor={self.monitor!r} is not recorded in this fit; choose one of '
                             f'{names[1:-1]} (validation columns need a validation loader)')
        if not getattr(self.learn, 'keep_history', False): self.best, self.best_epoch = None, None

    def after_batch(self):
        n = self.every_n_batches
        if n and self.learn.training and self.save_last and self.learn.batches_done % n == 0 and is_main_process():
            save_checkpoint(self.learn, self.last_path)

    def _improved(self, v) -> bool:
        if v != v: return False   # NaN never improves
        if self.best is None: return True
        return v < self.best - self.min_delta if self.mode == 'min' else v > self.best + self.min_delta

    def after_epoch(self):
        row = self.learn.recorder.epochs[-1] if self.learn.recorder.epochs else {}
        v = row.get(self.monitor)
        improved = self.save_best and v is not None and self._improved(float(v))
        if improved: self.best, self.best_epoch = float(v), int(row['epoch'])
        if not is_main_process(): return
        if improved: save_checkpoint(self.learn, self.best_path)
        if self.save_last: save_checkpoint(self.learn, self.last_path)
