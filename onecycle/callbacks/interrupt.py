"""Ctrl-C during a fit stops it at a consistent point, so that ``fit(..., resume=True)`` continues it exactly.

A real SIGINT can arrive at any bytecode: halfway through the optimizer's loop over the parameters,
between a backward pass and its step, inside a BatchNorm update. A ``KeyboardInterrupt`` raised there
would leave the weights, the gradients or the running statistics half updated, and a resume would
apply part of that batch twice. ``InterruptGuard`` (always on in ``Learner``: ``learn.interrupt_guard``)
takes SIGINT over for the length of a fit: the first Ctrl-C is only noted, and ``KeyboardInterrupt``
is raised at the next batch boundary (once the batch, its step and its recording are complete, or at
the end of an epoch), where the fit's state is one a resume continues bitwise. A second Ctrl-C before
that boundary stops at once, as usual (a resume from that state is no longer exact: resume from a
checkpoint file instead). The previous handler is put back when the fit ends.

Under torchrun the ranks agree on the stop (the DistributedCallback adds the request to the all-reduce
it already does), so that they all stop after the same batch rather than one waiting for the others.
"""
from __future__ import annotations

import signal
import sys
import threading

from ..core.callback import Callback

__all__ = ['InterruptGuard']


class InterruptGuard(Callback):
    """Defers Ctrl-C (SIGINT) during a fit to the next batch boundary; see the module docstring.

    ``pending`` is True from a Ctrl-C until the interrupt is raised. It only acts in the main thread
    (where Python delivers signals) and leaves SIGINT alone when it is ignored (``SIG_IGN``).
    ``agree`` is set by a callback that makes several processes decide together: a function
    ``agree(pending, where) -> bool`` (`where` is 'batch' or 'epoch') that every rank calls at every
    boundary and that returns the same answer on every rank; None for a single process."""
    order = 1000   # last at every event: the batch is recorded (and maybe saved) before the interrupt is raised

    def __init__(self):
        self.pending, self.installed, self.agree = False, False, None
        self._prev = None

    # --- the handler ----------------------------------------------------------------------------
    def _handler(self, signum, frame):
        if not self.pending:
            self.pending = True
            return
        prev = self._restore()   # a second Ctrl-C: stop now, as if the guard were not there
        if callable(prev) and prev is not signal.default_int_handler: prev(signum, frame)
        raise KeyboardInterrupt

    def _restore(self):
        prev, self._prev = self._prev, None
        if self.installed:
            self.installed = False
            try: signal.signal(signal.SIGINT, prev)
            except (ValueError, TypeError): pass   # not the main thread any more, or an unknown handler
        return prev

    # --- events ---------------------------------------------------------------------------------
    def before_fit(self):
        self.pending = False
        if self.installed or threading.current_thread() is not threading.main_thread(): return
        prev = signal.getsignal(signal.SIGINT)
        if prev is None or prev is signal.SIG_IGN: return   # installed from outside Python, or ignored on purpose
        self._prev = prev
        signal.signal(signal.SIGINT, self._handler)
        self.installed = True

    def _stop_here(self, where):
        if not (self.agree(self.pending, where) if self.agree is not None else self.pending): return
        self.pending = False
        raise KeyboardInterrupt(f'stopped by Ctrl-C at the end of a{"n" if where == "epoch" else ""} {where}: '
                                'fit(..., resume=True) continues exactly')

    def after_batch(self): self._stop_here('batch')
    def after_epoch(self): self._stop_here('epoch')

    def after_fit(self):
        self._restore()
        pending, self.pending = self.pending, False
        # A Ctrl-C after the last boundary: the fit is complete, but the script still stops, as asked.
        if pending and sys.exc_info()[0] is None: raise KeyboardInterrupt('Ctrl-C during the end of the fit')
