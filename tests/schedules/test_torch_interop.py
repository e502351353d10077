"""torch schedulers inside the Learner (TorchScheduler), and our schedules as a torch scheduler."""
import pickle

import pytest
import torch
from torch.optim import lr_scheduler as L

from onecycle import (Cosine, CosineWarmRestarts, GradAccumulation, Linear, OneCycleScheduler, ParamScheduler,
                      ScheduleLR, StepDecay, TorchScheduler, Warmup, fit_one_cycle, one_cycle, plot_sched,
                      to_torch_scheduler)
from onecycle.schedules.functions import progress_of_step

BS, N_TRAIN, SPE = 8, 64, 8      # 8 optimizer steps per epoch


@pytest.fixture
def learner(make_learner):
    def make(lr=0.1, **kw):
        kw.setdefault('opt_func', lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9))
        return make_learner(dls_kw=dict(n_train=N_TRAIN, bs=BS), lr=lr, **kw)
    return make


def torch_run(make, n_steps, lr=0.1, per_epoch=None):
    "(lr, momentum) at each step of a plain torch loop, stepping the scheduler per step or every `per_epoch` steps."
    o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
    sched, out = make(o), []
    for i in range(n_steps):
        out.append((o.param_groups[0]['lr'], o.param_groups[0]['momentum']))
        o.step()
        if per_epoch is None or (i + 1) % per_epoch == 0: sched.step()
    return out


def rel_err(a, b):
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


# --- TorchScheduler ------------------------------------------------------------------------------
@pytest.mark.parametrize('make', [
    lambda o: L.StepLR(o, 5, 0.5),
    lambda o: L.CosineAnnealingWarmRestarts(o, 3, 2, 1e-3),
    lambda o: L.CyclicLR(o, 0.01, 0.1, 4, mode='triangular2'),        # cycles momentum too
    lambda o: L.OneCycleLR(o, 0.1, 3 * SPE, three_phase=True),
    lambda o: L.LambdaLR(o, lambda i: 1 / (1 + i)),
], ids=['StepLR', 'WarmRestarts', 'CyclicLR', 'OneCycleLR', 'LambdaLR'])
def test_stepped_per_step_the_recorder_sees_the_torch_loop_values(learner, make):
    learn = learner()
    learn.fit(3, cbs=[TorchScheduler(make)])
    ref = torch_run(make, 3 * SPE)
    assert len(learn.recorder.lrs) == 3 * SPE
    assert rel_err(learn.recorder.lrs, [r[0] for r in ref]) < 1e-6
    assert rel_err(learn.recorder.moms, [r[1] for r in ref]) < 1e-6


def test_stepped_per_epoch(learner):
    learn = learner()
    make = lambda o: L.MultiStepLR(o, [1, 2], 0.5)
    learn.fit(3, cbs=[TorchScheduler(make, interval='epoch')])
    lrs = learn.recorder.lrs
    assert lrs == pytest.approx([0.1] * SPE + [0.05] * SPE + [0.025] * SPE)
    assert rel_err(lrs, [r[0] for r in torch_run(make, 3 * SPE, per_epoch=SPE)]) < 1e-12


def test_reduce_lr_on_plateau_gets_the_validation_loss(learner):
    learn = learner(lr=0.5)
    cb = TorchScheduler(lambda o: L.ReduceLROnPlateau(o, factor=0.5, patience=0), interval='epoch')
    learn.fit(5, cbs=[cb])
    valid = [e['valid_loss'] for e in learn.recorder.epochs]
    # replay the recorded validation losses through a fresh ReduceLROnPlateau: same lrs per epoch
    o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    ref = L.ReduceLROnPlateau(o, factor=0.5, patience=0)
    expected = []
    for v in valid:
        expected += [o.param_groups[0]['lr']] * SPE
        ref.step(v)
    assert learn.recorder.lrs == pytest.approx(expected)
    assert cb.sched.best == pytest.approx(min(valid))
    assert len(set(expected)) > 1     # the plateau rule did fire (the easy task's valid loss reaches 0)


def test_reduce_lr_on_plateau_monitors_a_metric_or_the_train_loss(learner):
    from onecycle import accuracy
    learn = learner(metrics=[accuracy], loss_func=torch.nn.CrossEntropyLoss())
    cb = TorchScheduler(lambda o: L.ReduceLROnPlateau(o, mode='max'), interval='epoch', monitor='accuracy')
    learn.fit(2, cbs=[cb])
    assert cb.sched.best == pytest.approx(max(e['accuracy'] for e in learn.recorder.epochs))
    cb = TorchScheduler(lambda o: L.ReduceLROnPlateau(o), interval='epoch', monitor='train_loss')
    learn.fit(2, cbs=[cb])
    assert cb.sched.best == pytest.approx(min(e['train_loss'] for e in learn.recorder.epochs))
    cb = TorchScheduler(lambda o: L.ReduceLROnPlateau(o, patience=1000))   # per step: the batch loss
    learn.fit(1, cbs=[cb])
    assert cb.sched.best == pytest.approx(min(learn.recorder.losses))


def test_a_factory_starts_from_each_fits_lr(learner):
    learn = learner()
    cb = TorchScheduler(lambda o: L.ExponentialLR(o, 0.9))
    learn.fit(1, cbs=[cb])
    learn.fit(1, lr=0.02, cbs=[cb])
    assert learn.recorder.lrs[0] == pytest.approx(0.02) and cb.sched.base_lrs == [0.02]


def test_a_built_scheduler_keeps_its_state_across_fits(learner):
    learn = learner()
    sched = L.StepLR(learn.opt, 4, 0.5)
    cb = TorchScheduler(sched)
    learn.fit(1, cbs=[cb]); first = learn.recorder.lrs
    learn.fit(1, cbs=[cb]); second = learn.recorder.lrs
    ref = [r[0] for r in torch_run(lambda o: L.StepLR(o, 4, 0.5), 2 * SPE)]
    assert first + second == pytest.approx(ref)


def test_our_schedule_through_torch_equals_param_scheduler(learner):
    sched = Warmup(CosineWarmRestarts(0.1, 0., 0.25), 0.1)
    a, b = learner(), learner()
    a.fit(2, cbs=[ParamScheduler({'lr': sched})])
    b.fit(2, cbs=[TorchScheduler(lambda o: to_torch_scheduler(o, sched, 2 * SPE))])
    assert a.recorder.lrs == pytest.approx(b.recorder.lrs, rel=1e-12)


def test_steps_skipped_by_accumulation_do_not_step_the_scheduler(learner):
    learn = learner()
    learn.fit(2, cbs=[TorchScheduler(lambda o: L.StepLR(o, 1, 0.5)), GradAccumulation(2)])
    assert learn.recorder.lrs == pytest.approx([0.1 * 0.5 ** i for i in range(8)])


def test_misuse_raises_before_any_step_and_leaves_the_optimizer_as_it_was(learner):
    learn = learner()
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    pg0 = {k: v for k, v in learn.opt.param_groups[0].items() if k != 'params'}
    other = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match='another optimizer'):
        learn.fit(1, cbs=[TorchScheduler(L.StepLR(other, 2))])
    with pytest.raises(TypeError, match='factory must return'):
        learn.fit(1, cbs=[TorchScheduler(lambda o: 'not a scheduler')])

    def half_built(o):   # sets the lr like any scheduler, then fails
        L.StepLR(o, 2)
        o.param_groups[0]['lr'] = 123.
        raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'):
        learn.fit(1, cbs=[TorchScheduler(half_built)])
    with pytest.raises(ValueError, match='already schedules the learning rate'):
        learn.fit(1, cbs=[OneCycleScheduler(0.1), TorchScheduler(lambda o: L.StepLR(o, 2))])
    with pytest.raises(ValueError, match='monitor must be one of'):
        learn.fit(1, cbs=[TorchScheduler(lambda o: L.ReduceLROnPlateau(o), interval='epoch', monitor='acc')])
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
    assert {k: v for k, v in learn.opt.param_groups[0].items() if k != 'params'} == pg0
    assert learn.recorder.lrs == []


def test_plateau_without_validation_set_says_so(make_learner):
    learn = make_learner(dls_kw=dict(valid=False))
    with pytest.raises(ValueError, match='no validation set'):
        learn.fit(1, cbs=[TorchScheduler(lambda o: L.ReduceLROnPlateau(o), interval='epoch')])


@pytest.mark.parametrize('kwargs,exc,word', [
    (dict(sched=3), TypeError, 'sched'),
    (dict(sched=lambda o: None, interval='batch'), ValueError, 'interval'),
    (dict(sched=lambda o: None, interval='step', monitor='valid_loss'), ValueError, 'monitor'),
    (dict(sched=lambda o: None, monitor=1), TypeError, 'monitor'),
])
def test_bad_torch_scheduler_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        TorchScheduler(**kwargs)


def test_a_torch_scheduler_can_be_drawn_before_training():
    import matplotlib.pyplot as plt
    make = lambda o: L.OneCycleLR(o, 0.1, 50, three_phase=True)
    cb = TorchScheduler(make)
    hps = cb.sample(50, lr=0.1)
    ref = torch_run(make, 50)
    assert [h[0] for h in hps['lr']] == pytest.approx([r[0] for r in ref])
    assert [h[0] for h in hps['mom']] == pytest.approx([r[1] for r in ref])
    fig = plot_sched(cb, 50); plt.close(fig)
    per_epoch = TorchScheduler(lambda o: L.StepLR(o, 1, 0.5), interval='epoch').sample(20, steps_per_epoch=10, lr=1.)
    assert 'mom' not in per_epoch and [h[0] for h in per_epoch['lr']] == [1.] * 10 + [0.5] * 10
    with pytest.raises(ValueError, match='steps_per_epoch'):
        TorchScheduler(lambda o: L.StepLR(o, 1), interval='epoch').sample(20)
    with pytest.raises(ValueError, match='ReduceLROnPlateau'):
        TorchScheduler(lambda o: L.ReduceLROnPlateau(o), interval='epoch').sample(20, steps_per_epoch=5)


# --- to_torch_scheduler --------------------------------------------------------------------------
def _loop(opt, sched, n):
    out = []
    for _ in range(n):
        out.append([(pg['lr'], pg.get('momentum')) for pg in opt.param_groups])
        opt.step(); sched.step()
    return out


def test_to_torch_scheduler_in_a_plain_loop():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1., momentum=0.9)
    s = Cosine(1., 0.1)
    sched = to_torch_scheduler(opt, s, 10)
    assert isinstance(sched, L.LRScheduler)
    got = _loop(opt, sched, 13)
    assert [g[0][0] for g in got] == pytest.approx([s(progress_of_step(i, 10)) for i in range(10)] + [0.1] * 3)
    assert sched.get_last_lr() == pytest.approx([0.1])


def test_to_torch_scheduler_matches_one_cycle_lr_with_momentum_and_groups():
    T = 30
    mk = lambda: torch.optim.SGD([{'params': [torch.zeros(1, requires_grad=True)], 'lr': lr} for lr in (0.01, 0.1)],
                                 lr=0.1, momentum=0.9)
    o1, o2 = mk(), mk()
    ours = ScheduleLR(o1, {'lr': [one_cycle(hi / 25, hi, hi / 25 / 1e4, total_steps=T) for hi in (0.01, 0.1)],
                           'mom': one_cycle(0.95, 0.85, 0.95, total_steps=T)}, T)
    ref = L.OneCycleLR(o2, [0.01, 0.1], T)
    a, b = _loop(o1, ours, T), _loop(o2, ref, T)
    for g in range(2):
        for k in range(2):
            assert rel_err([x[g][k] for x in a], [x[g][k] for x in b]) < 1e-6


def test_to_torch_scheduler_state_dict_resumes():
    mk = lambda: torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1., momentum=0.9)
    s = StepDecay(1., 3, 0.5, total_steps=12)
    o1 = mk(); full = _loop(o1, to_torch_scheduler(o1, s, 12), 12)
    o2 = mk(); first = to_torch_scheduler(o2, s, 12); _loop(o2, first, 5)
    state = first.state_dict()
    assert 'scheds' not in state
    state = pickle.loads(pickle.dumps(state))
    o3 = mk(); resumed = to_torch_scheduler(o3, s, 12); resumed.load_state_dict(state)
    o3.param_groups[0]['lr'] = o2.param_groups[0]['lr']
    assert _loop(o3, resumed, 7) == full[5:]


def test_to_torch_scheduler_drives_adam_betas():
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = to_torch_scheduler(opt, {'lr': Linear(1e-3, 1e-4), 'mom': Linear(0.9, 0.8), 'beta2': Linear(0.99, 0.9)}, 5)
    for i in range(5):
        p = i / 4
        assert opt.param_groups[0]['betas'] == pytest.approx((0.9 - 0.1 * p, 0.99 - 0.09 * p))
        assert opt.param_groups[0]['lr'] == pytest.approx(1e-3 - 9e-4 * p)
        opt.step(); sched.step()


@pytest.mark.parametrize('args,exc,word', [
    (lambda o: ('opt', Cosine(1, 0), 5), TypeError, 'optimizer'),
    (lambda o: (o, Cosine(1, 0), 0), ValueError, 'total_steps'),
    (lambda o: (o, 3., 5), TypeError, 'callable'),
    (lambda o: (o, [Cosine(1, 0)] * 2, 5), ValueError, 'param groups'),
    (lambda o: (o, {'beta2': Cosine(1, 0)}, 5), ValueError, 'beta2'),
    (lambda o: (o, {}, 5), ValueError, 'at least one'),
])
def test_bad_to_torch_scheduler_arguments_leave_the_optimizer_alone(args, exc, word):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3, momentum=0.9)
    with pytest.raises(exc, match=word):
        to_torch_scheduler(*args(opt))
    assert opt.param_groups[0]['lr'] == 0.3 and 'initial_lr' not in opt.param_groups[0]


def test_fit_one_cycle_and_torch_one_cycle_in_the_learner_agree(learner):
    a, b = learner(), learner()
    fit_one_cycle(a, 2, max_lr=0.1, three_phase=True)
    b.fit(2, cbs=[TorchScheduler(lambda o: L.OneCycleLR(o, 0.1, 2 * SPE, three_phase=True))])
    assert rel_err(a.recorder.lrs, b.recorder.lrs) < 1e-6 and rel_err(a.recorder.moms, b.recorder.moms) < 1e-6


class _StopAt:
    "Interrupts the fit before the batch of optimizer step `n`, as a crash would."
    order = 90
    def __init__(self, n): self.n = n
    def before_batch(self):
        from onecycle import CancelFitException
        if self.learn.training and self.learn.step_count == self.n: raise CancelFitException()


@pytest.mark.parametrize('make,interval', [
    (lambda o: L.CyclicLR(o, 0.01, 0.1, 3, mode='exp_range', gamma=0.9), 'step'),
    (lambda o: L.OneCycleLR(o, 0.1, 3 * SPE), 'step'),
    (lambda o: L.StepLR(o, 1, 0.5), 'epoch'),
    (lambda o: to_torch_scheduler(o, Warmup(Cosine(0.1, 0.), 0.2), 3 * SPE), 'step'),
], ids=['CyclicLR', 'OneCycleLR', 'StepLR-epoch', 'ScheduleLR'])
def test_a_checkpointed_fit_resumes_mid_schedule(learner, tmp_path, make, interval):
    from onecycle import save_checkpoint
    full = learner()
    full.fit(3, cbs=[TorchScheduler(make, interval)])
    learn = learner()
    learn.fit(3, cbs=[TorchScheduler(make, interval), _StopAt(13)])
    path = save_checkpoint(learn, tmp_path / 'ck.pt')   # read back with weights_only=True: plain state only
    learn = learner()
    learn.fit(3, cbs=[TorchScheduler(make, interval)], resume=path)
    assert learn.recorder.lrs == pytest.approx(full.recorder.lrs, rel=1e-12)
    assert learn.recorder.moms == pytest.approx(full.recorder.moms, rel=1e-12)
