import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import GradAccumulation, Learner
from onecycle.callbacks.layerwise import LARC, LARS, SmithLayerLR

torch.set_num_threads(1)


def one_batch_dls(n=8, n_in=3, seed=0, n_batches=1):
    "A single fixed batch per epoch (no shuffling), so a hand computation sees the same data."
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n * n_batches, n_in, generator=g), torch.randint(0, 2, (n * n_batches,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=n), None


def two_layer(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def learner(model, cb, opt_func=torch.optim.SGD, wd=None, lr=0.1, n_batches=1, cbs=()):
    return Learner(model, one_batch_dls(n_batches=n_batches), nn.CrossEntropyLoss(), opt_func=opt_func, lr=lr,
                   wd=wd, progress=False, device='cpu', cbs=[cb, *cbs])


def grads_at(model, params, dls):
    "Loss gradients of `model` with its parameters replaced by `params` (a dict name -> tensor), on the batch."
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters(): p.copy_(params[n])
    x, y = next(iter(dls[0]))
    nn.CrossEntropyLoss()(m(x), y).backward()
    return {n: p.grad.clone() for n, p in m.named_parameters()}


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def lars_lambda(w, g, eta, wd, eps=1e-8):
    return eta * w.norm() / (g.norm() + wd * w.norm() + eps)


# --- LARS ----------------------------------------------------------------------------------------
def test_lars_one_step_matches_formula_with_weight_decay():
    model, eta, wd, lr = two_layer(), 0.05, 0.1, 0.3
    p0 = params_of(model)
    g0 = grads_at(model, p0, one_batch_dls())
    cb = LARS(eta=eta)
    learn = learner(model, cb, wd=wd, lr=lr)
    learn.fit(1)
    for n, p in model.named_parameters():
        if n.endswith('weight'):   # w <- w - lr * λ * (g + wd * w)
            lam = lars_lambda(p0[n], g0[n], eta, wd)
            expected = p0[n] - lr * lam * (g0[n] + wd * p0[n])
            assert cb.lrs[n] == [pytest.approx(float(lr * lam), rel=1e-5)]
        else:                      # biases: plain SGD, and exempt from decay as usual
            expected = p0[n] - lr * g0[n]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    assert set(cb.lrs) == {'0.weight', '2.weight'}
    assert learn.wd_hook.exempt == {id(model[0].bias), id(model[2].bias)}   # the decay hook is given back


def test_lars_with_momentum_two_steps_is_the_paper_update():
    # You et al.: v <- m v + λ (g + wd w); w <- w - lr v  (torch SGD keeps lr outside the buffer)
    model, eta, wd, lr, mom = two_layer(1), 0.02, 0.05, 0.5, 0.9
    dls = one_batch_dls(seed=1)
    cb = LARS(eta=eta)
    learn = learner(copy.deepcopy(model), cb, opt_func=lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=mom),
                    wd=wd, lr=lr)
    learn.dls.train = dls[0]
    learn.fit(2)
    w, v = params_of(model), {}
    for step in range(2):
        g = grads_at(model, w, dls)
        for n in w:
            if n.endswith('weight'): d = lars_lambda(w[n], g[n], eta, wd) * (g[n] + wd * w[n])
            else: d = g[n]
            v[n] = d if step == 0 else mom * v[n] + d
            w[n] = w[n] - lr * v[n]
    for n, p in learn.model.named_parameters():
        torch.testing.assert_close(p.detach(), w[n], rtol=1e-5, atol=1e-7)


def test_include_bias_norm_scales_biases_too():
    model, eta, lr = two_layer(), 0.05, 0.3
    p0 = params_of(model); g0 = grads_at(model, p0, one_batch_dls())
    cb = LARS(eta=eta, include_bias_norm=True)
    learner(model, cb, lr=lr).fit(1)
    lam = lars_lambda(p0['2.bias'], g0['2.bias'], eta, 0.)
    torch.testing.assert_close(model[2].bias.detach(), p0['2.bias'] - lr * lam * g0['2.bias'])
    assert '2.bias' in cb.lrs


def test_update_mode_equals_grad_mode_for_plain_sgd_with_decay():
    models = [two_layer(3), two_layer(3)]
    for m, apply in zip(models, ('grad', 'update')):
        learner(m, LARC(eta=0.05, apply=apply), wd=0.2, lr=0.5, n_batches=3).fit(2)
    for (n, a), (_, b) in zip(*(m.named_parameters() for m in models)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_update_mode_scales_the_optimizers_own_step_for_adam():
    model, eta, lr = two_layer(), 0.05, 1e-2
    ref = copy.deepcopy(model)
    p0 = params_of(model); g0 = grads_at(model, p0, one_batch_dls())
    cb = LARS(eta=eta, apply='update')
    learner(model, cb, opt_func=torch.optim.Adam, lr=lr).fit(1)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=lr)   # what Adam alone would do
    for n, p in ref.named_parameters(): p.grad = g0[n].clone()
    ref_opt.step()
    for (n, p), (_, r) in zip(model.named_parameters(), ref.named_parameters()):
        f = lars_lambda(p0[n], g0[n], eta, 0.) if n.endswith('weight') else 1.
        torch.testing.assert_close(p.detach(), p0[n] + f * (r.detach() - p0[n]), rtol=1e-5, atol=1e-8)
    # and in 'grad' mode Adam's normalisation cancels a constant factor on the first step
    model2 = two_layer()
    learner(model2, LARS(eta=eta), opt_func=lambda ps, lr: torch.optim.Adam(ps, lr=lr, eps=1e-12), lr=lr).fit(1)
    torch.testing.assert_close(model2[0].weight.detach(), ref[0].weight.detach(), rtol=1e-4, atol=1e-7)


# --- LARC ----------------------------------------------------------------------------------------
def test_larc_clips_at_the_global_lr():
    model, eta = two_layer(), 0.05
    p0 = params_of(model); g0 = grads_at(model, p0, one_batch_dls())
    lams = {n: float(lars_lambda(p0[n], g0[n], eta, 0.)) for n in ('0.weight', '2.weight')}
    lr = (lams['0.weight'] * lams['2.weight']) ** 0.5   # between the two local lrs: one layer is clipped
    cb = LARC(eta=eta)
    learner(model, cb, lr=lr).fit(1)
    for n, p in model.named_parameters():
        eff = min(lams[n], lr) if n in lams else lr    # effective lr = min(λ, global lr)
        torch.testing.assert_close(p.detach(), p0[n] - eff * g0[n], rtol=1e-5, atol=1e-8)
        if n in lams: assert cb.factors[n][0] == pytest.approx(min(lams[n] / lr, 1.), rel=1e-5)
    assert sorted(f[0] for f in cb.factors.values())[-1] == 1.0 and min(f[0] for f in cb.factors.values()) < 1


def test_larc_switches_to_plain_sgd_below_threshold():
    model, eta = two_layer(), 1e-4   # tiny eta: every layer would be clipped hard
    p0 = params_of(model); g0 = grads_at(model, p0, one_batch_dls())
    cb = LARC(eta=eta, sgd_below=0.2)
    learner(model, cb, lr=0.1).fit(1)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), p0[n] - 0.1 * g0[n])
    assert all(f == [1.0] for f in cb.factors.values())
    model = two_layer(); cb = LARC(eta=eta, sgd_below=0.05)   # above the threshold: clipped
    learner(model, cb, lr=0.1).fit(1)
    assert all(f[0] < 1e-2 for f in cb.factors.values())


# --- Smith's variant -----------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['scale', 'clip'])
def test_smith_three_steps_against_hand_computation(mode):
    model, beta, eta, lr = two_layer(2), 0.8, 0.5 if mode == 'scale' else 1., 0.5
    dls = one_batch_dls(seed=2, n_batches=3)   # three different batches: the gradient changes
    batches = list(dls[0])
    cb = SmithLayerLR(beta=beta, eta=eta, mode=mode)
    learn = learner(copy.deepcopy(model), cb, lr=lr)
    learn.dls.train = dls[0]
    learn.fit(1)

    w = params_of(model); prev = None; mdw = mdg = None; factors = []
    for x, y in batches:
        m = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in m.named_parameters(): p.copy_(w[n])
        nn.CrossEntropyLoss()(m(x), y).backward()
        g = {n: p.grad.clone() for n, p in m.named_parameters()}
        f = {n: 1. for n in w}
        if prev is not None:
            pw, pg = prev
            mdw = {n: (1 - beta) * (w[n] - pw[n]) + (beta * mdw[n] if mdw else 0) for n in w}
            mdg = {n: (1 - beta) * (g[n] - pg[n]) + (beta * mdg[n] if mdg else 0) for n in w}
            for n in ('0.weight', '2.weight'):
                lam = eta * mdw[n].norm() / mdg[n].norm()
                f[n] = float(lam) if mode == 'scale' else min(float(lam) / lr, 1.)
        factors.append(f)
        prev = (dict(w), g)
        w = {n: w[n] - lr * f[n] * g[n] for n in w}
    for n, p in learn.model.named_parameters():
        torch.testing.assert_close(p.detach(), w[n], rtol=1e-5, atol=1e-7)
    for n in ('0.weight', '2.weight'):
        assert cb.factors[n] == pytest.approx([f[n] for f in factors], rel=1e-4)
    if mode == 'scale': assert all(cb.factors[n][2] != 1. for n in cb.factors)


def test_smith_state_resets_per_fit_and_skips_nonfinite_grads():
    model = two_layer()
    cb = SmithLayerLR(mode='scale')
    learn = learner(model, cb, lr=0.1, n_batches=3)
    learn.fit(1)
    assert all(v[0] == 1. and v[1] != 1. for v in cb.factors.values())
    learn.fit(1)   # a new fit starts from scratch: first step unscaled again
    assert all(v[0] == 1. for v in cb.factors.values())
    w = torch.randn(3, 2); g = torch.full((3, 2), float('inf'))
    cb.reset_state()
    assert torch.isnan(cb.local_lr(0, w, torch.ones(3, 2), 0.))
    assert torch.isnan(cb.local_lr(0, w + 1, g, 0.))             # non-finite: no estimate ...
    assert torch.equal(cb.state[0]['g'], torch.ones(3, 2))       # ... and the state is kept
    assert torch.isfinite(cb.local_lr(0, w + 2, torch.zeros(3, 2), 0.))


# --- with the rest of the library ----------------------------------------------------------------
def test_frozen_layers_are_skipped_and_accumulation_records_optimizer_steps():
    model = two_layer()
    model[0].weight.requires_grad_(False)
    before = model[0].weight.detach().clone()
    cb = LARC()
    learn = learner(model, cb, lr=0.1, n_batches=4, cbs=[GradAccumulation(2)])
    learn.fit(1)
    assert torch.equal(before, model[0].weight)
    assert len(cb.factors['2.weight']) == 2 and cb.factors['0.weight'] == [1., 1.]


def test_plot_returns_a_figure_with_one_line_per_layer(tmp_path):
    import matplotlib.figure
    cb = LARS(eta=0.02)
    learner(two_layer(), cb, lr=1., n_batches=4).fit_one_cycle(3, 1.)
    fig = cb.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert [l.get_label() for l in fig.axes[0].lines] == ['0.weight', '2.weight', 'global lr (max group)']
    assert len(fig.axes[0].lines[0].get_ydata()) == 12
    fig = cb.plot('factor', layers=['2.weight'])
    assert [l.get_label() for l in fig.axes[0].lines] == ['2.weight']
    with pytest.raises(ValueError, match='unknown layers'):
        cb.plot(layers=['nope'])
    with pytest.raises(ValueError, match='nothing recorded'):
        LARS().plot()


@pytest.mark.parametrize('make, err, match', [
    (lambda: LARS(eta=0), ValueError, 'eta'),
    (lambda: LARS(mode='bogus'), ValueError, 'mode'),
    (lambda: LARS(apply='weights'), ValueError, 'apply'),
    (lambda: LARS(sgd_below=0.1), ValueError, "sgd_below needs mode='clip'"),
    (lambda: LARC(sgd_below=-1.), ValueError, 'sgd_below'),
    (lambda: SmithLayerLR(beta=1.), ValueError, 'beta'),
    (lambda: SmithLayerLR(eta='1'), TypeError, 'eta'),
])
def test_bad_arguments(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_nothing_to_adapt_raises_and_leaves_the_learner_alone():
    learn = Learner(nn.Sequential(nn.BatchNorm1d(3)), one_batch_dls(), lambda p, y: p.sum(), opt_func=torch.optim.SGD,
                    progress=False, device='cpu', wd=0.1)
    exempt = set(learn.wd_hook.exempt)
    before = params_of(learn.model)
    with pytest.raises(ValueError, match='include_bias_norm=True'):
        learn.fit(1, cbs=[LARS()])
    assert learn.wd_hook.exempt == exempt
    assert all(torch.equal(before[n], p) for n, p in learn.model.named_parameters())
