"""What tuning's short runs measure: each optimizer step's mean loss, a fixed validation subset's loss, the epochs a
number of steps takes, and steps counted in samples."""
import math

import pytest
import torch
from torch import nn

from onecycle import Callback, GradAccumulation
from onecycle.tuning.short_runs import (REFERENCE_BATCH, StepLoss, divergence_limit, epochs_for_steps,
                                        fixed_valid_batches, optimizer_steps_per_epoch, steps_for_samples, subset_loss)


@pytest.mark.parametrize('batch_size, steps', [(None, 100), (REFERENCE_BATCH, 100), (256, 100), (16, 200), (8, 400),
                                               (12, 267), (1, 3200)])
def test_steps_for_samples_counts_as_many_samples_as_steps_of_the_reference_batch_and_never_fewer_steps(
        batch_size, steps):
    assert steps_for_samples(100, batch_size) == steps


def test_an_epoch_under_gradient_accumulation_counts_its_groups_of_batches(make_learner):
    learn = make_learner(dls_kw=dict(n_train=160, bs=16))   # 10 batches an epoch
    assert optimizer_steps_per_epoch(learn) == 10 and epochs_for_steps(learn, 25) == 3
    learn.add_cb(GradAccumulation(3))                       # groups of 3, 3, 3 and a partial 1
    assert optimizer_steps_per_epoch(learn) == 4
    assert epochs_for_steps(learn, 8) == 2 and epochs_for_steps(learn, 9) == 3 and epochs_for_steps(learn, 1) == 1


def test_the_divergence_limit_scales_a_positive_reference_and_steps_up_from_a_negative_one():
    assert divergence_limit(2., 4.) == 8.
    assert divergence_limit(0., 4.) == 0.
    assert divergence_limit(-2., 3.) == pytest.approx(2.)   # two of its sizes above it, not 3 x -2 below
    assert divergence_limit(-2., 3.) > -2.


def test_fixed_valid_batches_read_the_same_samples_every_time_and_leave_the_global_rng_alone(make_learner, make_dls):
    train, _ = make_dls()
    valid = torch.utils.data.DataLoader(train.dataset, batch_size=10, shuffle=True,
                                        generator=None)   # a shuffling loader draws its seed from the global RNG
    learn = make_learner(dls=(train, valid))
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    first = fixed_valid_batches(learn, 3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert len(first) == 3 and all(len(b[0]) == 10 for b in first)
    assert len(fixed_valid_batches(learn)) == len(valid) == 7
    x, y = train.dataset.tensors
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:0], y[:0]))
    with pytest.raises(ValueError, match='dls.valid is empty'): fixed_valid_batches(make_learner(dls=(train, empty)))


@pytest.mark.parametrize('training', [True, False])
def test_subset_loss_is_the_per_sample_mean_over_unequal_batches_and_puts_the_mode_back(make_learner, training):
    learn = make_learner(model=nn.Sequential(nn.Linear(8, 2), nn.Dropout(0.5)))
    x, y = torch.randn(25, 8, generator=torch.Generator().manual_seed(0)), torch.arange(25) % 2
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]   # 16 and 9 samples: a mean of the batch means would be off
    learn.model.train(training)
    loss = subset_loss(learn, batches)
    assert learn.model.training is training
    learn.model.eval()
    with torch.no_grad(): expected = float(nn.functional.cross_entropy(learn.model(x), y))
    assert loss == pytest.approx(expected, rel=1e-6)   # in eval mode: dropout off, the same value every call
    assert subset_loss(learn, batches) == loss


class _StepLosses(StepLoss, Callback):
    "Each optimizer step's loss as StepLoss reads it, and each batch's loss and size as the loop saw them."
    def before_fit(self): self.steps, self.batches = [], []; self._reset_step_loss()
    def after_loss(self):
        super().after_loss()
        if self.learn.training: self.batches.append((float(self.learn.loss.detach()), self.learn.batch_size))
    def after_step(self): self.steps.append(self.step_loss())


def test_a_steps_loss_is_the_sample_weighted_mean_of_its_micro_batches(make_learner):
    learn = make_learner(dls_kw=dict(n_train=56, bs=16), cbs=[GradAccumulation(2)])   # 16, 16, 16, 8: steps of 32, 24
    rec = _StepLosses()
    learn.fit(1, 1e-2, cbs=[rec])
    (l1, n1), (l2, n2), (l3, n3), (l4, n4) = rec.batches
    assert (n1, n2, n3, n4) == (16, 16, 16, 8)
    assert rec.steps == pytest.approx([(l1 * n1 + l2 * n2) / 32, (l3 * n3 + l4 * n4) / 24], rel=1e-6)
    assert not math.isclose(rec.steps[1], l4)   # not the last micro-batch's loss
