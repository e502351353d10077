"""Fault suite: real SIGINTs at random instants and at every event of the loop (and inside the forward
pass, the backward pass, the loss and the optimizer step), over several models (plain MLP; BatchNorm +
Dropout + gradient accumulation; bfloat16 autocast; float16 with a GradScaler). Every interrupted fit,
resumed in memory and (a subset) in a new process, ends bitwise on the uninterrupted run: weights and
the whole recorded history."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import fault_script as fs
from onecycle import Callback
from onecycle.core.callback import EVENTS

REPO = str(Path(__file__).resolve().parents[2])
SCRIPT = str(Path(__file__).resolve().parents[1] / 'fault_script.py')
pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason='signals are delivered to the main thread only')


@pytest.fixture(scope='module')
def refs(tmp_path_factory):
    "The uninterrupted runs (weights, history, seconds per fit), also written to disk for the new process."
    out = tmp_path_factory.mktemp('faults')
    r = {}
    for kind in fs.KINDS:
        fs.fit(fs.make(kind), kind)   # warm up
        t = time.perf_counter(); learn = fs.make(kind); fs.fit(learn, kind); secs = time.perf_counter() - t
        r[kind] = (fs.weights(learn), fs.history(learn), secs)
        torch.save(r[kind][0], out / f'ref_{kind}.pt')
        (out / f'ref_{kind}.json').write_text(json.dumps(r[kind][1]))
    return out, r


@pytest.fixture
def outer_handler():
    "SIGINTs that land outside a fit are noted here rather than raised in the test's own code."
    late = []
    prev = signal.signal(signal.SIGINT, lambda s, f: late.append(time.perf_counter()))
    yield late
    signal.signal(signal.SIGINT, prev)


def _resume_in_new_process(out):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': REPO + os.pathsep + os.environ.get('PYTHONPATH', '')}
    p = subprocess.run([sys.executable, SCRIPT, 'resume', str(out)], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_sigint_at_random_instants_resumes_bitwise(refs, outer_handler):
    out, r = refs
    rng = random.Random(1234)
    n_trials, interrupted, saved = 60, 0, 0
    for i in range(n_trials):
        kind = fs.KINDS[i % len(fs.KINDS)]
        ref_w, ref_h, secs = r[kind]
        delay = rng.uniform(0, 1.1 * secs)
        learn = fs.make(kind)
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try: fs.fit(learn, kind); stopped = False
        except KeyboardInterrupt: stopped = True
        timer.join()
        time.sleep(0.001)   # let a signal that came after the fit reach the outer handler
        if stopped:
            interrupted += 1
            assert learn.interrupt_guard.pending is False and not learn.interrupt_guard.installed
            if saved < 12 and learn.position.batches_done:   # a subset resumes in a new process
                learn.save(out / f'{kind}__random{i}.ckpt'); saved += 1
            fs.fit(learn, kind, resume=True)
        assert fs.same(learn, ref_w, ref_h) == {'weights': True, 'history': True}, (kind, delay, stopped)
        assert signal.getsignal(signal.SIGINT) is not learn.interrupt_guard._handler
    print(f'{interrupted} of {n_trials} random SIGINTs landed during the fit')
    assert interrupted >= 10, f'only {interrupted} of {n_trials} trials were interrupted during the fit'


class SigintAt(Callback):
    "Sends a real SIGINT to this process at the n-th time `where` happens (an event, or a hook inside an op)."
    order = 5

    def __init__(self, where, n):
        self.where, self.n, self.seen, self._hooks = where, n, 0, []

    def _tick(self, *args):
        self.seen += 1
        if self.seen == self.n: signal.raise_signal(signal.SIGINT)

    def __getattr__(self, name):
        if name == self.__dict__.get('where'): return self._tick
        return super().__getattr__(name)

    def before_fit(self):
        learn = self.learn
        if self.where == 'before_fit': self._tick()
        bn = [m for m in learn.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        lin = [m for m in learn.model.modules() if isinstance(m, torch.nn.Linear)]
        if self.where == 'inside_forward':
            self._hooks.append((bn or lin)[0].register_forward_hook(lambda m, i, o: self._tick()))
        if self.where == 'inside_backward':
            self._hooks.append(lin[0].weight.register_hook(lambda g: self._tick()))
        if self.where == 'inside_step':   # between the decoupled weight decay (a pre-hook) and the update
            self._hooks.append(learn.opt.register_step_pre_hook(lambda o, a, k: self._tick()))
        if self.where == 'after_opt_step':
            self._hooks.append(learn.opt.register_step_post_hook(lambda o, a, k: self._tick()))
        if self.where == 'inside_loss':
            loss = learn.loss_func
            def hooked(*a):
                out = loss(*a); self._tick(); return out
            learn.loss_func, self._loss = hooked, loss

    def after_fit(self):
        if self.where == 'after_fit': self._tick()
        for h in self._hooks: h.remove()
        if hasattr(self, '_loss'): self.learn.loss_func = self._loss


# 7 training batches and 2 validation batches per epoch, accumulation in groups of 3:
# the 5th time is mid-epoch, mid-group in training; the 8th is the first validation batch.
_BATCH_EVENTS = ('before_batch', 'after_pred', 'after_loss', 'after_batch', 'inside_forward', 'inside_loss')
_TRAIN_ONLY = ('before_backward', 'after_backward', 'before_step', 'after_step', 'inside_backward', 'inside_step',
               'after_opt_step')
WHERE = ([(e, 1) for e in EVENTS if e not in _BATCH_EVENTS + _TRAIN_ONLY]
         + [(e, n) for e in _BATCH_EVENTS for n in (5, 8, 16)]
         + [(e, n) for e in _TRAIN_ONLY for n in (3, 5)])


@pytest.mark.parametrize('kind', ['mlp', 'bn_dropout_accum'])
def test_sigint_at_every_event_resumes_bitwise(refs, kind):
    out, r = refs
    ref_w, ref_h, _ = r[kind]
    prev = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a script
    try:
        outcomes = {}
        for where, n in WHERE:
            learn = fs.make(kind)
            try: fs.fit(learn, kind, [SigintAt(where, n)]); stopped = False
            except KeyboardInterrupt: stopped = True
            outcomes[(where, n)] = stopped
            if stopped:
                if n == 5 and kind != 'mlp': learn.save(out / f'{kind}__{where}.ckpt')
                fs.fit(learn, kind, resume=True)
            assert fs.same(learn, ref_w, ref_h) == {'weights': True, 'history': True}, (where, n)
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert all(outcomes.values()), [k for k, v in outcomes.items() if not v]   # every SIGINT stopped the fit
    finally: signal.signal(signal.SIGINT, prev)


def test_second_sigint_stops_at_once(refs):
    class Twice(Callback):
        def after_pred(self):
            if self.learn.training and self.learn.iter == 2:
                signal.raise_signal(signal.SIGINT)
                self.learn.seen_second = True
                signal.raise_signal(signal.SIGINT)   # raises KeyboardInterrupt here, before the batch ends
                self.learn.after_second = True
    prev = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        learn = fs.make('mlp')
        with pytest.raises(KeyboardInterrupt):
            fs.fit(learn, 'mlp', [Twice()])
        assert learn.seen_second and not hasattr(learn, 'after_second')
        assert learn.position.batches_done == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally: signal.signal(signal.SIGINT, prev)


def test_checkpoints_of_interrupted_fits_resume_bitwise_in_a_new_process(refs):
    "Runs after the trials above (same module): every checkpoint they saved resumes in one new process."
    out, _ = refs
    if not list(out.glob('*.ckpt')): pytest.skip('run with the trials above, which write the checkpoints')
    results = _resume_in_new_process(out)
    assert len(results) >= 20
    bad = {k: v for k, v in results.items() if v != {'weights': True, 'history': True}}
    assert not bad
