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
    spy, mp = DtypeSpy(), MixedPrecision(torch.float16)
    loss0 = learn.validate()['valid_loss']
    fit_one_cycle(learn, 4, 0.5, callbacks=[mp, GradientClipping(0.5), GradAccumulation(2), spy])
    assert spy.pred_dtypes == {torch.float16} and spy.scalers == {'GradScaler'}
    # the first steps overflow while the scale calibrates (65536 halves until it fits): skipped, not counted
    assert 0 < mp.n_skipped < 8 and learn.step_count == 32 - mp.n_skipped == len(learn.recorder.lrs)
    assert len(seen.norms) == learn.step_count                # steps the scaler skipped never reach the optimizer
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


# --- a step the fp16 GradScaler skips is no optimizer step ------------------------------------------------------

class InfGradAt(Callback):
    "Writes inf into a gradient after the backward pass of the given (epoch, batch) pairs: an fp16 overflow."
    def __init__(self, at): self.at = set(at)
    def after_backward(self):
        if (self.learn.epoch, self.learn.iter) in self.at:
            next(iter(self.learn.model.parameters())).grad.view(-1)[0] = float('inf')


class CalmScaler(Callback):
    "Starts the fp16 scaler at scale 1, never growing: no overflow but the ones a test makes."
    order = -5   # after MixedPrecision made the scaler
    def before_fit(self):
        if not self.learn.keep_history:   # a resumed fit has the checkpoint's scale
            self.learn.scaler.load_state_dict({'scale': 1., 'growth_factor': 2., 'backoff_factor': .5,
                                               'growth_interval': 10 ** 6, '_growth_tracker': 0})


class BatchSpy(Callback):
    "Per training batch: the lr it trained with, whether its weights changed, whether gradients were left."
    order = 100
    def before_fit(self): self.lrs, self.moved, self.grads_left = [], [], []
    def before_batch(self): self.w = [p.detach().clone() for p in self.learn.model.parameters()]
    def after_pred(self):
        if self.learn.training: self.lrs.append(self.learn.opt.param_groups[0]['lr'])
    def after_batch(self):
        if not self.learn.training: return
        self.moved.append(any(not torch.equal(a, p) for a, p in zip(self.w, self.learn.model.parameters())))
        self.grads_left.append(any(p.grad is not None for p in self.learn.model.parameters()))


SKIPS = {(0, 2), (1, 1)}   # global training batches 2 and 5 of 4 per epoch


@pytest.mark.skipif(not _cpu_fp16_ok(), reason='this torch has no float16 autocast or GradScaler on CPU')
def test_an_overflowed_fp16_step_advances_no_count_schedule_or_history(make_learner):
    ref = make_learner(opt_func=SGD_MOM)
    fit_one_cycle(ref, 2, 0.1, callbacks=[MixedPrecision(torch.float16), CalmScaler()])
    assert ref.step_count == 8 and len(ref.recorder.lrs) == 8
    learn, mp, spy = make_learner(opt_func=SGD_MOM), MixedPrecision(torch.float16), BatchSpy()
    fit_one_cycle(learn, 2, 0.1, callbacks=[mp, CalmScaler(), InfGradAt(SKIPS), spy])
    assert mp.n_skipped == 2 and learn.step_count == 6
    assert len(learn.recorder.losses) == 8                                    # the batches' losses are kept
    assert {k: len(v) for k, v in learn.recorder.hps.items() if v} == {'lr': 6, 'mom': 6, 'wd': 6}
    # the schedule (lr and momentum) is where it was: the batch after a skip takes the skipped step's place
    assert learn.recorder.lrs == ref.recorder.lrs[:6] and learn.recorder.moms == ref.recorder.moms[:6]
    r = ref.recorder.lrs
    assert spy.lrs == [r[0], r[1], r[2], r[2], r[3], r[4], r[4], r[5]]
    assert spy.moved == [True, True, False, True, True, False, True, True]   # nothing applied on a skipped batch
    assert not any(spy.grads_left)                                            # its inf gradients were dropped
    assert learn.scaler is None and mp.scaler.get_scale() == 0.25            # backed off once per overflow


@pytest.mark.skipif(not _cpu_fp16_ok(), reason='this torch has no float16 autocast or GradScaler on CPU')
def test_an_overflowed_fp16_step_does_not_step_a_torch_scheduler(make_learner):
    from torch.optim.lr_scheduler import LinearLR

    from onecycle import TorchScheduler
    learn, mp = make_learner(opt_func=SGD_MOM), MixedPrecision(torch.float16)
    ts = TorchScheduler(lambda opt: LinearLR(opt, 1., 0.1, total_iters=7))
    learn.fit(2, lr=0.1, cbs=[mp, CalmScaler(), InfGradAt(SKIPS), ts])
    assert mp.n_skipped == 2 and learn.step_count == 6 == ts.sched.last_epoch
    # the lrs of the first 6 steps of the schedule: the skipped steps took no place in it
    assert learn.recorder.lrs == pytest.approx([v[0] for v in ts.sample(6, lr=0.1)['lr']], rel=1e-12)
    assert learn.opt.param_groups[0]['lr'] == pytest.approx(0.1 * (1 - 0.9 * 6 / 7), rel=1e-12)


def _cpu_fused_adamw_ok():
    try:
        p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
        opt = torch.optim.AdamW([p], fused=True); opt.step()
        return getattr(opt, '_step_supports_amp_scaling', False)
    except (RuntimeError, TypeError, ValueError):
        return False


@pytest.mark.skipif(not (_cpu_fp16_ok() and _cpu_fused_adamw_ok()), reason='this torch has no CPU fp16 or fused AdamW')
def test_a_fused_optimizer_skips_an_overflowed_fp16_step_itself_with_no_host_read(make_learner, monkeypatch):
    """A fused optimizer skips the step on the device (torch's own GradScaler contract): MixedPrecision then
    reads no flag on the host, nothing moves on the skipped batches, weight decay included, and the count
    is still right; the skipped steps take their place in the schedule (the price of no synchronisation)."""
    learn = make_learner(opt_func=partial(torch.optim.AdamW, fused=True), wd=0.1)
    mp, spy = MixedPrecision(torch.float16), BatchSpy()
    inside, reads = [False], []
    real_item, real_bool = torch.Tensor.item, torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, 'item', lambda t: (reads.append('item') if inside[0] else None, real_item(t))[1])
    monkeypatch.setattr(torch.Tensor, '__bool__',
                        lambda t: (reads.append('bool') if inside[0] else None, real_bool(t))[1])
    real_before_step = mp.before_step
    def watched():
        inside[0] = True
        try: real_before_step()
        finally: inside[0] = False
    mp.before_step = watched
    fit_one_cycle(learn, 2, 1e-2, callbacks=[mp, CalmScaler(), InfGradAt(SKIPS), spy])
    assert reads == []
    assert learn.step_count == 8 and len(learn.recorder.lrs) == 8          # the skipped steps counted
    assert spy.moved == [True, True, False, True, True, False, True, True]   # neither update nor decay applied
    assert mp.n_skipped == 2 and mp.scaler.get_scale() == 0.25
    # against a plain (foreach) AdamW, which the host read lets MixedPrecision cancel: the same count
    plain, mp2 = make_learner(opt_func=torch.optim.AdamW, wd=0.1), MixedPrecision(torch.float16)
    fit_one_cycle(plain, 2, 1e-2, callbacks=[mp2, CalmScaler(), InfGradAt(SKIPS)])
    assert mp2.n_skipped == 2 and plain.step_count == 6


@pytest.mark.skipif(not _cpu_fp16_ok(), reason='this torch has no float16 autocast or GradScaler on CPU')
def test_resume_after_an_overflowed_fp16_step_is_bitwise(make_learner):
    from onecycle import CancelFitException

    class StopAfter(Callback):
        order = 100
        def after_batch(self):
            if self.learn.training and (self.learn.epoch, self.learn.iter) == (1, 2): raise CancelFitException()

    def make(): return make_learner(opt_func=torch.optim.AdamW, dls_kw=dict(shuffle=True))
    def cbs(*more): return [MixedPrecision(torch.float16), CalmScaler(), InfGradAt(SKIPS), *more]
    ref = make()
    fit_one_cycle(ref, 3, 1e-2, callbacks=cbs())
    learn = make()
    fit_one_cycle(learn, 3, 1e-2, callbacks=cbs(StopAfter()))   # stopped after both skips
    assert learn.step_count == 5
    mp = MixedPrecision(torch.float16)
    learn.fit_one_cycle(3, 1e-2, callbacks=[mp, CalmScaler(), InfGradAt(SKIPS)], resume=True)
    assert learn.step_count == ref.step_count == 10 and mp.n_skipped == 2
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), learn.model.state_dict().values()))
    assert learn.recorder.losses == ref.recorder.losses and learn.recorder.hps == ref.recorder.hps
