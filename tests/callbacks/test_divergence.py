"""Divergence: a non-finite loss or gradient stops training before it reaches the weights."""
import copy
import math

import pytest
import torch
from torch import nn

from onecycle import Callback, DivergenceError, DivergenceGuard, GradAccumulation

CE = nn.CrossEntropyLoss()


class PoisonLoss:
    "Cross-entropy, but NaN (through the graph, so the gradients are NaN too) at the given global training batches."
    def __init__(self, bad, value=math.nan):
        self.bad, self.value, self.n = set(bad), value, -1

    def __call__(self, pred, y):
        loss = CE(pred, y)
        if torch.is_grad_enabled():
            self.n += 1
            if self.n in self.bad: return loss * self.value
        return loss


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return x.clone()
    @staticmethod
    def backward(ctx, g): return g * math.inf


class InfGradLoss(PoisonLoss):
    "A finite loss whose gradient is infinite at the given batches."
    def __call__(self, pred, y):
        if torch.is_grad_enabled():
            self.n += 1
            if self.n in self.bad: return CE(_InfGrad.apply(pred), y)
        return CE(pred, y)


class Snapshots(Callback):
    "The weights before each training batch, by (epoch, iter)."
    def __init__(self): self.snaps = {}
    def before_batch(self):
        if self.learn.training:
            self.snaps[(self.learn.epoch, self.learn.iter)] = copy.deepcopy(self.learn.model.state_dict())


def _same(sd, model):
    return all(torch.equal(v, model.state_dict()[k]) for k, v in sd.items())


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_finite_weights(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=PoisonLoss({6}))   # 4 batches per epoch: epoch 1, batch 2
    snaps = Snapshots()
    with pytest.raises(DivergenceError,
                       match=r'loss became non-finite \(loss nan\) at epoch 1, batch 2 .*lr 0\.1') as ei:
        learn.fit_one_cycle(3, 0.1, moms=None, div_factor=1., final_div_factor=1., callbacks=[snaps])
    e = ei.value
    assert (e.epoch, e.batch, e.step, e.what) == (1, 2, 6, 'loss') and e.lr == [pytest.approx(0.1)]
    assert math.isnan(e.loss)
    assert _same(snaps.snaps[(1, 2)], learn.model)                  # nothing of the bad batch reached the weights
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert len(learn.recorder.losses) == 6 and len(learn.recorder.epochs) == 1   # the history up to that batch
    assert all(math.isfinite(l) for l in learn.recorder.losses)
    assert all(p.grad is None for p in learn.model.parameters())
    learn.loss_func = CE
    learn.fit(1, lr=0.1)                                              # and the learner trains on
    assert len(learn.recorder.losses) == 4


def test_infinite_gradient_with_finite_loss_is_caught(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=InfGradLoss({1}), guard=True)   # gradients: opt-in
    snaps = Snapshots()
    with pytest.raises(DivergenceError, match='gradients became non-finite') as ei:
        learn.fit(2, lr=0.1, cbs=[snaps])
    assert ei.value.what == 'gradients' and math.isfinite(ei.value.loss) and ei.value.batch == 1
    assert _same(snaps.snaps[(0, 1)], learn.model)


def test_inf_loss_is_caught(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=PoisonLoss({0}, value=math.inf))
    with pytest.raises(DivergenceError, match=r'loss inf'):
        learn.fit(1, lr=0.1)


def test_skip_counts_and_carries_on(make_learner):
    guard = DivergenceGuard(action='skip')
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=PoisonLoss({1, 6}), cbs=[guard])
    assert learn.divergence_guard is guard and sum(isinstance(c, DivergenceGuard) for c in learn.cbs) == 1
    learn.fit(3, lr=0.1)
    assert guard.n_skipped == 2 and [(s['epoch'], s['batch']) for s in guard.skipped] == [(0, 1), (1, 2)]
    assert learn.step_count == 12 - 2
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    # the skipped batches stay on record
    assert len(learn.recorder.losses) == 12 and math.isnan(learn.recorder.losses[1])


def test_skip_gives_up_after_max_skips(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=PoisonLoss({1, 2}),
                         cbs=[DivergenceGuard('skip', max_skips=1)])
    with pytest.raises(DivergenceError, match=r'after skipping 1 steps \(max_skips=1\).* epoch 0, batch 2'):
        learn.fit(1, lr=0.1)


def test_accumulation_names_the_batch_that_diverged(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=PoisonLoss({3}), dls_kw=dict(n_train=96))   # 6 batches
    snaps = Snapshots()
    with pytest.raises(DivergenceError, match='epoch 0, batch 3') as ei:
        learn.fit(1, lr=0.1, cbs=[GradAccumulation(3), snaps])
    assert ei.value.step == 1                          # checked once, at the step of the group 3, 4, 5
    assert _same(snaps.snaps[(0, 3)], learn.model)     # the group's first batch saw the last finite weights
    assert learn.accum_steps == 1                      # GradAccumulation cleaned up


def test_range_test_is_left_to_find_divergence_itself(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, dls_kw={'label_noise': 0.2})   # no weights give a loss of 0
    res = learn.lr_find(start_lr=1e-3, end_lr=1e6, num_it=40)   # diverges on purpose
    assert res.stopped_early


def test_without_the_guard_nan_goes_through(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, loss_func=PoisonLoss({1}))
    learn.remove_cb(learn.divergence_guard)
    assert learn.divergence_guard is None
    learn.fit(1, lr=0.1)
    assert not all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_guard_arguments_are_checked():
    with pytest.raises(ValueError, match='action must be one of'): DivergenceGuard('warn')
    with pytest.raises(TypeError, match='check_grads must be True or False'): DivergenceGuard(check_grads='yes')
