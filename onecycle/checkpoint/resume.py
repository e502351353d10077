"""Continuing a fit from a checkpoint: the checks made before the fit starts, and the replay of the
interrupted epoch's data pipeline."""
from __future__ import annotations

import os
import warnings

from ..core.hyper import opt_params
from ..core.rng import loader_generators, set_rng_state
from .files import CheckpointError, read_checkpoint
from .state import checkpoint_state, check_compatible, load_weights, stateful_callbacks

__all__ = ['Resume']


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
        if len(ck['rng']['loaders']) != len(loader_generators(learn.dls.train)):
            raise CheckpointError('the training loader shuffles with a different number of generators than the one '
                                  'the checkpoint was saved with: build the DataLoader the same way')
        check_compatible(learn, ck, True)
        self.ck = ck

    def _load_callbacks(self, learn):
        saved, own = self.ck['callbacks'], stateful_callbacks(learn)
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
        load_weights(learn, ck, True)
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
