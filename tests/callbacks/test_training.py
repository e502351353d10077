"""Gradient accumulation, gradient clipping and mixed precision, alone and together."""
from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader

from onecycle import Callback, GradAccumulation, GradientClipping, MixedPrecision, fit_one_cycle

SGD_MOM = partial(torch.optim.SGD, momentum=0.9)
OPTS = [pytest.param(SGD_MOM, id='sgd'), pytest.param(torch.optim.AdamW, id='adamw')]


def _same_weights(a, b, tol=1e-6):
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)


def _changed(a, w0):
    return any(not torch.equal(p, q) for p, q in zip(a.model.parameters(), w0))


def _batches(train_dl, sizes):
    "The same samples as `train_dl`, in batches of the given sizes."
    idx, out, i = list(range(len(train_dl.dataset))), [], 0
    for s in sizes: out.append(idx[i:i + s]); i += s
    return DataLoader(train_dl.dataset, batch_sampler=out)


@pytest.mark.parametrize('opt_func', OPTS)
def test_accumulating_4_batches_of_16_equals_one_batch_of_64(make_learner, make_dls, opt_func):
    acc = make_learner(opt_func=opt_func, dls=make_dls(n_train=64, bs=16), wd=0.01)
    big = make_learner(opt_func=opt_func, dls=make_dls(n_train=64, bs=64), wd=0.01)
    w0 = [p.detach().clone() for p in acc.model.parameters()]
    acc.fit(1, lr=0.1, cbs=[GradAccumulation(4)])
    big.fit(1, lr=0.1)
    assert acc.step_count == big.step_count == 1
    assert _changed(acc, w0)
    _same_weights(acc, big)
    assert len(acc.recorder.losses) == 4 and len(acc.recorder.lrs) == 1
    assert acc.accum_steps == 1          # the learner is back to stepping every batch


@pytest.mark.parametrize('opt_func', OPTS)
def test_accumulation_advances_schedule_and_recorder_once_per_step(make_learner, make_dls, opt_func):
    acc = make_learner(opt_func=opt_func, dls=make_dls(n_train=256, bs=16))
    big = make_learner(opt_func=opt_func, dls=make_dls(n_train=256, bs=64))
    fit_one_cycle(acc, 2, 0.05, callbacks=[GradAccumulation(4)])
    fit_one_cycle(big, 2, 0.05)
    assert acc.step_count == 8 and len(acc.recorder.lrs) == len(acc.recorder.moms) == 8
    assert len(acc.recorder.losses) == 32                     # losses stay per batch
    assert acc.recorder.lrs == pytest.approx(big.recorder.lrs, rel=1e-12)
    assert acc.recorder.moms == pytest.approx(big.recorder.moms, rel=1e-12)
    _same_weights(acc, big, tol=1e-5)


@pytest.mark.parametrize('opt_func', OPTS)
def test_partial_group_at_the_end_of_an_epoch_is_stepped(make_learner, make_dls, opt_func):
    # 88 samples in batches of 16 -> 16,16,16,16 | 16,8: the second group has 2 batches and 24 samples
    dls = make_dls(n_train=88, bs=16)
    acc = make_learner(opt_func=opt_func, dls=dls)
    big = make_learner(opt_func=opt_func, dls=(_batches(dls[0], [64, 24]), dls[1]))
    acc.fit(2, lr=0.05, cbs=[GradAccumulation(4)])
    big.fit(2, lr=0.05)
    assert acc.step_count == big.step_count == 4
    assert len(acc.recorder.lrs) == 4
    _same_weights(acc, big)


def test_grad_accumulation_rejects_bad_n_batches():
    with pytest.raises(ValueError, match='n_batches'): GradAccumulation(0)
    with pytest.raises(TypeError, match='n_batches'): GradAccumulation(2.5)


class NormSeenByOptimizer:
    "Registers an optimizer step pre-hook recording the global gradient norm each step is taken with."
    def __init__(self, opt, norm_type=2.):
        self.norms, self.norm_type = [], norm_type
        opt.register_step_pre_hook(self)
    def __call__(self, opt, args, kwargs):
        grads = [p.grad for pg in opt.param_groups for p in pg['params'] if p.grad is not None]
        per_tensor = torch.stack([torch.linalg.vector_norm(g.float(), self.norm_type) for g in grads])
        self.norms.append(float(torch.linalg.vector_norm(per_tensor, self.norm_type)))


@pytest.mark.parametrize('norm_type', [2., 1., float('inf')])
def test_gradient_clipping_bounds_the_norm_the_optimizer_sees(make_learner, norm_type):
    free = make_learner()
    seen_free = NormSeenByOptimizer(free.opt, norm_type)
    free.fit(1, lr=0.1)
    max_norm = min(seen_free.norms) / 4            # every unclipped step would exceed it
    clipped = make_learner()
    seen = NormSeenByOptimizer(clipped.opt, norm_type)
    clipped.fit(1, lr=0.1, cbs=[GradientClipping(max_norm, norm_type)])
    assert len(seen.norms) == 4
    assert max(seen.norms) <= max_norm * (1 + 1e-4)
    assert min(seen.norms) >= max_norm * 0.99      # clipped to the bound, not zeroed


def test_gradient_clipping_rejects_bad_arguments():
    with pytest.raises(ValueError, match='max_norm'): GradientClipping(0.)
    with pytest.raises(ValueError, match='norm_type'): GradientClipping(1., norm_type=-2)


class DtypeSpy(Callback):
    order = 20
    def __init__(self): self.pred_dtypes, self.scalers = set(), set()
    def after_pred(self): self.pred_dtypes.add(self.learn.pred.dtype)
    def before_step(self): self.scalers.add(type(self.learn.scaler).__name__)


def test_bfloat16_trains_on_cpu(make_learner):
    learn = make_learner(opt_func=SGD_MOM, dls_kw=dict(n_train=256, bs=32), metrics=[])
    spy = DtypeSpy()
    loss0 = learn.validate()['valid_loss']
    fit_one_cycle(learn, 4, 0.5, callbacks=[MixedPrecision(torch.bfloat16), spy])
    assert spy.pred_dtypes == {torch.bfloat16}         # the forward pass ran under autocast
    assert spy.scalers == {'NoneType'}                 # bfloat16 needs no GradScaler
    assert learn.validate()['valid_loss'] < loss0 / 2
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())   # master weights stay fp32
    assert not torch.is_autocast_enabled('cpu') and learn.scaler is None


def test_bfloat16_composes_with_clipping_and_accumulation(make_learner):
    learn = make_learner(dls_kw=dict(n_train=64, bs=8))
    seen = NormSeenByOptimizer(learn.opt)
    spy = DtypeSpy()
    learn.fit(2, lr=0.1, cbs=[GradientClipping(0.01), MixedPrecision(torch.bfloat16), GradAccumulation(4), spy])
    assert learn.step_count == 4 and len(seen.norms) == 4 and len(learn.recorder.lrs) == 4
    assert spy.pred_dtypes == {torch.bfloat16}
    assert max(seen.norms) <= 0.01 * (1 + 1e-4)


def _cpu_fp16_ok():
    try:
        with torch.autocast('cpu', dtype=torch.float16):
            torch.nn.Linear(2, 2)(torch.ones(1, 2)).sum().backward()
        torch.amp.GradScaler('cpu')
        return True
    except (RuntimeError, TypeError, ValueError, AttributeError):
        return False


@pytest.mark.skipif(not _cpu_fp16_ok(), reason='this torch has no float16 autocast or GradScaler on CPU')
def test_float16_with_grad_scaler_on_cpu_composes_with_clipping_and_accumulation(make_learner):
    learn = make_learner(opt_func=SGD_MOM, dls_kw=dict(n_train=256, bs=16))
    seen = NormSeenByOptimizer(learn.opt)
    spy = DtypeSpy()
    loss0 = learn.validate()['valid_loss']
    fit_one_cycle(learn, 4, 0.5,
                  callbacks=[MixedPrecision(torch.float16), GradientClipping(0.5), GradAccumulation(2), spy])
    assert spy.pred_dtypes == {torch.float16} and spy.scalers == {'GradScaler'}
    assert learn.step_count == 32 and seen.norms              # steps the scaler skipped never reach the optimizer
    assert max(seen.norms) <= 0.5 * (1 + 1e-3)                # clipped after unscaling: true gradient norms
    assert learn.validate()['valid_loss'] < loss0 / 2
    assert learn.scaler is None and not torch.is_autocast_enabled('cpu')


def test_mixed_precision_kept_on_the_learner_also_serves_validate(make_learner):
    spy = DtypeSpy()
    learn = make_learner(cbs=[MixedPrecision(torch.bfloat16), spy])
    res = learn.validate()                      # before any fit
    assert spy.pred_dtypes == {torch.bfloat16} and res['valid_loss'] > 0
    assert not torch.is_autocast_enabled('cpu')


def test_mixed_precision_leaves_autocast_off_after_an_error(make_learner):
    learn = make_learner()
    class Boom(Callback):
        def after_pred(self): raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'):
        learn.fit(1, cbs=[MixedPrecision(torch.bfloat16), Boom()])
    assert not torch.is_autocast_enabled('cpu')


def test_mixed_precision_rejects_other_dtypes():
    with pytest.raises(ValueError, match='dtype'): MixedPrecision(torch.float32)
