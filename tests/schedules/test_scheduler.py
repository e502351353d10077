"""1cycle, cyclical momentum and ParamScheduler, checked step by step against torch's OneCycleLR."""
from functools import partial

import pytest
import torch

from onecycle import (Callback, CyclicalMomentum, OneCycleScheduler, ParamScheduler, fit_one_cycle, get_hyper)
from onecycle.schedules.functions import Cosine, Linear, progress_of_step

SGD_MOM = partial(torch.optim.SGD, momentum=0.9)


def torch_one_cycle(n_groups, total_steps, opt_cls=SGD_MOM, **kwargs):
    "lr and momentum per step (one list per group) that OneCycleLR applies over `total_steps` steps."
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(n_groups)]
    opt = opt_cls([{'params': [p]} for p in params], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, total_steps=total_steps, **kwargs)
    lrs, moms = [], []
    for _ in range(total_steps):
        lrs.append([float(pg['lr']) for pg in opt.param_groups])
        moms.append([float(get_hyper(pg, 'mom')) for pg in opt.param_groups])
        for p in params: p.grad = torch.zeros_like(p)
        opt.step(); sched.step()
    return lrs, moms


def assert_rel_close(got, want, tol=1e-6):
    assert len(got) == len(want), f'{len(got)} steps recorded, expected {len(want)}'
    for i, (g, w) in enumerate(zip(got, want)):
        for a, b in zip(g, w):
            assert abs(a - b) <= tol * abs(b), f'step {i}: got {a}, OneCycleLR applies {b}'


@pytest.mark.parametrize('anneal_strategy', ['cos', 'linear'])
@pytest.mark.parametrize('pct_start,div_factor,final_div_factor', [(0.3, 25., 1e4), (0.25, 10., 100.), (0.5, 3., 1e3),
                                                                  (0.1, 100., 1.)])
def test_one_cycle_lr_matches_torch_every_step(make_learner, anneal_strategy, pct_start, div_factor, final_div_factor):
    learn = make_learner(opt_func=SGD_MOM, dls_kw=dict(n_train=60, bs=4))   # 15 steps per epoch
    learn.fit(3, cbs=[OneCycleScheduler(0.05, div_factor, pct_start, final_div_factor, anneal_strategy)])
    want, _ = torch_one_cycle(1, 45, max_lr=0.05, pct_start=pct_start, div_factor=div_factor,
                              final_div_factor=final_div_factor, anneal_strategy=anneal_strategy)
    assert_rel_close(learn.recorder.hps['lr'], want)
    assert learn.recorder.lrs == [r[0] for r in learn.recorder.hps['lr']]


@pytest.mark.parametrize('anneal_strategy', ['cos', 'linear'])
def test_three_phase_matches_torch(make_learner, anneal_strategy):
    learn = make_learner(opt_func=SGD_MOM, dls_kw=dict(n_train=64, bs=4))
    fit_one_cycle(learn, 2, 0.1, pct_start=0.25, three_phase=True, anneal_strategy=anneal_strategy)
    want_lr, want_mom = torch_one_cycle(1, 32, max_lr=0.1, pct_start=0.25, three_phase=True,
                                        anneal_strategy=anneal_strategy)
    assert_rel_close(learn.recorder.hps['lr'], want_lr)
    assert_rel_close(learn.recorder.hps['mom'], want_mom)


@pytest.mark.parametrize('max_lr', [[0.01, 0.1], (0.003, 0.3)])
def test_per_group_max_lr_matches_torch(make_learner, splitter, max_lr):
    learn = make_learner(opt_func=SGD_MOM, splitter=splitter, dls_kw=dict(n_train=64, bs=8))
    assert len(learn.opt.param_groups) == 2
    fit_one_cycle(learn, 3, max_lr, div_factor=10., pct_start=0.4)
    want_lr, want_mom = torch_one_cycle(2, 24, max_lr=list(max_lr), div_factor=10., pct_start=0.4)
    assert_rel_close(learn.recorder.hps['lr'], want_lr)
    assert_rel_close(learn.recorder.hps['mom'], want_mom)


def test_slice_max_lr_spreads_across_groups(make_learner, splitter):
    learn = make_learner(splitter=splitter)
    fit_one_cycle(learn, 2, slice(1e-3, 1e-1), moms=None)
    want, _ = torch_one_cycle(2, 8, max_lr=[1e-3, 1e-1])
    assert_rel_close(learn.recorder.hps['lr'], want)


@pytest.mark.parametrize('anneal_strategy', ['cos', 'linear'])
def test_cyclical_momentum_matches_torch_on_sgd(make_learner, anneal_strategy):
    learn = make_learner(opt_func=SGD_MOM, dls_kw=dict(n_train=64, bs=4))
    learn.fit(2, cbs=[OneCycleScheduler(0.1, anneal_strategy=anneal_strategy),
                      CyclicalMomentum((0.95, 0.8), anneal_strategy=anneal_strategy)])
    _, want = torch_one_cycle(1, 32, max_lr=0.1, max_momentum=0.95, base_momentum=0.8, anneal_strategy=anneal_strategy)
    assert_rel_close(learn.recorder.hps['mom'], want)
    moms = learn.recorder.moms
    assert moms[0] == pytest.approx(0.95) and 0.8 <= min(moms) < 0.81 and moms[-1] == pytest.approx(0.95)
    assert learn.opt.param_groups[0]['momentum'] == pytest.approx(0.95)


@pytest.mark.parametrize('opt_func', [torch.optim.Adam, torch.optim.AdamW])
def test_cyclical_momentum_matches_torch_on_adam_beta1(make_learner, opt_func):
    learn = make_learner(opt_func=partial(opt_func, betas=(0.9, 0.99)), dls_kw=dict(n_train=64, bs=4))
    fit_one_cycle(learn, 2, 1e-2, pct_start=0.25)
    want_lr, want_mom = torch_one_cycle(1, 32, opt_cls=partial(opt_func, betas=(0.9, 0.99)), max_lr=1e-2,
                                        pct_start=0.25)
    assert_rel_close(learn.recorder.hps['lr'], want_lr)
    assert_rel_close(learn.recorder.hps['mom'], want_mom)
    assert learn.opt.param_groups[0]['betas'][1] == 0.99    # beta2 untouched


def test_continuing_a_cycle_equals_one_call(make_learner):
    whole = make_learner(opt_func=SGD_MOM)
    fit_one_cycle(whole, 5, 0.1)
    parts = make_learner(opt_func=SGD_MOM)
    fit_one_cycle(parts, 2, 0.1, tot_epochs=5)
    lrs, moms = list(parts.recorder.lrs), list(parts.recorder.moms)
    parts.fit_one_cycle(3, 0.1, tot_epochs=5, start_epoch=3)
    lrs += parts.recorder.lrs; moms += parts.recorder.moms
    assert len(lrs) == len(whole.recorder.lrs) == 20
    assert lrs == pytest.approx(whole.recorder.lrs, rel=1e-12)
    assert moms == pytest.approx(whole.recorder.moms, rel=1e-12)
    # same data order and same schedule: the same weights
    for a, b in zip(whole.model.parameters(), parts.model.parameters()):
        torch.testing.assert_close(a, b)


def test_fit_one_cycle_callbacks_live_for_the_call_only(make_learner):
    learn = make_learner()
    before = list(learn.cbs)
    seen = []
    class Spy(Callback):
        def before_fit(self): seen.append([type(c).__name__ for c in self.learn.cbs])
    fit_one_cycle(learn, 1, 0.1, callbacks=Spy())
    assert 'OneCycleScheduler' in seen[0] and 'CyclicalMomentum' in seen[0] and 'Spy' in seen[0]
    assert learn.cbs == before


class HyperLog(Callback):
    "Reads hyper-parameters as the optimizer is about to step (after the schedulers set them)."
    order = 20
    def __init__(self, names): self.names, self.log = names, []
    def before_step(self):
        self.log.append({n: [float(get_hyper(pg, n)) for pg in self.learn.opt.param_groups] for n in self.names})


def test_param_scheduler_any_hyper_per_group(make_learner, splitter):
    learn = make_learner(opt_func=torch.optim.Adam, splitter=splitter)
    scheds = {'eps': Linear(1e-8, 1e-6), 'beta2': [Cosine(0.99, 0.9), Linear(0.9, 0.999)],
              'wd': [Linear(0., 0.1), Cosine(0.2, 0.)], 'lr': [Cosine(1e-3, 1e-5), Cosine(1e-2, 1e-4)]}
    log = HyperLog(list(scheds))
    learn.fit(2, cbs=[ParamScheduler(scheds), log])
    assert len(log.log) == 8
    for i, row in enumerate(log.log):
        p = progress_of_step(i, 8)
        for name, s in scheds.items():
            fs = s if isinstance(s, list) else [s, s]
            assert row[name] == pytest.approx([f(p) for f in fs], rel=1e-12, abs=1e-15)
    assert learn.recorder.hps['wd'][-1] == pytest.approx([0.1, 0.])


def test_param_scheduler_total_and_start_step(make_learner):
    learn = make_learner()
    log = HyperLog(['lr'])
    learn.fit(1, cbs=[ParamScheduler({'lr': Linear(0.1, 1.1)}, total_steps=11, start_step=3), log])
    assert [r['lr'][0] for r in log.log] == pytest.approx([0.4, 0.5, 0.6, 0.7])


def test_param_scheduler_on_momentum_of_sgd_and_adam(make_learner):
    for opt_func, read in [(SGD_MOM, lambda pg: pg['momentum']), (torch.optim.Adam, lambda pg: pg['betas'][0])]:
        learn = make_learner(opt_func=opt_func)
        learn.fit(1, cbs=[ParamScheduler({'mom': Linear(0.5, 0.8)})])
        assert learn.recorder.moms == pytest.approx([0.5, 0.6, 0.7, 0.8])
        assert read(learn.opt.param_groups[0]) == pytest.approx(0.8)


def _step_counter(learn):
    n = [0]
    learn.opt.register_step_pre_hook(lambda *a: n.__setitem__(0, n[0] + 1))
    return n


def test_cyclical_momentum_on_optimizer_without_momentum_raises_before_any_step(make_learner):
    learn = make_learner(opt_func=torch.optim.Adagrad)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    steps = _step_counter(learn)
    with pytest.raises(ValueError, match=r"Adagrad.*'mom'|'mom'.*Adagrad"):
        fit_one_cycle(learn, 1, 0.1)
    assert steps[0] == 0
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
    fit_one_cycle(learn, 1, 0.1, moms=None)   # without momentum cycling it trains
    assert steps[0] == 4


def test_param_scheduler_wrong_number_of_group_schedules_raises_before_any_step(make_learner, splitter):
    learn = make_learner(splitter=splitter)
    steps = _step_counter(learn)
    with pytest.raises(ValueError, match='param groups'):
        learn.fit(1, cbs=[ParamScheduler({'lr': [Linear(0.1, 0.2)] * 3})])
    with pytest.raises(ValueError, match='param groups'):
        fit_one_cycle(learn, 1, [0.1, 0.2, 0.3])
    assert steps[0] == 0


@pytest.mark.parametrize('make,exc,word', [
    (lambda: OneCycleScheduler(-0.1), ValueError, 'max_lr'),
    (lambda: OneCycleScheduler('big'), TypeError, 'max_lr'),
    (lambda: OneCycleScheduler(0.1, div_factor=0), ValueError, 'div_factor'),
    (lambda: OneCycleScheduler(0.1, final_div_factor=-1), ValueError, 'final_div_factor'),
    (lambda: OneCycleScheduler(0.1, pct_start=1.), ValueError, 'pct_start'),
    (lambda: OneCycleScheduler(0.1, pct_start=0.), ValueError, 'pct_start'),
    (lambda: OneCycleScheduler(0.1, anneal_strategy='exp'), ValueError, 'anneal_strategy'),
    (lambda: OneCycleScheduler(0.1, tot_epochs=2, start_epoch=3), ValueError, 'start_epoch'),
    (lambda: CyclicalMomentum((0.95, 1.2)), ValueError, 'moms'),
    (lambda: CyclicalMomentum(0.9), TypeError, 'moms'),
    (lambda: ParamScheduler({'lr': 0.1}), TypeError, 'callable'),
    (lambda: ParamScheduler({}), TypeError, 'scheds'),
    (lambda: ParamScheduler({'lr': Linear(0, 1)}, total_steps=0), ValueError, 'total_steps'),
])
def test_bad_scheduler_arguments(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


@pytest.mark.parametrize('kwargs,exc,word', [
    (dict(cyc_len=0, max_lr=0.1), ValueError, 'cyc_len'),
    (dict(cyc_len=2.5, max_lr=0.1), TypeError, 'cyc_len'),
    (dict(cyc_len=1, max_lr=-0.1), ValueError, 'max_lr'),
    (dict(cyc_len=1, max_lr=0.1, pct_start=1.5), ValueError, 'pct_start'),
    (dict(cyc_len=1, max_lr=0.1, pct_start=0), ValueError, 'pct_start'),
    (dict(cyc_len=1, max_lr=0.1, moms=(0.95,)), TypeError, 'moms'),
    (dict(cyc_len=1, max_lr=0.1, wd=-1.), ValueError, 'wd'),
    (dict(cyc_len=3, max_lr=0.1, tot_epochs=4, start_epoch=3), ValueError, 'tot_epochs'),
    (dict(cyc_len=1, max_lr=0.1, start_epoch=0), ValueError, 'start_epoch'),
])
def test_bad_fit_one_cycle_arguments_raise_before_any_step(make_learner, kwargs, exc, word):
    learn = make_learner(opt_func=SGD_MOM)
    fit_one_cycle(learn, 1, 0.1)                          # some history and optimizer state to keep
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    hypers = lambda: [{k: v for k, v in pg.items() if k != 'params'} for pg in learn.opt.param_groups]
    hist, pgs = list(learn.recorder.lrs), hypers()
    steps = _step_counter(learn)
    with pytest.raises(exc, match=word):
        fit_one_cycle(learn, **kwargs)
    assert steps[0] == 0 and learn.recorder.lrs == hist
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
    assert hypers() == pgs
