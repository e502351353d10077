"""Progress bars (fastprogress) and the per-epoch results table, in a terminal or a notebook."""
from __future__ import annotations

import math

from .callback import Callback

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


class ProgressCallback(Callback):
    "A master bar over epochs, a bar over batches, and a table row per epoch. Reads no loss per batch."
    order = 60

    def before_fit(self):
        from fastprogress.fastprogress import master_bar
        self.mbar = master_bar(range(self.learn.n_epoch))
        self.mbar.on_iter_begin()
        self.mbar.write(self.learn.recorder.metric_names, table=True)

    def before_epoch(self):
        if getattr(self, 'mbar', None) is not None: self.mbar.update(self.learn.epoch)

    def before_train(self): self._launch()
    def before_validate(self): self._launch()

    def _launch(self):
        from fastprogress.fastprogress import progress_bar
        self.pbar = progress_bar(self.learn.dl, parent=getattr(self, 'mbar', None), leave=False)
        self.pbar.update(0)

    def after_batch(self):
        self.pbar.update(self.learn.iter + 1)

    def after_train(self): self._close()
    def after_validate(self): self._close()

    def _close(self):
        if getattr(self, 'pbar', None) is not None:
            self.pbar.on_iter_end(); self.pbar = None

    def after_epoch(self):
        row = self.learn.recorder.epochs[-1] if self.learn.recorder.epochs else None
        if row is None or getattr(self, 'mbar', None) is None: return
        vals = [str(row['epoch'])] + [_fmt(row.get(k, float('nan'))) for k in self.learn.recorder.metric_names[1:-1]]
        self.mbar.write(vals + [_fmt_time(row['time'])], table=True)

    def after_fit(self):
        # Runs on errors and interrupts too: close whatever bars are open.
        self._close()
        if getattr(self, 'mbar', None) is not None:
            self.mbar.on_iter_end(); self.mbar = None
