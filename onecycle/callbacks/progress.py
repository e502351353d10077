"""Progress output, in a terminal or a notebook (fastprogress bars), and in a log or CI run (plain lines).

- ``ProgressCallback``: bars over epochs and batches and the per-epoch results table of a fit;
- ``RangeTestProgress``: the LR range test's own bar (step k of num_it, current lr, smoothed loss) and
  one closing line, in place of the epoch table, whose valid columns a range test leaves empty;
- ``StageProgress``: a bar per stage of a multi-run procedure such as ``tune`` and one line per
  stage (what it tried, what it chose, the steps it spent).

Where output goes to a file or a pipe there are no bars: one line per fit, range test or stage."""
from __future__ import annotations

import math
import sys
import time
import warnings

from ..core.callback import Callback

__all__ = ['ProgressCallback', 'RangeTestProgress', 'StageProgress', 'fmt_lr']


def _fmt(v):
    if isinstance(v, float):
        if math.isnan(v): return 'nan'
        return f'{v:.6f}'
    return str(v)


def _fmt_time(t: float) -> str:
    t = int(t)
    h, m, s = t // 3600, (t // 60) % 60, t % 60
    return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


_told_no_bars = False


def _interactive() -> bool:
    """Bars only where a person watches (a notebook or a terminal, not a log file or a CI run) and fastprogress
    is there to draw them. Without it (installed with --no-deps, or a checkout on PYTHONPATH) training goes on
    with the plain lines a log gets, and a person watching is told once why there are no bars."""
    terminal = hasattr(sys.stdout, 'isatty') and sys.stdout.isatty()
    try: from fastprogress.fastprogress import IN_NOTEBOOK
    except ImportError:
        global _told_no_bars
        if (terminal or 'ipykernel' in sys.modules) and not _told_no_bars:
            _told_no_bars = True
            warnings.warn('progress: fastprogress is not installed, so progress is printed as plain lines, '
                          'without bars; pip install fastprogress for bars', stacklevel=2)
        return False
    return IN_NOTEBOOK or terminal


def fmt_lr(v) -> str:
    "A learning rate as progress lines print it: 3.2e-03."
    return f'{v:.1e}' if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def _replaced(learn) -> bool:
    "A callback of this fit shows its own progress (``replaces_progress = True``): the epoch table stands aside."
    return any(getattr(c, 'replaces_progress', False) for c in learn.cbs)


class ProgressCallback(Callback):
    """A master bar over epochs, a bar over batches, and a table row per epoch. Reads no loss per
    batch. Where output goes to a file or a pipe, only the table is printed. Silent during a fit with
    a callback that has ``replaces_progress = True`` (the range test's bar, for one)."""
    order = 60
    mbar = pbar = None
    _quiet = False

    def before_fit(self):
        self.mbar, self._quiet = None, _replaced(self.learn)
        if self._quiet: return
        if _interactive():
            from fastprogress.fastprogress import master_bar
            self.mbar = master_bar(range(self.learn.n_epoch))
            self.mbar.on_iter_begin()
        self._write(self.learn.recorder.metric_names)

    def _write(self, cells):
        if self.mbar is not None: self.mbar.write(cells, table=True)
        else: print('  '.join(f'{c:<10s}' for c in cells).rstrip(), flush=True)

    def before_epoch(self):
        if getattr(self, 'mbar', None) is not None: self.mbar.update(self.learn.epoch)

    def before_train(self): self._launch()
    def before_validate(self): self._launch()

    def _launch(self):
        if self._quiet or (self.mbar is None and not _interactive()): return
        from fastprogress.fastprogress import progress_bar
        self.pbar = progress_bar(self.learn.dl, parent=getattr(self, 'mbar', None), leave=False)
        self.pbar.update(0)

    def after_batch(self):
        if self.pbar is not None: self.pbar.update(self.learn.iter + 1)

    def after_train(self): self._close()
    def after_validate(self): self._close()

    def _close(self):
        if getattr(self, 'pbar', None) is not None:
            self.pbar.on_iter_end(); self.pbar = None

    def after_epoch(self):
        row = self.learn.recorder.epochs[-1] if self.learn.recorder.epochs else None
        if row is None or self._quiet: return
        vals = [str(row['epoch'])] + [_fmt(row.get(k, float('nan'))) for k in self.learn.recorder.metric_names[1:-1]]
        self._write(vals + [_fmt_time(row['time'])])

    def after_fit(self):
        # Runs on errors and interrupts too: close whatever bars are open.
        self._close()
        if getattr(self, 'mbar', None) is not None:
            self.mbar.on_iter_end(); self.mbar = None
        self._quiet = False


class _Bar:
    "A fastprogress bar over `total` steps with a comment, where a person watches; nothing elsewhere."
    def __init__(self, total):
        self.bar = None
        if _interactive():
            from fastprogress.fastprogress import progress_bar
            self.bar = progress_bar(range(total), leave=False)
            self.bar.update(0)

    def update(self, k, comment=''):
        if self.bar is None: return
        self.bar.comment = comment
        self.bar.update(min(k, self.bar.total))

    def close(self):
        if self.bar is not None: self.bar.on_iter_end(); self.bar = None


class RangeTestProgress(Callback):
    """The LR range test's progress: a bar over its `num_it` steps showing the current lr and the
    smoothed training loss (debiased EMA with `beta`, as the test smooths it), then one line: steps
    run, lr range covered, lowest smoothed loss and where, early stop, seconds. Replaces the epoch
    table for that fit. It runs before the range test's own callback (order 5), which may stop the fit
    at a step, so that it sees every step."""
    order = 4
    replaces_progress = True
    _bar, lrs = None, ()   # after_fit runs after a failed before_fit too: it then closes and prints nothing

    def __init__(self, num_it, beta=0.98, label='LR range test'):
        self.num_it, self.beta, self.label = num_it, beta, label

    def before_fit(self):
        self._t0, self.k, self._avg, self.lrs, self.smooth = time.perf_counter(), 0, 0., [], []
        self._bar = _Bar(self.num_it)

    def after_step(self):
        self.k += 1
        loss = float(self.learn.loss.detach())
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        s = self._avg / (1 - self.beta ** self.k)
        lr = float(self.learn.opt.param_groups[-1]['lr'])
        self.lrs.append(lr); self.smooth.append(s)
        self._bar.update(self.k, f'lr {fmt_lr(lr)}  smoothed loss {s:.4g}')

    def after_fit(self):
        if self._bar is not None: self._bar.close()
        if not self.lrs: return
        finite = [(v, lr) for v, lr in zip(self.smooth, self.lrs) if math.isfinite(v)]
        low = f', lowest smoothed loss {min(finite)[0]:.4g} at lr {fmt_lr(min(finite)[1])}' if finite else ''
        stop = ', stopped early (the loss diverged)' if self.k < self.num_it else ''
        print(f'{self.label}: {self.k} of {self.num_it} steps, lr {fmt_lr(self.lrs[0])} to {fmt_lr(self.lrs[-1])}'
              f'{low}{stop}; {time.perf_counter() - self._t0:.1f}s', flush=True)


class StageProgress(Callback):
    """Progress of a procedure made of stages of short runs (``tune``): while it is attached to the
    learner, ``begin(stage, total)`` opens a bar over the stage's `total` optimizer steps (counted
    across all the fits the stage runs) and ``end(line)`` closes it and prints `line`, one per stage,
    prefixed with `prefix`. Reads nothing per step but the step count; with ``enabled=False`` silent."""
    order = 61
    replaces_progress = True

    def __init__(self, prefix='tune', enabled=True):
        self.prefix, self.enabled, self.stage, self.k, self._bar = prefix, enabled, None, 0, None

    def begin(self, stage, total):
        self.close()
        if not self.enabled: return
        self.stage, self.k, self.total = stage, 0, max(int(total), 1)
        self._bar = _Bar(self.total)

    def after_step(self):
        self.k += 1
        if self._bar is not None: self._bar.update(self.k, f'{self.prefix}: {self.stage}, {self.k} steps')

    def end(self, line):
        self.close()
        if self.enabled: print(f'{self.prefix}: {line}', flush=True)

    def close(self):
        if self._bar is not None: self._bar.close(); self._bar = None
