"""The schedule catalogue: closed forms, parity with torch inside a Learner, pickling, bad arguments,
the one scheduler for any hyper-parameter, plot_sched and the fit_* one-liners."""
import math
import pickle

import pytest
import torch
from torch.optim import lr_scheduler as L

from onecycle import (CLRScheduler, Constant, CosineAnnealing, CosineWarmRestarts, Cosine, Cyclical, CyclicalMomentum,
                      CyclicalWeightDecay, ExponentialDecay, FlatCos, InverseTimeDecay, Linear, MultiStepDecay,
                      OneCyclePlateau, OneCycleScheduler, ParamScheduler, PolynomialDecay, SGDRScheduler,
                      SlantedTriangular, StepDecay, Warmup, combine, fit_clr, fit_flat_cos, fit_one_cycle, fit_sgdr,
                      fit_warmup_cos, one_cycle, plot_sched)
from onecycle.schedules.functions import progress_of_step

PCTS = [0., 0.1, 0.25, 0.3, 0.5, 0.75, 0.9, 1.]
BS, N_TRAIN = 8, 64           # 8 optimizer steps per epoch
EPOCHS, T = 3, 3 * 8          # a 24-step run


def at_step(f, i, total=T):
    return f(progress_of_step(i, total))


def close(a, b, rel=1e-12, abs_=1e-15):
    return a == pytest.approx(b, rel=rel, abs=abs_)


# --- closed forms --------------------------------------------------------------------------------
def test_step_decay_fractions_and_steps():
    f = StepDecay(1., 0.25, gamma=0.5)
    for p in PCTS: assert close(f(p), 0.5 ** math.floor(p / 0.25 + 1e-12))
    assert f(0.2499) == 1. and f(0.25) == 0.5 and f(1.) == 0.5 ** 4
    g = StepDecay(2., 5, gamma=0.1, total_steps=T)
    assert [at_step(g, i) for i in (0, 4, 5, 9, 10, 23)] == pytest.approx([2., 2., .2, .2, .02, 2e-4])


def test_multi_step_decay_counts_repeated_milestones():
    f = MultiStepDecay(1., [0.5, 0.75], gamma=0.1)
    assert [f(p) for p in (0., 0.49, 0.5, 0.74, 0.75, 1.)] == pytest.approx([1, 1, .1, .1, .01, .01])
    g = MultiStepDecay(1., [10, 3, 10], gamma=0.5, total_steps=T)   # unsorted, 10 twice
    assert [at_step(g, i) for i in (2, 3, 9, 10, 23)] == pytest.approx([1, .5, .5, .125, .125])


def test_exponential_and_inverse_time_decay():
    f = ExponentialDecay(0.1, 1e-3)                            # factor over the whole run
    for p in PCTS: assert close(f(p), 0.1 * 1e-3 ** p)
    g = ExponentialDecay(0.1, 0.9, total_steps=T)              # factor per step
    for i in (0, 1, 7, 23): assert close(at_step(g, i), 0.1 * 0.9 ** i)
    h = InverseTimeDecay(0.1, 4.)
    for p in PCTS: assert close(h(p), 0.1 / (1 + 4 * p))
    k = InverseTimeDecay(0.1, 0.5, power=0.75, total_steps=T)
    for i in (0, 3, 23): assert close(at_step(k, i), 0.1 / (1 + 0.5 * i) ** 0.75)


def test_polynomial_decay():
    f = PolynomialDecay(1., 0.1, power=2.)
    for p in PCTS: assert close(f(p), 0.1 + 0.9 * (1 - p) ** 2)
    assert PolynomialDecay(3., power=1.)(0.4) == pytest.approx(1.8)   # power 1 is linear
    g = PolynomialDecay(1., power=0.5, total_iters=10, total_steps=T)
    for i in (0, 4, 10, 15, 23): assert close(at_step(g, i), (1 - min(i, 10) / 10) ** 0.5, abs_=1e-15)


def test_cosine_annealing():
    assert all(close(CosineAnnealing(1., 0.1)(p), Cosine(1., 0.1)(p)) for p in PCTS)
    g = CosineAnnealing(1., 0.1, t_max=10, total_steps=T)
    for i in (0, 5, 10, 15, 20, 23):   # past t_max the cosine goes back up, as torch's does
        assert close(at_step(g, i), 0.1 + 0.9 * (1 + math.cos(math.pi * i / 10)) / 2)


def test_cosine_warm_restarts_with_cycle_multiplier():
    f = CosineWarmRestarts(1., 0., cycle_len=3, cycle_mult=2, total_steps=T)   # cycles 3, 6, 12, 24...
    for i, (t_cur, t_i) in {0: (0, 3), 2: (2, 3), 3: (0, 6), 8: (5, 6), 9: (0, 12), 20: (11, 12), 21: (0, 24)}.items():
        assert f.position(progress_of_step(i, T)) == (t_cur, t_i)
        assert close(at_step(f, i), (1 + math.cos(math.pi * t_cur / t_i)) / 2)
    g = CosineWarmRestarts(1., 0.2, cycle_len=0.25)             # fractions, four equal cycles
    assert close(g(0.25), 1.) and close(g(0.5), 1.) and close(g(0.125), 0.6) and close(g(0.375), 0.6)


def _clr(t, base, peak, up, down, mode, gamma):
    total = up + down
    cycle = math.floor(1 + t / total)
    x = 1 + t / total - cycle
    s = x * total / up if x <= up / total else (1 - x) * total / down
    amp = {'triangular': 1, 'triangular2': 0.5 ** (cycle - 1), 'exp_range': gamma ** t}[mode]
    return base + (peak - base) * s * amp


@pytest.mark.parametrize('mode', ['triangular', 'triangular2', 'exp_range'])
def test_cyclical_closed_form(mode):
    f = Cyclical(0.01, 0.1, 4, 2, mode=mode, gamma=0.9, total_steps=T)
    vals = [at_step(f, i) for i in range(T)]
    assert vals == pytest.approx([_clr(i, 0.01, 0.1, 4, 2, mode, 0.9) for i in range(T)], rel=1e-12)
    assert vals[0] == pytest.approx(0.01) and vals[6] == pytest.approx(0.01)
    if mode == 'triangular': assert vals[4] == pytest.approx(0.1) and vals[10] == pytest.approx(0.1)
    if mode == 'triangular2': assert vals[10] == pytest.approx(0.01 + 0.09 / 2)
    m = Cyclical(0.95, 0.85, 0.25)                              # momentum: the other way, in fractions
    assert close(m(0.), 0.95) and close(m(0.25), 0.85) and close(m(0.125), 0.9) and close(m(0.5), 0.95)


def test_slanted_triangular():
    f = SlantedTriangular(0.01, cut_frac=0.1, ratio=32)
    assert close(f(0.), 0.01 / 32) and close(f(0.1), 0.01) and close(f(1.), 0.01 / 32)
    for p in (0.05, 0.4, 0.8):
        q = p / 0.1 if p < 0.1 else 1 - (p - 0.1) / 0.9
        assert close(f(p), 0.01 * (1 + q * 31) / 32)


def test_one_cycle_plateau_holds_the_top_while_momentum_holds_the_bottom():
    lr, mom = OneCyclePlateau(0.004, 0.1, 1e-6, 0.25, 0.25), OneCyclePlateau(0.95, 0.85, 0.95, 0.25, 0.25)
    assert close(lr(0.), 0.004) and close(lr(0.125), Cosine(0.004, 0.1)(0.5)) and close(lr(1.), 1e-6)
    for p in (0.25, 0.3, 0.4, 0.5):
        assert lr(p) == 0.1 and mom(p) == 0.85
    assert close(lr(0.75), Cosine(0.1, 1e-6)(0.5)) and close(mom(0.75), 0.9) and close(mom(1.), 0.95)
    lin = OneCyclePlateau(0., 1., 0., 0.2, 0.3, anneal_strategy='linear')
    assert close(lin(0.1), 0.5) and lin(0.45) == 1. and close(lin(0.75), 0.5)


def test_flat_cos_and_warmup():
    f = FlatCos(0.1, 0.001, pct_flat=0.6)
    assert all(f(p) == 0.1 for p in (0., 0.3, 0.6))
    assert close(f(0.8), Cosine(0.1, 0.001)(0.5)) and close(f(1.), 0.001)
    w = Warmup(Cosine(1., 0.), warmup=0.2, start=0.)
    assert close(w(0.), 0.) and close(w(0.1), 0.5) and close(w(0.2), 1.)
    assert close(w(0.6), Cosine(1., 0.)(0.5)) and close(w(1.), 0.)
    # in steps: steps 0..4 warm up, then a step-based schedule over the remaining T - 4 steps
    inner = StepDecay(1., 5, 0.5, total_steps=T - 4)
    ws = Warmup(inner, warmup=4, start=0.2, total_steps=T)
    assert [at_step(ws, i) for i in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.])
    assert [at_step(ws, i) for i in range(4, T)] == pytest.approx([at_step(inner, i, T - 4) for i in range(T - 4)])


def test_schedules_compose():
    s = combine([0.1, 0.9], [Linear(0., 1.), Cyclical(1., 0.5, 0.25)])
    assert close(s(0.1), 1.) and close(s(0.1 + 0.9 * 0.25), 0.5)
    w = Warmup(OneCyclePlateau(0.1, 1., 0.), 0.1)
    assert w(0.) == 0. and close(w(0.1), 0.1) and close(w(1.), 0.)


# --- parity with torch, through a Learner fit ----------------------------------------------------
TORCH_CASES = {
    'StepLR': (StepDecay(0.1, 5, 0.5, total_steps=T), lambda o: L.StepLR(o, 5, 0.5)),
    'MultiStepLR': (MultiStepDecay(0.1, [3, 10, 10, 17], 0.5, total_steps=T),
                    lambda o: L.MultiStepLR(o, [3, 10, 10, 17], 0.5)),
    'ExponentialLR': (ExponentialDecay(0.1, 0.9, total_steps=T), lambda o: L.ExponentialLR(o, 0.9)),
    'PolynomialLR': (PolynomialDecay(0.1, 0., 2., total_iters=20, total_steps=T), lambda o: L.PolynomialLR(o, 20, 2.)),
    'PolynomialLR-whole': (PolynomialDecay(0.1, 0., 1.5, total_iters=T, total_steps=T),
                           lambda o: L.PolynomialLR(o, T, 1.5)),
    'CosineAnnealingLR': (CosineAnnealing(0.1, 0.001, t_max=T - 1, total_steps=T),
                          lambda o: L.CosineAnnealingLR(o, T - 1, 0.001)),
    'CosineAnnealingLR-past-T_max': (CosineAnnealing(0.1, 0.001, t_max=10, total_steps=T),
                                     lambda o: L.CosineAnnealingLR(o, 10, 0.001)),
    'CosineAnnealingWarmRestarts': (CosineWarmRestarts(0.1, 0., 5, 1, total_steps=T),
                                    lambda o: L.CosineAnnealingWarmRestarts(o, 5)),
    'CosineAnnealingWarmRestarts-T_mult': (CosineWarmRestarts(0.1, 0.001, 3, 2, total_steps=T),
                                           lambda o: L.CosineAnnealingWarmRestarts(o, 3, 2, 0.001)),
    'CyclicLR-triangular': (Cyclical(0.01, 0.1, 4, 3, 'triangular', total_steps=T),
                            lambda o: L.CyclicLR(o, 0.01, 0.1, 4, 3, 'triangular', cycle_momentum=False)),
    'CyclicLR-triangular2': (Cyclical(0.01, 0.1, 3, None, 'triangular2', total_steps=T),
                             lambda o: L.CyclicLR(o, 0.01, 0.1, 3, None, 'triangular2', cycle_momentum=False)),
    'CyclicLR-exp_range': (Cyclical(0.01, 0.1, 4, None, 'exp_range', 0.95, total_steps=T),
                           lambda o: L.CyclicLR(o, 0.01, 0.1, 4, None, 'exp_range', 0.95, cycle_momentum=False)),
    'OneCycleLR-three_phase': (one_cycle(0.1 / 25, 0.1, 0.1 / 25 / 1e4, 0.3, three_phase=True, total_steps=T),
                               lambda o: L.OneCycleLR(o, 0.1, T, pct_start=0.3, three_phase=True)),
}


def torch_run(make, n_steps, lrs=(0.1,), momentum=0.9):
    "The lr (and momentum) of each group at each of `n_steps` steps of a plain torch loop."
    o = torch.optim.SGD([{'params': [torch.zeros(1, requires_grad=True)], 'lr': lr} for lr in lrs],
                        lr=lrs[0], momentum=momentum)
    sched, out = make(o), []
    for _ in range(n_steps):
        out.append([(pg['lr'], pg['momentum']) for pg in o.param_groups])
        o.step(); sched.step()
    return out


def rel_err(a, b):
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


@pytest.fixture
def learner(make_learner):
    return lambda **kw: make_learner(dls_kw=dict(n_train=N_TRAIN, bs=BS), lr=0.1, **kw)


@pytest.mark.parametrize('name', list(TORCH_CASES))
def test_lr_recorded_in_a_fit_matches_torch(learner, name):
    sched, make = TORCH_CASES[name]
    learn = learner()
    learn.fit(EPOCHS, cbs=[ParamScheduler({'lr': sched})])
    ours = learn.recorder.lrs
    ref = [r[0][0] for r in torch_run(make, T)]
    assert len(ours) == T
    assert rel_err(ours, ref) < 1e-6, (ours, ref)


def test_fit_one_cycle_three_phase_matches_torch_lr_and_momentum(learner):
    learn = learner()
    fit_one_cycle(learn, EPOCHS, max_lr=0.1, three_phase=True)
    ref = torch_run(lambda o: L.OneCycleLR(o, 0.1, T, three_phase=True), T)
    assert rel_err(learn.recorder.lrs, [r[0][0] for r in ref]) < 1e-6
    assert rel_err(learn.recorder.moms, [r[0][1] for r in ref]) < 1e-6


def test_per_group_schedules_match_torch_per_group(learner, splitter):
    learn = learner(splitter=splitter)
    learn.fit(EPOCHS, cbs=[ParamScheduler({'lr': [StepDecay(0.01, 5, 0.5, total_steps=T),
                                                  StepDecay(0.1, 5, 0.5, total_steps=T)]})])
    ref = torch_run(lambda o: L.StepLR(o, 5, 0.5), T, lrs=(0.01, 0.1))
    for g in range(2):
        assert rel_err([h[g] for h in learn.recorder.hps['lr']], [r[g][0] for r in ref]) < 1e-6


# --- the one scheduler for any hyper-parameter ---------------------------------------------------
def test_param_scheduler_drives_beta2_eps_and_any_group_key(learner):
    learn = learner(opt_func=torch.optim.Adam)
    seen = []
    class Spy:
        order = 60
        def after_step(self): seen.append({k: learn.opt.param_groups[0][k] for k in ('betas', 'eps', 'weight_decay')})
    learn.add_cb(Spy())
    b2, eps = Linear(0.99, 0.9), ExponentialDecay(1e-8, 1e2)
    own_wd = Linear(0., 1e-2)   # any param-group key by its own name: here torch's coupled weight_decay
    learn.fit(1, cbs=[ParamScheduler({'beta2': b2, 'eps': eps, 'mom': Cosine(0.95, 0.85), 'lr': Constant(1e-3),
                                      'weight_decay': own_wd})])
    n = len(seen)
    assert n == 8
    for i, s in enumerate(seen):
        p = progress_of_step(i, n)
        assert s['betas'] == pytest.approx((Cosine(0.95, 0.85)(p), b2(p))) and s['eps'] == pytest.approx(eps(p))
        assert s['weight_decay'] == pytest.approx(own_wd(p))


def test_scheduled_wd_replaces_the_optimizers_own_weight_decay(learner):
    learn = learner(opt_func=torch.optim.AdamW)                   # AdamW's own weight_decay is 0.01
    assert learn.opt.param_groups[0]['weight_decay'] == 0.01
    cb = CyclicalWeightDecay((1e-3, 1e-4))
    learn.fit(EPOCHS, cbs=[cb])
    assert isinstance(cb, ParamScheduler)
    assert learn.opt.param_groups[0]['weight_decay'] == 0.
    wds = [h[0] for h in learn.recorder.hps['wd']]
    ref = one_cycle(1e-3, 1e-4, 1e-3, 0.3, total_steps=T)
    assert wds == pytest.approx([at_step(ref, i) for i in range(T)], rel=1e-9)
    assert min(wds) == pytest.approx(1e-4, rel=0.05) and wds[0] == pytest.approx(1e-3)


def test_sample_draws_a_schedule_before_training_without_side_effects():
    cb = OneCycleScheduler(0.1)
    hps = cb.sample(50, n_groups=2)
    assert cb.scheds == {} and len(hps['lr']) == 50 and len(hps['lr'][0]) == 2
    ref = one_cycle(0.1 / 25, 0.1, 0.1 / 25 / 1e4, total_steps=50)
    assert [r[1] for r in hps['lr']] == pytest.approx([at_step(ref, i, 50) for i in range(50)])
    cb2 = ParamScheduler({'lr': Cosine(1, 0)}, total_steps=30)
    assert len(cb2.sample()['lr']) == 30      # defaults to the scheduler's own total_steps


def test_plot_sched_draws_schedules_callbacks_and_lists(tmp_path):
    import matplotlib.pyplot as plt
    sched = OneCyclePlateau(0.004, 0.1, 1e-6)
    fig = plot_sched(sched, 40)
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([at_step(sched, i, 40) for i in range(40)])
    plt.close(fig)
    fig = plot_sched([OneCycleScheduler(0.1), CyclicalMomentum(), {'wd': Constant(1e-4)}], 60, n_groups=2)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ['lr', 'mom', 'wd']
    assert len(fig.axes[0].lines) == 2
    fig.savefig(tmp_path / 'sched.png'); plt.close(fig)
    fig = plot_sched({k: Constant(float(i)) for i, k in enumerate('abcdef')}, 10)   # six panels wrap into rows
    assert sum(ax.get_visible() for ax in fig.axes) == 6
    plt.close(fig)
    with pytest.raises(ValueError, match="'lr' is scheduled twice"):
        plot_sched([OneCycleScheduler(0.1), {'lr': Constant(1.)}], 10)
    with pytest.raises(TypeError, match='scheds must be'):
        plot_sched(3.0, 10)
    with pytest.raises(ValueError, match='n_steps'):
        plot_sched(sched, 0)
    with pytest.raises(ValueError, match='steps_per_epoch'):
        plot_sched(CLRScheduler(0.1), 40)
    assert len(plot_sched(CLRScheduler(0.1), 40, steps_per_epoch=5).axes[0].lines[0].get_ydata()) == 40


# --- pickling ------------------------------------------------------------------------------------
PICKLED = [
    StepDecay(0.1, 5, 0.5, total_steps=T), MultiStepDecay(0.1, [0.3, 0.6]), ExponentialDecay(0.1, 0.01),
    InverseTimeDecay(0.1, 2., 0.5), PolynomialDecay(0.1, 0.001, 2.), CosineAnnealing(0.1, 0., 0.4),
    CosineWarmRestarts(0.1, 0., 0.2, 2), Cyclical(0.01, 0.1, 0.1, mode='triangular2'),
    Cyclical(0.01, 0.1, 3, 5, 'exp_range', 0.99, total_steps=T), SlantedTriangular(0.1),
    OneCyclePlateau(0.004, 0.1, 1e-6), FlatCos(0.1), Warmup(CosineWarmRestarts(0.1, 0., 0.25), 0.1),
    one_cycle(0.004, 0.1, 1e-6, three_phase=True), combine([0.5, 0.5], [Linear(0, 1), Cosine(1, 0)]),
]


@pytest.mark.parametrize('sched', PICKLED, ids=lambda s: type(s).__name__)
def test_schedules_survive_pickling(sched):
    back = pickle.loads(pickle.dumps(sched))
    assert back == sched and repr(back) == repr(sched)
    assert back.values(37) == sched.values(37)


def test_callbacks_pickle_before_a_fit():
    for cb in (ParamScheduler({'lr': FlatCos(0.1)}), SGDRScheduler(3), CLRScheduler(0.1, moms=(0.95, 0.85))):
        back = pickle.loads(pickle.dumps(cb))
        assert back.sample(30, steps_per_epoch=5) == cb.sample(30, steps_per_epoch=5)


# --- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize('make,exc,word', [
    (lambda: StepDecay(0.1, 0), ValueError, 'step_size'),
    (lambda: StepDecay(0.1, 5, gamma=-1), ValueError, 'gamma'),
    (lambda: StepDecay('a', 5), TypeError, 'start'),
    (lambda: StepDecay(0.1, 5, total_steps=0), ValueError, 'total_steps'),
    (lambda: StepDecay(0.1, 5, total_steps=2.5), TypeError, 'total_steps'),
    (lambda: MultiStepDecay(0.1, []), TypeError, 'milestones'),
    (lambda: MultiStepDecay(0.1, [0.5, -1]), ValueError, 'milestones'),
    (lambda: ExponentialDecay(0.1, 0), ValueError, 'gamma'),
    (lambda: InverseTimeDecay(0.1, 1., power=0), ValueError, 'power'),
    (lambda: PolynomialDecay(0.1, power=-1), ValueError, 'power'),
    (lambda: PolynomialDecay(0.1, total_iters=0), ValueError, 'total_iters'),
    (lambda: CosineAnnealing(0.1, t_max=0), ValueError, 't_max'),
    (lambda: CosineAnnealing(float('nan')), ValueError, 'start'),
    (lambda: CosineWarmRestarts(0.1), ValueError, 'cycle_len'),
    (lambda: CosineWarmRestarts(0.1, 0., 5, cycle_mult=0.5), ValueError, 'cycle_mult'),
    (lambda: Cyclical(0.01, 0.1, 4, mode='triangle'), ValueError, 'mode'),
    (lambda: Cyclical(0.01, 0.1, 0), ValueError, 'step_size'),
    (lambda: Cyclical(0.01, 0.1, 4, step_size_down=-2), ValueError, 'step_size_down'),
    (lambda: SlantedTriangular(0.1, cut_frac=1.), ValueError, 'cut_frac'),
    (lambda: SlantedTriangular(0.1, ratio=0.5), ValueError, 'ratio'),
    (lambda: OneCyclePlateau(0.01, 0.1, 0., pct_start=0.6, pct_plateau=0.5), ValueError, 'pct_plateau'),
    (lambda: OneCyclePlateau(0.01, 0.1, 0., anneal_strategy='exp'), ValueError, 'anneal_strategy'),
    (lambda: FlatCos(0.1, pct_flat=1.), ValueError, 'pct_flat'),
    (lambda: Warmup(0.1), TypeError, 'sched'),
    (lambda: Warmup(Cosine(1, 0), warmup=1.), ValueError, 'warmup'),
    (lambda: Warmup(Cosine(1, 0), warmup=0.5, total_steps=10), TypeError, 'warmup'),
    (lambda: Warmup(Cosine(1, 0), warmup=9, total_steps=10), ValueError, 'warmup'),
    (lambda: CyclicalWeightDecay((1e-3,)), TypeError, 'wds'),
    (lambda: CyclicalWeightDecay((1e-3, -1.)), ValueError, 'wds'),
    (lambda: SGDRScheduler(0), ValueError, 'n_cycles'),
    (lambda: SGDRScheduler(2, cycle_mult=1.5), TypeError, 'cycle_mult'),
    (lambda: CLRScheduler(0.1, mode='tri'), ValueError, 'mode'),
    (lambda: CLRScheduler(0.1, gamma=1.5), ValueError, 'gamma'),
    (lambda: CLRScheduler(0.1, moms=0.9), TypeError, 'moms'),
])
def test_bad_arguments_name_the_parameter(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


def test_bad_fit_arguments_raise_before_any_step(learner):
    learn = learner()
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(ValueError, match='base_lr must not exceed max_lr'):
        fit_clr(learn, 2, max_lr=0.01, base_lr=0.1)
    with pytest.raises(ValueError, match='n_epoch'):
        fit_flat_cos(learn, 0)
    with pytest.raises(ValueError, match='warmup_pct'):
        fit_warmup_cos(learn, 2, warmup_pct=1.)
    with pytest.raises(ValueError, match="no hyper-parameter 'mom'.*moms=None"):   # Adagrad has no momentum
        fit_clr(learner(opt_func=torch.optim.Adagrad), 2, 0.1, moms=(0.95, 0.85))
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
    assert learn.recorder.lrs == []


# --- the one-liners ------------------------------------------------------------------------------
def test_fit_sgdr_restarts_at_the_cycle_boundaries(learner):
    learn = learner()
    n = fit_sgdr(learn, 3, cycle_len=1, max_lr=0.1, cycle_mult=2)
    assert n == 7 and len(learn.recorder.epochs) == 7
    lrs, spe = learn.recorder.lrs, 8
    assert [i for i in range(1, len(lrs)) if lrs[i] > lrs[i - 1]] == [spe, 3 * spe]
    ref = torch_run(lambda o: L.CosineAnnealingWarmRestarts(o, spe, 2), 7 * spe)
    assert rel_err(lrs, [r[0][0] for r in ref]) < 1e-6


def test_fit_flat_cos(learner):
    learn = learner()
    fit_flat_cos(learn, 4, max_lr=0.05, pct_start=0.5)
    lrs, n = learn.recorder.lrs, 32
    assert len(lrs) == n and all(v == 0.05 for v in lrs[:n // 2])
    assert lrs[-1] == pytest.approx(0.05 / 1e5) and lrs == sorted(lrs, reverse=True)


def test_fit_clr_matches_torch_cyclic_lr_with_momentum(learner):
    learn = learner()
    fit_clr(learn, 4, max_lr=0.1, base_lr=0.01, step_size=0.5, mode='triangular2', moms=(0.95, 0.85))
    ref = torch_run(lambda o: L.CyclicLR(o, 0.01, 0.1, 4, mode='triangular2', base_momentum=0.85, max_momentum=0.95),
                    32)
    assert rel_err(learn.recorder.lrs, [r[0][0] for r in ref]) < 1e-6
    assert rel_err(learn.recorder.moms, [r[0][1] for r in ref]) < 1e-6


def test_fit_warmup_cos_and_learner_methods(learner):
    learn = learner()
    learn.fit_warmup_cos(2, max_lr=0.1, warmup_pct=0.2)
    lrs = learn.recorder.lrs
    assert lrs[0] == 0. and max(lrs) == pytest.approx(0.1, rel=0.05) and lrs[-1] == pytest.approx(1e-6)
    top = lrs.index(max(lrs))
    assert lrs[:top + 1] == sorted(lrs[:top + 1]) and lrs[top:] == sorted(lrs[top:], reverse=True)
    learn.fit_sgdr(1, 2, max_lr=0.02)
    assert len(learn.recorder.epochs) == 2 and learn.recorder.lrs[0] == pytest.approx(0.02)


def test_one_liners_count_optimizer_steps_under_gradient_accumulation(learner):
    from onecycle import GradAccumulation
    learn = learner()
    fit_sgdr(learn, 2, max_lr=0.1, cycle_mult=1, cbs=[GradAccumulation(2)])   # 4 steps per epoch
    lrs = learn.recorder.lrs
    assert len(lrs) == 8 and lrs[4] == pytest.approx(0.1) and lrs[0] == pytest.approx(0.1)



def test_an_interrupted_one_liner_resumes_exactly(learner, tmp_path):
    from onecycle import CancelFitException, save_checkpoint

    class StopAt:
        order = 90
        def before_batch(self):
            if self.learn.training and self.learn.step_count == 11: raise CancelFitException()
    full = learner()
    fit_clr(full, 3, 0.1, step_size=0.75, mode='exp_range', gamma=0.95, moms=(0.95, 0.85))
    learn = learner()
    fit_clr(learn, 3, 0.1, step_size=0.75, mode='exp_range', gamma=0.95, moms=(0.95, 0.85), cbs=[StopAt()])
    path = save_checkpoint(learn, tmp_path / 'ck.pt')
    learn = learner()
    fit_clr(learn, 3, 0.1, step_size=0.75, mode='exp_range', gamma=0.95, moms=(0.95, 0.85), resume=path)
    assert learn.recorder.lrs == pytest.approx(full.recorder.lrs, rel=1e-12)
    assert learn.recorder.moms == pytest.approx(full.recorder.moms, rel=1e-12)
