"""Where a fit stands, and how a fit continues from a checkpoint.

``FitPosition`` is always on (``learn.position``): it counts epochs and batches done and keeps the RNG
states each training pass started from, which is what a checkpoint needs to continue the fit. Given a
``Resume`` plan (``learn.fit(..., resume=...)`` makes one, reading and checking everything before the
fit starts), it also puts the checkpoint back once every callback's ``before_fit`` has run, and replays
the interrupted training pass: the data pipeline restarts from the RNG states that pass started from
and the batches already done are read and dropped, so shuffling and random augmentation match the
uninterrupted run.
"""
from __future__ import annotations

import os
import warnings

from ..core.callback import Callback
from ..core.dist import world_size
from ..core.hyper import opt_params
from ..core.rng import get_rng_state, loader_generators, set_rng_state
from .files import CheckpointError, read_checkpoint
from .state import check_compatible, checkpoint_state, for_this_rank, load_weights, stateful_callbacks

__all__ = ['FitPosition', 'Resume', 'check_resumable']


class FitPosition(Callback):
    """Where the current (or last) fit stands: ``n_epoch``, ``epochs_done``, ``batches_done`` (training
    batches of the epoch in progress), ``n_iter`` and ``steps_per_epoch`` of its training pass,
    ``epoch_rng`` (the RNG states that pass's shuffling started from), ``end_rng`` (the states at the
    fit's end) and ``fit_cbs`` (its callbacks). ``loaded`` holds a checkpoint read by ``learn.load``
    until the next fit. It runs first at every event (order -100), so a checkpoint saved from
    ``after_batch`` or ``after_epoch`` counts that batch or epoch as done."""
    order = -100

    def __init__(self):
        self.n_epoch, self.epochs_done, self.batches_done = 0, 0, 0
        self.n_iter = self.steps_per_epoch = self.epoch_rng = self.end_rng = None
        self.fit_cbs, self.loaded, self.resume, self.train_done, self.train_end_rng = [], None, None, False, None

    def before_fit(self):
        learn = self.learn
        self.n_epoch, self.epochs_done, self.batches_done = learn.n_epoch, 0, 0
        self.n_iter, self.steps_per_epoch, self.epoch_rng, self.end_rng = len(learn.dls.train), None, None, None
        self.train_done, self.train_end_rng = False, None
        self.fit_cbs, self.loaded = list(learn.cbs), None   # a checkpoint taken after the fit still sees its callbacks
        if self.resume is not None: learn.first_epoch = self.resume.epochs_done

    def before_epoch(self):
        # known once every before_fit has run (GradAccumulation's; DistributedCallback shards the data)
        self.steps_per_epoch, self.n_iter = self.learn.steps_per_epoch, len(self.learn.dls.train)
        if self.resume is not None and not self.resume.begun: self.resume.begin(self.learn)

    def before_train(self):
        self.train_done = False
        if self.resume is not None and self.resume.batches_done: self.resume.replay_pass(self.learn)
        else: self.epoch_rng = get_rng_state(self.learn.dl, cuda=False)

    def after_batch(self):
        if self.learn.training: self.batches_done = self.learn.iter + 1

    def after_train(self):
        # the loader ran out: its sampler may have drawn from its generator once more (RandomSampler does).
        # A stop from here to the epoch's end resumes from these states: validation runs again from the
        # start and draws what it drew (a DataLoader draws a seed from the global RNG for every pass).
        self.train_done, self.train_end_rng = True, get_rng_state(self.learn.dl)

    def after_epoch(self):
        self.epochs_done, self.batches_done, self.train_done, self.train_end_rng = self.learn.epoch + 1, 0, False, None

    def after_fit(self):
        if self.resume is not None and not self.resume.begun: self.resume.begin(self.learn)   # nothing left to run
        self.resume = None
        self.end_rng = get_rng_state(self.learn.dls.train)   # a later checkpoint resumes from here


class _RestOfPass:
    """The interrupted training pass, from its first batch not done: iterating reads and drops the
    batches done before, then calls `on_start`. With `finished` (the pass had run out when it stopped,
    e.g. Ctrl-C during validation) it runs the loader out first, as the pass did: a RandomSampler draws
    from its generator once more when it runs out. Everything else is the loader's."""
    def __init__(self, dl, done, on_start, finished=False):
        self.dl, self.done, self.on_start, self.finished = dl, done, on_start, finished

    def __len__(self): return len(self.dl)
    def __getattr__(self, name): return getattr(self.dl, name)

    def __iter__(self):
        it = iter(self.dl)
        for i in range(self.done):
            try: next(it)
            except StopIteration:
                raise CheckpointError(f'the training loader ran out after {i} batches; the checkpoint had done '
                                      f'{self.done}') from None
        if self.finished:
            for _ in it:
                raise CheckpointError(f'the training loader has more than the {self.done} batches the checkpoint '
                                      'had done in this pass')
            self.on_start()
            return
        self.on_start()
        yield from it


def check_resumable(fit, with_opt: bool, n_epoch: int):
    "Refuse a checkpoint (its `fit` position, whether it holds the optimizer) that cannot continue a fit of `n_epoch`."
    if fit is None:
        raise CheckpointError('the checkpoint was saved outside a fit, so there is no fit to resume: '
                              'load it with learn.load(path) and start a new fit')
    if not with_opt: raise CheckpointError('the checkpoint was saved with with_opt=False, so it cannot resume a fit')
    if fit['n_epoch'] != n_epoch:
        raise CheckpointError(f'the checkpoint comes from a fit of {fit["n_epoch"]} epochs, '
                              f'this one has {n_epoch}: resume with the same arguments as the interrupted fit')


class Resume:
    """How a fit continues from checkpoint `resume` (a path, or True for the learner's own state).
    Made before the fit starts: it reads and checks everything, changing nothing; ``FitPosition``
    then calls ``begin`` once every ``before_fit`` has run and ``replay_pass`` for the interrupted pass."""
    def __init__(self, learn, resume, n_epoch):
        pending = learn.position.loaded
        if resume is True:
            if pending is None and not learn.position.n_epoch:
                raise CheckpointError('resume=True but this learner has no fit to continue: give a checkpoint path, '
                                      'or call learn.load(path) first')
            ck = pending if pending is not None else checkpoint_state(learn)
        elif isinstance(resume, (str, os.PathLike)): ck = for_this_rank(read_checkpoint(resume))
        else:
            raise TypeError(f'resume must be a checkpoint path, True (the state in memory) or None, '
                            f'got {type(resume).__name__} {resume!r}')
        check_compatible(learn, ck, True)   # complete, undamaged, made for this model and optimizer
        fit = ck['fit']
        check_resumable(fit, ck['opt'] is not None, n_epoch)
        if world_size() == 1: self._check_loader(learn, ck)   # under torchrun: once the data is sharded
        self.ck, self.begun = ck, False
        self.epochs_done, self.batches_done = fit['epochs_done'], fit['batches_done']

    @staticmethod
    def _check_loader(learn, ck):
        fit = ck['fit']
        if fit['n_iter'] != len(learn.dls.train):
            raise CheckpointError(f'the checkpoint\'s training loader had {fit["n_iter"]} batches per epoch, this one '
                                  f'has {len(learn.dls.train)}: resume on the same data and batch size')
        if len(ck['rng']['loaders']) != len(loader_generators(learn.dls.train)):
            raise CheckpointError('the training loader shuffles with a different number of generators than the one '
                                  'the checkpoint was saved with: build the DataLoader the same way')

    def _load_callbacks(self, learn):
        if self.ck['fit']['steps_per_epoch'] is None: return   # stopped before its first epoch: nothing set up yet
        saved, own = self.ck['callbacks'], stateful_callbacks(learn)
        for key, cb in own.items():
            if key in saved: cb.load_state_dict(saved[key])
        lost = sorted(set(saved) - set(own))
        if lost: warnings.warn(f'resume: the checkpoint has state for callbacks this fit lacks: {lost}', stacklevel=4)

    def begin(self, learn):
        "Put the checkpoint back: callbacks' states, weights, optimizer, history, step count, RNG states."
        ck, fit = self.ck, self.ck['fit']
        self.begun = True
        self._check_loader(learn, ck)
        if fit['steps_per_epoch'] is not None and fit['steps_per_epoch'] != learn.steps_per_epoch:
            raise CheckpointError(f'the checkpoint\'s fit took {fit["steps_per_epoch"]} optimizer steps per epoch, '
                                  f'this one takes {learn.steps_per_epoch}: resume with the same gradient accumulation')
        self._load_callbacks(learn)   # schedules check they span the same steps, before the weights change
        load_weights(learn, ck, True)
        learn.recorder.load_state_dict(ck['recorder'])
        learn.step_count = fit['step_count']
        learn.position.epochs_done, learn.position.batches_done = fit['epochs_done'], fit['batches_done']
        set_rng_state(ck['rng'], learn.dls.train)

    def replay_pass(self, learn):
        """Continue the interrupted training pass: its loader restarts from the RNG states the pass began
        with, and once the batches already done are dropped, the state of the moment of the save returns."""
        ck, fit, done = self.ck, self.ck['fit'], self.batches_done
        self.batches_done = 0   # once
        set_rng_state(fit['epoch_rng'], learn.dl)
        learn.position.epoch_rng = fit['epoch_rng']

        def at_first_batch_not_done():
            learn.recorder.load_state_dict(ck['recorder'])   # the pass's losses so far, which before_train cleared
            self._load_callbacks(learn)                      # e.g. the sample count of an accumulation group
            if ck['grads'] is not None:
                for p, g in zip(opt_params(learn.opt), ck['grads']):
                    p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype)
            set_rng_state(fit.get('train_end_rng') or ck['rng'], learn.dl)
            learn.position.batches_done = done
        learn.dl, learn.first_batch = _RestOfPass(learn.dl, done, at_first_batch_not_done,
                                                  fit.get('train_done', False)), done
