"""Progress bars (fastprogress) and the per-epoch results table, in a terminal or a notebook."""
from __future__ import annotations

import math
import sys

from ..core.callback import Callback

__all__ = ['ProgressCallback']


def _fmt(v):
    if isinstance(v, float):
        if math.isnan(v): return 'nan'
        return f'{v:.6f}'
    return str(v)


def _fmt_time(t: float) -> str:
    t = int(t)
    h, m, s = t // 3600, (t // 60) % 60, t % 60
    return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


def _interactive() -> bool:
    "Bars only where a person watches: a notebook or a terminal, not a log file or a CI run."
    from fastprogress.fastprogress import IN_NOTEBOOK
    return IN_NOTEBOOK or (hasattr(sys.stdout, 'isatty') and sys.stdout.isatty())


class ProgressCallback(Callback):
    """A master bar over epochs, a bar over batches, and a table row per epoch. Reads no loss per
    batch. Where output goes to a file or a pipe, only the table is printed."""
    order = 60
    mbar = pbar = None

    def before_fit(self):
        self.mbar = None
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
        if self.mbar is None and not _interactive(): return
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
        if row is None: return
        vals = [str(row['epoch'])] + [_fmt(row.get(k, float('nan'))) for k in self.learn.recorder.metric_names[1:-1]]
        self._write(vals + [_fmt_time(row['time'])])

    def after_fit(self):
        # Runs on errors and interrupts too: close whatever bars are open.
        self._close()
        if getattr(self, 'mbar', None) is not None:
            self.mbar.on_iter_end(); self.mbar = None
