"""SaveModel: keep the last and the best checkpoint of a fit, and put the best weights back at its end."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.callback import Callback, in_trial
from ..core.checks import check_bool, check_choice, check_int, check_positive
from ..core.dist import is_sharded
from ..core.metrics import better_mode
from .state import load_model_weights, save_checkpoint

__all__ = ['SaveModel']


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
        load_best: at the end of the fit, put the weights of the best epoch back into the model (from
            the best checkpoint; under DDP rank 0 reads it and broadcasts the weights). Not after a fit
            that failed or was interrupted, whose weights a ``resume=True`` continues from.

    Each checkpoint is written by ``learn.save`` (``learn.load`` it, or ``fit(..., resume=path)`` from
    it), atomically; under torchrun every rank takes part (the file holds every rank's RNG states) and
    rank 0 writes it. On a model sharded by ``FSDP`` the checkpoints are sharded ones, directories
    without a suffix, ``{name}_last`` and ``{name}_best`` (each rank writes its shards), and a mid-epoch
    save that falls inside a gradient accumulation group waits for the group's last batch (the
    gradients of an unfinished group are not reduced yet, so a sharded checkpoint cannot hold them);
    ``best_path``/``last_path`` give the paths in use. ``best``/``best_epoch`` survive a resume. Its
    order (70) puts it after the Recorder, so each saved checkpoint includes the epoch it closes.
    Trial fits (range test, searches) save nothing.
    """
    order = 70

    def __init__(self, dirname='checkpoints', monitor='valid_loss', mode='auto', save_best=True, save_last=True,
                 every_n_batches=None, min_delta=0., name='model', load_best=False):
        if not isinstance(dirname, (str, os.PathLike)):
            raise TypeError(f'dirname must be a str or os.PathLike, got {type(dirname).__name__} {dirname!r}')
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f'monitor must be a column name (str), got {monitor!r}')
        if Path(dirname).exists() and not Path(dirname).is_dir():
            raise ValueError(f'dirname must be a folder, but {str(dirname)!r} is a file')
        check_choice('mode', mode, ('auto', 'min', 'max'))
        check_bool('save_best', save_best); check_bool('save_last', save_last)
        if not (save_best or save_last):
            raise ValueError('save_best and save_last are both False: nothing would be saved')
        check_bool('load_best', load_best)
        if load_best and not save_best:
            raise ValueError('load_best=True needs save_best=True: the best weights are read from the best checkpoint')
        check_int('every_n_batches', every_n_batches, min_value=1, allow_none=True)
        check_positive('min_delta', min_delta, allow_zero=True)
        if not isinstance(name, str) or not name or os.sep in name:
            raise ValueError(f'name must be a plain file stem, got {name!r}')
        self.dirname, self.monitor, self.fname = Path(dirname), monitor, name
        self.mode = better_mode(monitor) if mode == 'auto' else mode
        self.save_best, self.save_last, self.load_best = save_best, save_last, load_best
        self.every_n_batches, self.min_delta = every_n_batches, min_delta
        self.best, self.best_epoch = None, None
        self._active, self._outer, self._sharded, self._due = False, None, False, False

    def _path(self, kind) -> Path:
        if self.learn is not None: self._sharded = is_sharded(self.learn.model)   # else: as in the last fit
        return self.dirname / (f'{self.fname}_{kind}' if self._sharded else f'{self.fname}_{kind}.pt')

    @property
    def best_path(self) -> Path:
        "The best checkpoint: ``{name}_best.pt``, or directory ``{name}_best`` for a sharded model."
        return self._path('best')

    @property
    def last_path(self) -> Path:
        "The last checkpoint: ``{name}_last.pt``, or directory ``{name}_last`` for a sharded model."
        return self._path('last')

    def _save(self, path):
        save = getattr(self.learn, 'save', None)   # the Learner knows how to save itself (sharded or not)
        if save is None: save_checkpoint(self.learn, path)
        else: save(path)

    def state_dict(self): return {'best': self.best, 'best_epoch': self.best_epoch}
    def load_state_dict(self, sd): self.best, self.best_epoch = sd['best'], sd['best_epoch']

    def before_fit(self):
        self._active = not in_trial(self.learn)
        self._outer = sys.exception()   # an exception being handled around the fit, not one that ends it
        self._sharded, self._due = is_sharded(self.learn.model), False
        if not self.save_best or not self._active: return
        names = self.learn.recorder.metric_names
        if self.monitor not in names[1:-1]:
            raise ValueError(f'SaveModel: monitor={self.monitor!r} is not recorded in this fit; choose one of '
                             f'{names[1:-1]} (validation columns need a validation loader)')
        if not self.learn.keep_history: self.best, self.best_epoch = None, None

    def after_batch(self):
        n = self.every_n_batches
        if not (n and self._active and self.learn.training and self.save_last): return
        if self.learn.position.batches_done % n == 0: self._due = True
        # sharded: the gradients of an unfinished accumulation group are not reduced yet, so wait for its step
        if self._due and (not self._sharded or self.learn.is_step_batch):
            self._due = False
            self._save(self.last_path)

    def _improved(self, v) -> bool:
        if v != v: return False   # NaN never improves
        if self.best is None: return True
        return v < self.best - self.min_delta if self.mode == 'min' else v > self.best + self.min_delta

    def after_epoch(self):
        if not self._active: return
        row = self.learn.recorder.epochs[-1] if self.learn.recorder.epochs else {}
        v = row.get(self.monitor)
        improved = self.save_best and v is not None and self._improved(float(v))
        if improved: self.best, self.best_epoch = float(v), int(row['epoch'])
        if improved: self._save(self.best_path)
        if self.save_last: self._save(self.last_path)
        self._due = False

    def after_fit(self):
        active, self._active = self._active, False
        failed = sys.exception() not in (None, self._outer)   # after_fit runs inside the handler of what ended it
        if not (active and self.load_best) or failed or self.best_epoch is None: return
        load_model_weights(self.learn.model, self.best_path)   # every rank: a collective under torchrun
