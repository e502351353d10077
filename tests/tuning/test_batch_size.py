"""Noise scale, lr rescaling, the batch-size finder on a model whose memory need is known, and the
schedule that raises the batch size instead of decaying the lr."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import Learner
from onecycle.core.hyper import scale_lr
from onecycle.tuning.batch_size import (BatchSizeSchedule, NoiseScale, find_batch_size, noise_scale, step_memory,
                                        with_batch_size)

D_IN, D_OUT, N = 16, 4, 512


def _linear_learner(n=N):
    "A bias-free linear layer, MSE loss, plain SGD: every byte a step needs is known in advance."
    torch.manual_seed(0)
    x, y = torch.randn(n, D_IN), torch.randn(n, D_OUT)
    dl = DataLoader(TensorDataset(x, y), batch_size=8)
    return Learner(nn.Linear(D_IN, D_OUT, bias=False), (dl, dl), nn.MSELoss(), opt_func=torch.optim.SGD, lr=0.1,
                   progress=False, device='cpu')


def _expected_bytes(b):
    weights = D_IN * D_OUT * 4
    # weights + their gradient + the batch (x and y) + the prediction MSE saves for backward
    # (the input x that the matmul saves is the batch itself; SGD without momentum keeps no state)
    return 2 * weights + b * (D_IN + D_OUT) * 4 + b * D_OUT * 4


def test_noise_scale_and_lr_rules():
    assert noise_scale(0.1, 1000, 100) == pytest.approx(0.9)
    assert noise_scale(0.1, 100, 100) == 0
    assert scale_lr(0.1, 512, 256) == pytest.approx(0.2)
    assert scale_lr(0.1, 1024, 256, rule='sqrt') == pytest.approx(0.2)
    s = scale_lr(slice(1e-3, 1e-2), 200, 100)
    assert (s.start, s.stop) == (pytest.approx(2e-3), pytest.approx(2e-2))
    # linear scaling keeps the noise scale (for N >> B)
    assert noise_scale(scale_lr(0.1, 200, 100), 10**6, 200) == pytest.approx(noise_scale(0.1, 10**6, 100), rel=1e-3)
    with pytest.raises(ValueError, match='rule'): scale_lr(0.1, 2, 1, rule='cubic')
    with pytest.raises(ValueError, match='batch_size'): noise_scale(0.1, 10, 0)


def test_step_memory_counts_what_a_linear_step_holds():
    learn = _linear_learner()
    w0 = learn.model.weight.detach().clone()
    for b in (1, 8, 37):
        m = step_memory(learn, b)
        assert m['params'] == m['grads'] == D_IN * D_OUT * 4 and m['optimizer'] == 0
        assert m['batch'] == b * (D_IN + D_OUT) * 4 and m['activations'] == b * D_OUT * 4
        assert m['total'] == _expected_bytes(b)
    assert torch.equal(learn.model.weight, w0) and learn.model.weight.grad is None


def test_step_memory_counts_optimizer_state():
    learn = _linear_learner()
    learn.opt = torch.optim.Adam(learn.model.parameters(), lr=1e-3)
    m = step_memory(learn, 4)
    assert m['optimizer'] >= 2 * D_IN * D_OUT * 4          # exp_avg and exp_avg_sq
    assert learn.opt.state_dict()['state'] == {}            # the measuring step was undone


@pytest.mark.parametrize('largest', [1, 37, 200, N])
def test_find_batch_size_finds_the_largest_that_fits(largest):
    learn = _linear_learner()
    budget = _expected_bytes(largest) + 1 if largest == N \
        else (_expected_bytes(largest) + _expected_bytes(largest + 1)) // 2
    res = find_batch_size(learn, max_memory=budget)
    assert res.batch_size == largest
    fitting = [b for b, m in res.tried.items() if m <= budget]
    assert max(fitting) == largest and all(m > budget for b, m in res.tried.items() if b > largest)
    assert len(res.tried) <= 2 * math.log2(N) + 2   # doubling then bisection, not a scan
    assert str(res).startswith('largest batch')


def test_find_batch_size_bad_input():
    learn = _linear_learner()
    with pytest.raises(ValueError, match='max_memory'): find_batch_size(learn, max_memory=-1)
    with pytest.raises(ValueError, match='start'): find_batch_size(learn, max_memory=10**9, start=N + 1)
    with pytest.raises(RuntimeError, match='batch size 1'): find_batch_size(learn, max_memory=10)


def test_with_batch_size_keeps_the_loader_settings():
    ds = TensorDataset(torch.arange(20.))
    g = torch.Generator().manual_seed(3)
    dl = DataLoader(ds, batch_size=4, shuffle=True, drop_last=True, generator=g, in_order=False)
    big = with_batch_size(dl, 8)
    assert big.batch_size == 8 and big.drop_last and big.sampler is dl.sampler and big.dataset is ds
    assert big.generator is g and big.in_order is False
    assert len(big) == 2 and sorted(torch.cat([b[0] for b in big]).tolist()) != list(range(16))  # shuffled, 16 of 20
    with pytest.raises(ValueError, match='batch_size'): with_batch_size(dl, 0)


def test_batch_size_schedule_really_changes_the_loader():
    learn = _linear_learner(n=64)
    dl0 = learn.dls.train
    sizes = []
    from onecycle import Callback
    class Spy(Callback):
        def after_batch(self):
            if self.learn.training: sizes.append((self.learn.epoch, self.learn.batch_size))
    sched = BatchSizeSchedule([1, 2], factor=2, max_batch_size=16)
    ns = NoiseScale()
    learn.fit(3, lr=0.1, cbs=[sched, ns, Spy()])
    per_epoch = {e: {b for ep, b in sizes if ep == e} for e in range(3)}
    assert per_epoch == {0: {8}, 1: {16}, 2: {16}}
    assert [len([1 for ep, _ in sizes if ep == e]) for e in range(3)] == [8, 4, 4]
    # at epoch 2 the batch is capped at 16: the remaining factor 2 comes off the lr
    assert [h[:3] for h in sched.history] == [(0, 8, 0.1), (1, 16, 0.1), (2, 16, 0.05)]
    assert sched.history[0][3] == pytest.approx(0.1 * (64 / 8 - 1))
    assert learn.dls.train is dl0 and learn.opt.param_groups[0]['lr'] == 0.1
    assert len(ns.values) == 16 and ns.values[0] == pytest.approx(0.1 * 7) and ns.values[-1] == pytest.approx(0.05 * 3)


def test_batch_size_schedule_bad_input():
    with pytest.raises(ValueError, match='factor'): BatchSizeSchedule([1], factor=1)
    with pytest.raises(ValueError, match='increasing'): BatchSizeSchedule([3, 2])
    with pytest.raises(TypeError, match='milestones'): BatchSizeSchedule([])
