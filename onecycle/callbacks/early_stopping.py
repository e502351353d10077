"""EarlyStopping: end a fit once a column of the epoch table stops improving, counting only from the
annealing phase of a 1cycle schedule."""
from __future__ import annotations

import math
import numbers

from ..core.callback import Callback, CancelFitException, in_trial
from ..core.checks import check_choice, check_int, check_positive, check_range
from ..core.dist import any_rank, is_distributed, main_print
from ..core.metrics import better_mode

__all__ = ['EarlyStopping']


class EarlyStopping(Callback):
    """Stops the fit when `monitor` has not improved for `patience` epochs.

    Args:
        monitor: a column of the recorder's epoch table: 'valid_loss', 'train_loss' or a metric's name.
        patience: epochs without improvement to accept; the fit stops after the next one.
        min_delta: how much better than the best so far a value must be to count as an improvement.
        mode: 'min', 'max', or 'auto' (min for names containing loss or error, else max).
        start_after: the fraction of the fit during which epochs are not counted at all (neither as
            best nor as waiting). 'auto' waits for the annealing phase of a 1cycle-style schedule:
            the `pct_start` of a scheduler of the fit (``fit_one_cycle``, ``fit_flat_cos``), where the
            learning rate starts coming down and the validation loss is expected to improve; while
            the learning rate rises, a worsening loss is the schedule at work, not overfitting.
            Without such a scheduler 'auto' counts every epoch (0). A number in [0, 1) sets it.
        verbose: print a line (rank 0) when it stops the fit.

    It runs after the Recorder, the progress table and SaveModel (order 80), so the epoch that ends
    the fit is shown and saved. Its decision is a function of the fit's epoch table, which a resumed
    fit gets back, so a resumed fit stops where the uninterrupted one would; ``best``, ``best_epoch``,
    ``wait`` and ``stopped_epoch`` are its ``state_dict``. Under DDP the table holds values already
    reduced over the ranks, and the decision is made on all of them together. A trial fit (range
    test, search) is left alone.
    """
    order = 80

    def __init__(self, monitor='valid_loss', patience=3, min_delta=0., mode='auto', start_after='auto',
                 verbose=True):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f'monitor must be a column name (str), got {monitor!r}')
        check_int('patience', patience, min_value=0)
        check_positive('min_delta', min_delta, allow_zero=True)
        check_choice('mode', mode, ('auto', 'min', 'max'))
        if not (start_after == 'auto' and isinstance(start_after, str)):
            if not isinstance(start_after, numbers.Real) or isinstance(start_after, bool):
                raise TypeError(f"start_after must be 'auto' or a fraction of the fit in [0, 1), got {start_after!r}")
            check_range('start_after', start_after, 0, 1, hi_open=True)
        if not isinstance(verbose, bool): raise TypeError(f'verbose must be True or False, got {verbose!r}')
        self.monitor, self.patience, self.min_delta, self.start_after = monitor, patience, float(min_delta), start_after
        self.mode = better_mode(monitor) if mode == 'auto' else mode
        self.verbose = verbose
        self.best = self.best_epoch = self.stopped_epoch = None
        self.wait, self.counts_from = 0, 0.
        self._active = False

    def state_dict(self) -> dict:
        return {'best': self.best, 'best_epoch': self.best_epoch, 'wait': self.wait,
                'stopped_epoch': self.stopped_epoch}

    def load_state_dict(self, sd: dict):
        self.best, self.best_epoch, self.wait, self.stopped_epoch = (sd['best'], sd['best_epoch'], sd['wait'],
                                                                    sd['stopped_epoch'])

    def _start_fraction(self) -> float:
        "Where counting starts, as a fraction of the fit."
        if self.start_after != 'auto': return float(self.start_after)
        learn, start = self.learn, 0.
        for cb in learn.cbs:
            own = getattr(cb, '__dict__', {})   # the callback's own attributes, not the learner's
            pct = own.get('pct_start')
            if not isinstance(pct, numbers.Real) or isinstance(pct, bool) or not 0 < pct < 1: continue
            # a cycle may span more (tot_epochs) or start earlier (start_epoch) than this fit
            total, first = own.get('total_steps') or learn.n_steps, own.get('start_step') or 0
            at = (pct * max(total - 1, 1) - first) / max(learn.n_steps, 1)
            start = max(start, min(max(at, 0.), 1.))
        return start

    def _counts(self, epoch) -> bool:
        return (epoch + 1) / self.learn.n_epoch > self.counts_from + 1e-12

    def _improved(self, v, best) -> bool:
        if math.isnan(v): return False
        if best is None: return True
        return v < best - self.min_delta if self.mode == 'min' else v > best + self.min_delta

    def _scan(self):
        "best, best_epoch and wait from the epoch table of this fit."
        best = best_epoch = None
        wait = 0
        for row in self.learn.recorder.epochs:
            if not self._counts(row['epoch']) or self.monitor not in row: continue
            v = float(row[self.monitor])
            if self._improved(v, best): best, best_epoch, wait = v, int(row['epoch']), 0
            else: wait += 1
        self.best, self.best_epoch, self.wait = best, best_epoch, wait

    def _should_stop(self) -> bool:
        stop = self.wait >= max(self.patience, 1)
        return any_rank(stop) if is_distributed() else stop

    # --- events ---------------------------------------------------------------------------------
    def before_fit(self):
        self._active = not in_trial(self.learn)
        if not self._active: return
        names = self.learn.recorder.metric_names[1:-1]
        if self.monitor not in names:
            raise ValueError(f'EarlyStopping: monitor={self.monitor!r} is not recorded in this fit; choose one of '
                             f'{names} (validation columns need a validation loader)')
        self.counts_from = self._start_fraction()
        if not self.learn.keep_history: self.best = self.best_epoch = self.stopped_epoch = None; self.wait = 0

    def before_epoch(self):
        # a resumed fit whose table already says stop (saved after the epoch that stopped it) stops again
        if not self._active or not self.learn.keep_history or not self.learn.recorder.epochs: return
        self._scan()
        if self._should_stop(): self._stop(self.learn.recorder.epochs[-1]['epoch'])

    def after_epoch(self):
        if not self._active: return
        self._scan()
        # the fit's last epoch ends it anyway: nothing to stop
        if self.learn.epoch + 1 < self.learn.n_epoch and self._should_stop(): self._stop(self.learn.epoch)

    def _stop(self, epoch):
        self.stopped_epoch = int(epoch)
        if self.verbose:
            since = f'since epoch {self.best_epoch} ({self.monitor}={self.best:.6g})' if self.best is not None else \
                f'(all {self.wait} counted epochs were NaN)'
            main_print(f'EarlyStopping: no improvement in {self.monitor} for {self.wait} epochs {since}; '
                       f'stopped after epoch {epoch}')
        raise CancelFitException()

    def after_fit(self):
        self._active = False
