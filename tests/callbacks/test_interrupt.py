"""Interruption and callback faults: the fit ends cleanly, nothing recorded is lost, the learner trains on."""
import signal

import pytest
import torch
from torch import nn

from onecycle import Callback, GradAccumulation, MixedPrecision, ProgressCallback, accuracy


class InterruptAt(Callback):
    "Ctrl-C after the n-th training batch (order 100: after the Recorder, so that batch is recorded)."
    order = 100
    def __init__(self, n, real_signal=False): self.n, self.seen, self.real_signal = n, 0, real_signal
    def after_batch(self):
        if self.learn.training:
            self.seen += 1
            if self.seen == self.n:
                if self.real_signal: signal.raise_signal(signal.SIGINT)
                raise KeyboardInterrupt()


class Tracks(Callback):
    "Counts the cleanups it sees."
    def __init__(self): self.after_fit_calls = 0
    def after_fit(self): self.after_fit_calls += 1


def _learner(make_learner, **kw):
    return make_learner(opt_func=torch.optim.AdamW, metrics=[accuracy], dls_kw=dict(shuffle=True), **kw)


def _bars_closed(learn):
    pc = next(c for c in learn.cbs if isinstance(c, ProgressCallback))
    return getattr(pc, 'pbar', None) is None and getattr(pc, 'mbar', None) is None


@pytest.mark.parametrize('real_signal', [False, True])
def test_keyboard_interrupt_ends_fit_cleanly_and_resumes_exactly(make_learner, real_signal):
    ref = _learner(make_learner)
    ref.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3)])
    tracks = Tracks()
    learn = _learner(make_learner, cbs=[tracks], progress=True)
    cbs_before = list(learn.cbs)
    with pytest.raises(KeyboardInterrupt):   # raised again: Ctrl-C still stops a script
        learn.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3), InterruptAt(7, real_signal)])
    assert tracks.after_fit_calls == 1                       # cleanup ran
    assert _bars_closed(learn)                               # progress bars closed
    assert learn.cbs == cbs_before and learn.accum_steps == 1   # the fit's own callbacks are gone
    assert torch.is_grad_enabled()
    assert learn.recorder.losses == ref.recorder.losses[:7]  # every batch up to the interrupt is on record
    assert learn.recorder.epochs[0]['train_loss'] == ref.recorder.epochs[0]['train_loss']
    learn.fit_one_cycle(3, 1e-2, callbacks=[GradAccumulation(3)], resume=True)   # carry on where it stopped
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), learn.model.state_dict().values()))
    assert learn.recorder.losses == ref.recorder.losses
    assert [e['valid_loss'] for e in learn.recorder.epochs] == [e['valid_loss'] for e in ref.recorder.epochs]


def test_interrupt_inside_the_forward_pass(make_learner):
    class Model(nn.Module):
        def __init__(self):
            super().__init__(); self.lin = nn.Linear(8, 2); self.calls = 0
        def forward(self, x):
            self.calls += 1
            if self.calls == 3: raise KeyboardInterrupt()
            return self.lin(x)
    tracks = Tracks()
    learn = _learner(make_learner, model=Model(), cbs=[tracks], progress=True)
    with pytest.raises(KeyboardInterrupt):
        learn.fit(2, cbs=[MixedPrecision()])
    assert tracks.after_fit_calls == 1 and _bars_closed(learn) and torch.is_grad_enabled()
    assert not torch.is_autocast_enabled('cpu')             # MixedPrecision left no autocast context open
    assert len(learn.recorder.losses) == 2
    learn.fit(1)                                             # the learner can fit again
    assert len(learn.recorder.losses) == 4


class Boom(Callback):
    def __init__(self, event): self.event = event
    def __getattr__(self, name):
        if name == self.__dict__.get('event'): return self._boom
        return super().__getattr__(name)
    def _boom(self): raise ValueError('boom')


@pytest.mark.parametrize('event', ['before_fit', 'before_epoch', 'after_pred', 'after_loss', 'before_step',
                                   'after_batch', 'after_validate', 'after_epoch'])
def test_callback_error_names_callback_and_event_and_learner_trains_on(make_learner, event):
    tracks = Tracks()
    learn = _learner(make_learner, cbs=[tracks], progress=True)
    learn.fit(1, lr=1e-2)
    bad = Boom(event)
    learn.add_cb(bad)
    with pytest.raises(ValueError, match='boom') as ei:
        learn.fit(1, cbs=[GradAccumulation(2), MixedPrecision()])
    assert f'(raised in callback Boom, event {event})' in ei.value.__notes__
    assert tracks.after_fit_calls == 2 and _bars_closed(learn) and learn.accum_steps == 1
    assert len(learn.recorder.epochs) in (0, 1)
    learn.remove_cb(bad)
    learn.fit(1)
    assert len(learn.recorder.epochs) == 1 and all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_failing_cleanup_does_not_hide_the_interrupt_or_skip_other_cleanups(make_learner):
    class BadCleanup(Callback):
        order = 0
        def after_fit(self): raise RuntimeError('cleanup failed')
    tracks = Tracks()
    learn = _learner(make_learner, cbs=[tracks], progress=True)
    with pytest.raises(KeyboardInterrupt) as ei:
        learn.fit(2, cbs=[BadCleanup(), InterruptAt(2)])
    assert any('BadCleanup raised in after_fit' in n and 'cleanup failed' in n for n in ei.value.__notes__)
    assert tracks.after_fit_calls == 1 and _bars_closed(learn)
