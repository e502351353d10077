"""The Learner's loop: events, callback order and lifetime, cancel semantics, errors, validation, learning."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import (EVENTS, Callback, CancelBackwardException, CancelBatchException, CancelEpochException,
                      CancelFitException, CancelStepException, CancelTrainException, CancelValidateException,
                      DataLoaders, Learner, accuracy, fit_one_cycle)


class EventLog(Callback):
    "Records every event it sees as (event, training?, iter); raises `exc` at `at` (event, iter, epoch) once."
    order = -100

    def __init__(self, at=None, exc=None):
        self.log, self.at, self.exc = [], at, exc

    def _event(self, name):
        learn = self.learn
        it = getattr(learn, 'iter', None) if name.endswith(('batch', 'pred', 'loss', 'backward', 'step')) else None
        self.log.append(name if it is None else f'{name}:{"t" if learn.training else "v"}{it}')
        if self.at is not None and (name, it, learn.epoch) == self.at:
            self.at = None
            raise self.exc()

for _e in EVENTS:
    setattr(EventLog, _e, (lambda e: lambda self: self._event(e))(_e))


def _batch(kind, i, training=True):
    ev = ['before_batch', 'after_pred', 'after_loss']
    if training: ev += ['before_backward', 'after_backward', 'before_step', 'after_step']
    return [f'{e}:{kind}{i}' for e in ev + ['after_batch']]


def _epoch(n_train=2, n_valid=1):
    return (['before_epoch', 'before_train'] + sum((_batch('t', i) for i in range(n_train)), []) +
            ['after_train', 'before_validate'] + sum((_batch('v', i, False) for i in range(n_valid)), []) +
            ['after_validate', 'after_epoch'])


VALID_TAIL = ['before_validate'] + _batch('v', 0, False) + ['after_validate', 'after_epoch']


@pytest.fixture
def tiny(make_learner):
    "A learner with 2 training batches and 1 validation batch per epoch."
    return lambda **kw: make_learner(dls_kw=dict(n_train=32, bs=16, n_valid=32), **kw)


def test_event_sequence_of_a_tiny_fit(tiny):
    learn, log = tiny(), EventLog()
    learn.fit(2, cbs=[log])
    assert log.log == ['before_fit'] + _epoch() + _epoch() + ['after_fit']


def test_validate_fires_only_the_validation_events(tiny):
    log = EventLog()
    learn = tiny(cbs=[log])
    learn.validate()
    assert log.log == ['before_validate'] + _batch('v', 0, False) + ['after_validate']


# (where to raise: (event, iter, epoch)), exception, the events of the first epoch that must follow
CANCELS = {
    'batch': (('after_pred', 0, 0), CancelBatchException,
              ['before_batch:t0', 'after_pred:t0', 'after_batch:t0'] + _batch('t', 1) + ['after_train']),
    'backward': (('before_backward', 0, 0), CancelBackwardException,
                 ['before_batch:t0', 'after_pred:t0', 'after_loss:t0', 'before_backward:t0',
                  'before_step:t0', 'after_step:t0', 'after_batch:t0'] + _batch('t', 1) + ['after_train']),
    'step': (('before_step', 0, 0), CancelStepException,
             ['before_batch:t0', 'after_pred:t0', 'after_loss:t0', 'before_backward:t0', 'after_backward:t0',
              'before_step:t0', 'after_batch:t0'] + _batch('t', 1) + ['after_train']),
    'train': (('after_batch', 0, 0), CancelTrainException, _batch('t', 0) + ['after_train']),
}


@pytest.mark.parametrize('stage', list(CANCELS))
def test_cancel_inside_a_training_pass(tiny, stage):
    at, exc, want = CANCELS[stage]
    learn, log = tiny(), EventLog(at, exc)
    learn.fit(2, cbs=[log])
    first = log.log[:log.log.index('after_epoch') + 1]
    assert first == ['before_fit', 'before_epoch', 'before_train'] + want + VALID_TAIL
    assert log.log[len(first):] == _epoch() + ['after_fit']       # the next epoch is untouched


def test_cancel_step_keeps_gradients_and_takes_no_step(tiny):
    learn = tiny()
    seen = []
    class SkipFirstStep(Callback):
        def before_step(self):
            if self.learn.iter == 0: raise CancelStepException()
        def after_batch(self):
            if self.learn.training: seen.append(self.learn.model[0].weight.grad is not None)
    learn.fit(1, cbs=[SkipFirstStep()])
    assert learn.step_count == 1 and seen == [True, False]   # kept after the skipped step, cleared after the real one


def test_cancel_validate(tiny):
    learn, log = tiny(), EventLog(('before_validate', None, 0), CancelValidateException)
    learn.fit(1, cbs=[log])
    assert log.log == (['before_fit'] + _epoch()[:-len(VALID_TAIL)] +
                       ['before_validate', 'after_validate', 'after_epoch', 'after_fit'])
    assert math.isnan(learn.recorder.epochs[0]['valid_loss'])


def test_cancel_epoch(tiny):
    learn, log = tiny(), EventLog(('before_train', None, 0), CancelEpochException)
    learn.fit(2, cbs=[log])
    assert log.log == ['before_fit', 'before_epoch', 'before_train', 'after_epoch'] + _epoch() + ['after_fit']
    assert learn.step_count == 2 and len(learn.recorder.epochs) == 2


def test_a_cancelled_epoch_does_not_report_the_previous_validation(tiny):
    learn = tiny(metrics=[accuracy])
    learn.fit(2, cbs=[EventLog(('before_train', None, 1), CancelEpochException)])
    first, second = learn.recorder.epochs
    assert not math.isnan(first['valid_loss'])
    assert math.isnan(second['valid_loss']) and math.isnan(second['accuracy']) and math.isnan(second['train_loss'])


@pytest.mark.parametrize('at', [('before_fit', None, 0), ('after_step', 0, 0), ('before_validate', None, 0),
                                ('after_epoch', None, 0)])
def test_cancel_fit_runs_after_fit_only(tiny, at):
    learn, log = tiny(), EventLog(at, CancelFitException)
    learn.fit(3, cbs=[log])
    name = at[0] if at[1] is None else f'{at[0]}:t{at[1]}'
    assert log.log[-2:] == [name, 'after_fit']
    assert 'before_epoch' not in log.log[log.log.index(name):]


def test_an_error_in_a_callback_names_the_callback_and_event(tiny):
    class Faulty(Callback):
        def after_loss(self):
            if self.learn.training: raise ZeroDivisionError('oops')
    learn, log = tiny(), EventLog()
    with pytest.raises(ZeroDivisionError, match='oops') as ei:
        learn.fit(1, cbs=[Faulty(), log])
    notes = ' '.join(getattr(ei.value, '__notes__', []))
    assert 'Faulty' in notes and 'after_loss' in notes
    assert log.log[-1] == 'after_fit'                        # cleanup still ran
    assert all(not isinstance(c, (Faulty, EventLog)) for c in learn.cbs)   # and the call's callbacks are gone


def test_after_fit_runs_on_keyboard_interrupt(tiny):
    class Interrupt(Callback):
        def after_batch(self): raise KeyboardInterrupt
    learn, log = tiny(), EventLog()
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, cbs=[Interrupt(), log])
    assert log.log[-1] == 'after_fit'


def test_callbacks_sorted_by_order_ties_in_insertion_order(tiny):
    class A(Callback): order = 5
    class B(Callback): order = -1
    calls = []
    class C(Callback):
        order = 5
        def before_fit(self): calls.append('C')
    class D(Callback):
        def before_fit(self): calls.append('D')
    class E(Callback):
        order = 5
        def before_fit(self): calls.append('E')
    learn = tiny()
    a, c, e = A(), C(), E()
    learn.add_cbs([a, B, c, D(), e])           # a class is instantiated
    names = [type(cb).__name__ for cb in learn.cbs if type(cb).__name__ in 'ABCDE' or cb is learn.recorder]
    assert names == ['B', 'D', 'A', 'C', 'E', 'Recorder']
    orders = [getattr(cb, 'order', 0) for cb in learn.cbs]
    assert orders == sorted(orders) and a in learn.cbs and c.learn is learn
    learn.fit(1)
    assert calls == ['D', 'C', 'E']
    learn.remove_cb(c)
    calls.clear(); learn.fit(1)
    assert calls == ['D', 'E']


def test_fit_callbacks_live_for_that_call_only(tiny):
    learn = tiny()
    before = list(learn.cbs)
    log = EventLog()
    learn.fit(1, cbs=[log])
    assert learn.cbs == before and log.log
    n = len(log.log)
    learn.fit(1)
    assert len(log.log) == n                  # not called by a later fit
    kept = EventLog()
    learn = tiny(cbs=[kept])
    learn.fit(1); learn.fit(1)
    assert kept.log.count('before_fit') == 2


def test_callback_reads_learner_attributes():
    class Peek(Callback):
        def after_pred(self): self.shapes = (tuple(self.pred.shape), self.model is self.learn.model)
    cb = Peek()
    with pytest.raises(AttributeError): cb.model          # not attached yet
    learn = Learner(nn.Linear(2, 2), (DataLoader(TensorDataset(torch.ones(4, 2), torch.zeros(4).long()), batch_size=4),
                                      None), nn.CrossEntropyLoss(), progress=False, device='cpu', cbs=[cb])
    learn.fit(1)
    assert cb.shapes == ((4, 2), True)


def test_validate_returns_loss_and_metrics_by_name(make_learner, make_dls):
    def error(pred, y): return (pred.argmax(-1) != y).float().mean()
    dls = make_dls(n_valid=48, bs=16)                           # validation batches of 32 and 16
    learn = make_learner(dls=dls, metrics=[accuracy, error], model_kw=dict(bn=True))
    buffers = [b.clone() for b in learn.model.buffers()]
    res = learn.validate()
    assert set(res) == {'valid_loss', 'accuracy', 'error'}
    x, y = dls[1].dataset.tensors
    learn.model.eval()
    with torch.no_grad(): pred = learn.model(x)
    assert res['valid_loss'] == pytest.approx(nn.functional.cross_entropy(pred, y).item(), rel=1e-5)
    assert res['accuracy'] == pytest.approx(accuracy(pred, y).item())
    assert res['error'] == pytest.approx(1 - res['accuracy'])
    assert all(torch.equal(a, b) for a, b in zip(buffers, learn.model.buffers()))   # eval mode: BN stats untouched
    learn.model.train()
    learn.validate()
    assert learn.model.training                               # the mode is put back
    other = learn.validate(dls[0])                            # any loader
    assert set(other) == {'valid_loss', 'accuracy', 'error'} and other['valid_loss'] != res['valid_loss']


def _xor_dls(n=512, bs=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, 2, generator=g) * 2 - 1
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    train = DataLoader(TensorDataset(x[:n], y[:n]), batch_size=bs, shuffle=True, generator=g)
    return DataLoaders(train, DataLoader(TensorDataset(x[n:], y[n:]), batch_size=256))


def test_a_small_model_actually_learns():
    # XOR of the signs: not linearly separable, so the hidden layer has to learn something
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    learn = Learner(model, _xor_dls(), nn.CrossEntropyLoss(), metrics=[accuracy], progress=False, device='cpu')
    start = learn.validate()
    assert start['valid_loss'] > 0.6                           # chance is ln 2 = 0.69
    fit_one_cycle(learn, 8, 2e-2)
    end = learn.validate()
    assert end['valid_loss'] < 0.2 and end['accuracy'] > 0.93
    rows = learn.recorder.epochs
    assert rows[-1]['train_loss'] < rows[0]['train_loss'] / 2


def _empty_dl():
    return DataLoader(TensorDataset(torch.zeros(3, 8), torch.zeros(3).long()), batch_size=4, drop_last=True)


@pytest.mark.parametrize('call,exc,word', [
    (lambda l: l.fit(1, lr=-0.1), ValueError, 'lr'),
    (lambda l: l.fit(1, lr=[0.1, -0.1]), ValueError, 'lr'),
    (lambda l: l.fit(1, lr='fast'), TypeError, 'lr'),
    (lambda l: l.fit(1, wd=-0.1), ValueError, 'wd'),
    (lambda l: l.fit(0), ValueError, 'n_epoch'),
    (lambda l: l.fit(1.5), TypeError, 'n_epoch'),
    (lambda l: l.fit_one_cycle(1, -1e-3), ValueError, 'max_lr'),
    (lambda l: l.fit_one_cycle(1, 1e-3, pct_start=1.), ValueError, 'pct_start'),
    (lambda l: l.fit_one_cycle(1, 1e-3, pct_start=-0.1), ValueError, 'pct_start'),
    (lambda l: l.fit_one_cycle(0, 1e-3), ValueError, 'cyc_len'),
    (lambda l: fit_one_cycle(l, -2, 1e-3), ValueError, 'cyc_len'),
    (lambda l: l.fit_one_cycle(1, 1e-3, div_factor=0.), ValueError, 'div_factor'),
])
def test_bad_arguments_raise_before_any_training_step(make_learner, call, exc, word):
    learn = make_learner(opt_func=torch.optim.Adam)
    learn.fit(1, lr=1e-2)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    state = {i: {k: v.clone() for k, v in s.items()} for i, s in learn.opt.state_dict()['state'].items()}
    hist, cbs = list(learn.recorder.losses), list(learn.cbs)
    steps = []
    learn.opt.register_step_pre_hook(lambda *a: steps.append(1))
    with pytest.raises(exc, match=word):
        call(learn)
    assert steps == [] and learn.recorder.losses == hist and learn.cbs == cbs
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
    now = learn.opt.state_dict()['state']
    assert all(torch.equal(v, now[i][k]) for i, s in state.items() for k, v in s.items())


@pytest.mark.parametrize('which', ['train', 'valid'])
@pytest.mark.parametrize('how', ['fit', 'fit_one_cycle', 'lr_find'])   # the range test checks dls.valid too
def test_an_empty_dataloader_is_a_clear_error(make_learner, make_dls, which, how):
    train, valid = make_dls()
    if which == 'train': train = _empty_dl()
    else: valid = _empty_dl()
    learn = make_learner(dls=(train, valid))
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    run = {'fit': lambda l: l.fit(1), 'fit_one_cycle': lambda l: l.fit_one_cycle(1, 1e-2),
           'lr_find': lambda l: l.lr_find(num_it=10)}[how]
    with pytest.raises(ValueError, match=f'dls.{which}.*empty'):
        run(learn)
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))


def test_validate_on_an_empty_loader_raises(make_learner):
    learn = make_learner()
    with pytest.raises(ValueError, match='empty'): learn.validate(_empty_dl())


@pytest.mark.parametrize('kwargs,exc,word', [
    (dict(model='net'), TypeError, 'model'),
    (dict(loss_func=3), TypeError, 'loss_func'),
    (dict(opt_func='adam'), TypeError, 'opt_func'),
    (dict(lr=-1.), ValueError, 'lr'),
    (dict(metrics=[3]), TypeError, 'metrics'),
    (dict(dls=[1, 2, 3]), TypeError, 'dls'),
    (dict(n_inp=0), ValueError, 'n_inp'),
    (dict(splitter=lambda m: [[]]), ValueError, 'splitter'),
])
def test_bad_learner_arguments(make_learner, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        make_learner(**kwargs)


def test_public_attributes(make_learner):
    learn = make_learner()
    assert isinstance(learn.opt, torch.optim.SGD) and isinstance(learn.model, nn.Module)
    assert learn.recorder in learn.cbs and learn.dls.train is not None
    assert learn.steps_per_epoch == 4 and 'Learner' in repr(learn)


def test_fit_failing_before_any_step_leaves_hyper_parameters_as_they_were(make_learner):
    import torch
    from onecycle import OneCycleScheduler
    learn = make_learner(opt_func=torch.optim.SGD)
    before = [{k: v for k, v in pg.items() if k != 'params'} for pg in learn.opt.param_groups]
    # two max_lr values for one param group: the scheduler refuses in before_fit, after fit set lr and wd
    with pytest.raises(ValueError):
        learn.fit(1, lr=0.5, wd=0.1, cbs=[OneCycleScheduler([0.1, 0.2])])
    after = [{k: v for k, v in pg.items() if k != 'params'} for pg in learn.opt.param_groups]
    assert after == before


# --- the loop's shape and the callback contract ------------------------------------------------------------
def test_every_event_is_fired_by_name_in_the_loop_source():
    "grep finds each event where the loop fires it: no generated names."
    import inspect

    import onecycle.core.learner as loop
    src = inspect.getsource(loop.BaseLearner)
    missing = [e for e in EVENTS if f"'{e}'" not in src]
    assert not missing


def test_show_training_loop_names_the_callbacks_at_each_event(tiny, capsys):
    class Probe(Callback):
        def before_step(self): pass
    learn = tiny()
    learn.add_cb(Probe())
    assert learn.show_training_loop() is None   # printed, not returned (no second copy in a notebook)
    text = capsys.readouterr().out
    lines = {l.strip().split(':')[0]: l for l in text.splitlines()}
    assert set(EVENTS) <= set(lines)
    assert ('Probe' in lines['before_step'] and 'Recorder' in lines['after_batch']
            and 'Probe' not in lines['after_batch'])
    # in loop order: the step's events between backward and after_batch
    order = [l.strip().split(':')[0] for l in text.splitlines()]
    assert (order.index('after_backward') < order.index('before_step') < order.index('after_step')
            < order.index('after_batch'))


def test_a_callback_attribute_that_shadows_the_learner_warns(tiny):
    class Shadow(Callback):
        def __init__(self): self.seen = 0          # its own attribute: no warning
        def before_fit(self):
            self.seen += 1
            self.n_epoch = 99                       # meant for learn.n_epoch: only hides it
    learn = tiny()
    with pytest.warns(UserWarning, match=r'shadows learn\.n_epoch'):
        learn.fit(1, cbs=[Shadow()])
    assert learn.n_epoch == 1




def test_every_after_fit_runs_when_one_raises(tiny):
    ran = []

    class Broken(Callback):
        order = -50
        def after_fit(self): raise RuntimeError('broken cleanup')

    class Cleanup(Callback):
        order = 10
        def after_fit(self): ran.append('cleanup')
    learn = tiny()
    with pytest.raises(RuntimeError, match='broken cleanup') as info:   # after a normal end: raised once all ran
        learn.fit(1, cbs=[Broken(), Cleanup()])
    assert ran == ['cleanup'] and 'Broken' in ''.join(getattr(info.value, '__notes__', []))

    class Stop(Callback):
        def after_batch(self): raise ValueError('boom')
    ran.clear()
    with pytest.raises(ValueError, match='boom') as info:               # after an error: the error wins, noted
        learn.fit(1, cbs=[Broken(), Cleanup(), Stop()])
    assert ran == ['cleanup'] and any('broken cleanup' in n for n in info.value.__notes__)


@pytest.mark.parametrize('fit_fails', [False, True], ids=['fit-ends', 'fit-fails'])
@pytest.mark.parametrize('broken_order', [-50, 100], ids=['broken-first', 'broken-last'])
def test_accumulation_and_fp16_state_is_reset_when_another_after_fit_raises(tiny, broken_order, fit_fails):
    from onecycle import GradAccumulation, MixedPrecision
    seen = {}

    class Broken(Callback):
        order = broken_order
        def after_fit(self): raise RuntimeError('broken cleanup')

    class Spy(Callback):   # the fit did run with accumulation and a GradScaler
        def before_backward(self): seen.update(accum=self.learn.accum_steps, scaler=type(self.learn.scaler).__name__)
        def after_batch(self):
            if fit_fails and self.learn.iter == 1: raise ValueError('boom')
    learn = tiny()
    with pytest.raises(ValueError if fit_fails else RuntimeError, match='boom' if fit_fails else 'broken cleanup'):
        learn.fit(1, cbs=[Broken(), GradAccumulation(2), MixedPrecision(torch.float16), Spy()])
    assert seen == {'accum': 2, 'scaler': 'GradScaler'}
    assert learn.accum_steps == 1 and learn.scaler is None and not torch.is_autocast_enabled('cpu')
    assert [type(c).__name__ for c in learn.cbs] == [type(c).__name__ for c in tiny().cbs]   # the fit's cbs are gone
    learn.fit(1)                                                 # and the next fit steps every batch, in fp32
    assert learn.step_count == 2


@pytest.mark.parametrize('bad', [None, 3, 'Recorder', {'a': 1}, nn.Linear, object()])
def test_a_non_callback_in_cbs_attaches_nothing(tiny, bad):
    from onecycle import GradientClipping
    learn = tiny()
    before = list(learn.cbs)
    with pytest.raises(TypeError, match=r'cbs must be callbacks.*cbs\[1\]'):
        learn.fit(1, cbs=[GradientClipping(1.), bad])
    with pytest.raises(TypeError, match='must be callbacks'):
        fit_one_cycle(learn, 1, 1e-2, cbs=[GradientClipping(1.), bad])
    with pytest.raises(TypeError, match='must be callbacks'):
        learn.add_cbs([GradientClipping(1.), bad])
    assert learn.cbs == before and learn.step_count == 0

