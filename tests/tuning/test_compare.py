"""The complete range test: suggestions and bounds in the result, the validation-loss mode and its
cost, the plots, and several runs compared from the same weights."""
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import assert_learner_unchanged, learner_snapshot
from onecycle import LRComparison, compare_lr_finds, fit_one_cycle, lr_find


def _regression(make_learner, valid_offset=0., n_valid_batches=2, bn=False):
    """Least squares y = x.w; the validation targets are shifted by `valid_offset`, so its loss is
    recognisable (about valid_offset**2 above the training loss) and tells which data was measured."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1, generator=g)
    x, xv = torch.randn(128, 8, generator=g), torch.randn(16 * n_valid_batches, 8, generator=g)
    train = DataLoader(TensorDataset(x, x @ w), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    valid = DataLoader(TensorDataset(xv, xv @ w + valid_offset), batch_size=16)
    torch.manual_seed(0)
    layers = [nn.Linear(8, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1)]
    return make_learner(model=nn.Sequential(*layers), dls=(train, valid), loss_func=nn.MSELoss(),
                        opt_func=partial(torch.optim.SGD, momentum=0.9))


# --- the result -----------------------------------------------------------------------------------
def test_result_names_every_suggestion_and_smiths_bounds(make_learner):
    learn = make_learner(dls_kw=dict(n_train=256, bs=8))
    res = lr_find(learn, start_lr=1e-4, end_lr=10., num_it=60, suggest='max_bound')
    assert list(res.suggestions) == ['fit', 'minimum', 'steep', 'valley', 'max_bound', 'edge', 'spike']
    assert res.suggestions['max_bound'] <= res.suggestions['edge']
    assert res.suggestions['fit'] <= min(res.suggestions['edge'], res.suggestions['spike'])
    assert all(isinstance(v, float) and 1e-4 <= v <= 10. for v in res.suggestions.values())
    assert isinstance(res.suggestion, float) and res.suggestion == res.max_bound == res.suggestions['max_bound']
    mb = res.max_bound
    assert res.bounds['cyclical_min'] == pytest.approx((mb / 4, mb / 3))
    assert res.bounds['one_cycle_min'] == pytest.approx((mb / 20, mb / 10))
    assert res.measured == 'train' and res.lrs == res.train_lrs and res.losses == res.train_losses
    assert len(res.loss_change) == len(res.lrs)
    assert res.cost['train_steps'] == 60 and res.cost['valid_evals'] == 0 and res.cost['seconds'] > 0


def test_plot_marks_every_suggestion_on_both_panels(make_learner):
    res = make_learner(dls_kw=dict(n_train=256, bs=8)).lr_find(start_lr=1e-4, num_it=60)
    fig = res.plot()
    loss_ax, delta_ax = fig.axes
    assert loss_ax.get_xscale() == 'log' and delta_ax.get_xscale() == 'log'
    for ax in (loss_ax, delta_ax):
        vlines = {round(l.get_xdata()[0], 12) for l in ax.get_lines() if len(set(l.get_xdata())) == 1}
        assert {round(v, 12) for v in res.suggestions.values()} <= vlines
    assert [round(v, 6) for v in delta_ax.get_lines()[0].get_ydata()] == [round(v, 6) for v in res.loss_change]
    labels = loss_ax.get_legend_handles_labels()[1]
    assert any(l.startswith('1cycle lowest lr') for l in labels) and any(l.startswith('suggestion (for the fit)')
                                                                         for l in labels)
    fig.savefig('/tmp/test_range_test_single.png', dpi=60)
    assert len(res.plot(delta=False).axes) == 1 and len(res.plot_delta().axes) == 1
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    assert res.plot(ax=ax) is fig and len(fig.axes) == 1 and ax.get_xscale() == 'log'   # into the caller's Axes


# --- validation-loss mode -------------------------------------------------------------------------
def test_validation_mode_measures_the_fixed_validation_subset(make_learner):
    learn = _regression(make_learner, valid_offset=100., n_valid_batches=3)
    res = learn.lr_find(start_lr=1e-6, end_lr=1e-2, num_it=12, valid_every=3, valid_batches=2, hold_check=False)
    assert res.measured == 'valid' and len(res.losses) == 4 and len(res.train_losses) == 12
    assert res.lrs == [res.train_lrs[i] for i in (2, 5, 8, 11)]   # measured after steps 3, 6, 9, 12
    assert all(l > 5000 for l in res.losses)            # the shifted targets: ~100**2
    assert all(l < 1000 for l in res.train_losses)      # the training data is not shifted
    assert res.cost == dict(res.cost, train_steps=12, valid_evals=4, valid_forward_passes=8, valid_samples=4 * 32)
    assert res.cost['valid_seconds'] > 0


def test_validation_mode_reads_only_the_first_valid_batches(make_learner):
    learn = _regression(make_learner, n_valid_batches=2)
    x0, y0 = learn.dls.valid.dataset.tensors
    y = y0.clone(); y[16:] += 1e4   # the second batch would be unmistakable
    learn.dls.valid = DataLoader(TensorDataset(x0, y), batch_size=16)
    res = learn.lr_find(start_lr=1e-6, end_lr=1e-3, num_it=9, valid_every=3, valid_batches=1)
    assert max(res.losses) < 1e3
    res = learn.lr_find(start_lr=1e-6, end_lr=1e-3, num_it=9, valid_every=3)   # all of dls.valid by default
    assert min(res.losses) > 1e7 / 2 and res.cost['valid_forward_passes'] == 6


def test_validation_runs_in_eval_mode_without_gradients(make_learner):
    learn = _regression(make_learner, valid_offset=100.)
    seen = []
    learn.model.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    learn.lr_find(start_lr=1e-6, end_lr=1e-2, num_it=6, valid_every=2, valid_batches=1, hold_check=False)
    assert seen.count((True, True)) == 6 and seen.count((False, False)) == 3 and len(seen) == 9


def test_validation_mode_leaves_weights_bitwise_unchanged_and_training_undisturbed(make_learner):
    learn = _regression(make_learner, valid_offset=1., bn=True)
    fit_one_cycle(learn, 1, 1e-3)                        # optimizer state and BN statistics to lose
    before, rng = learner_snapshot(learn), torch.get_rng_state()
    loader_rng = learn.dls.train.generator.get_state()
    res_v = learn.lr_find(start_lr=1e-5, end_lr=1., num_it=24, valid_every=4, stop_div=False)
    assert_learner_unchanged(before, learner_snapshot(learn))
    assert torch.equal(rng, torch.get_rng_state()) and torch.equal(loader_rng, learn.dls.train.generator.get_state())
    # evaluating in between changed nothing in the training: the same batches, dropout masks and losses
    res_t = learn.lr_find(start_lr=1e-5, end_lr=1., num_it=24, stop_div=False)
    assert res_v.train_losses == res_t.losses
    assert_learner_unchanged(before, learner_snapshot(learn))


def test_validation_mode_stops_when_the_validation_loss_diverges(make_learner):
    learn = _regression(make_learner)
    res = learn.lr_find(start_lr=1e-4, end_lr=1e4, num_it=100, valid_every=2, valid_batches=1)
    assert res.stopped_early and len(res.train_lrs) < 100 and res.measured == 'valid'


@pytest.mark.parametrize('kwargs,exc,word', [
    (dict(valid_every=0), ValueError, 'valid_every'),
    (dict(valid_every=1.5), TypeError, 'valid_every'),
    (dict(num_it=10, valid_every=4), ValueError, 'valid_every'),   # fewer than 3 measurements
    (dict(valid_batches=2), ValueError, 'valid_every'),             # valid_batches alone
    (dict(valid_every=2, valid_batches=0), ValueError, 'valid_batches'),
    (dict(beta=1.), ValueError, 'beta'),
])
def test_bad_range_test_settings(make_learner, kwargs, exc, word):
    learn = make_learner()
    before = learner_snapshot(learn)
    with pytest.raises(exc, match=word): learn.lr_find(**kwargs)
    assert_learner_unchanged(before, learner_snapshot(learn))


def test_validation_mode_without_a_validation_set_is_a_clear_error(make_learner, make_dls):
    learn = make_learner(dls=make_dls(valid=False))
    with pytest.raises(ValueError, match='dls.valid'): learn.lr_find(num_it=12, valid_every=2)


# --- several runs on one figure -------------------------------------------------------------------
def test_compare_runs_start_from_the_same_weights_and_leave_the_learner_as_it_was(make_learner):
    learn = make_learner(dls_kw=dict(n_train=128, bs=8, shuffle=True), opt_func=torch.optim.AdamW, wd=1e-2)
    fit_one_cycle(learn, 1, 1e-2)
    opt, opt_func, wd, before = learn.opt, learn.opt_func, learn.wd, learner_snapshot(learn)
    starts = []
    def weights_at_first_forward(model, inputs):   # of each run: its first training batch
        if learn.training and learn.epoch == 0 and learn.iter == 0:
            starts.append(torch.cat([p.detach().flatten() for p in model.parameters()]).clone())
    learn.model.register_forward_pre_hook(weights_at_first_forward)
    settings = [dict(opt_func=partial(torch.optim.SGD, momentum=0.9)), dict(opt_func=torch.optim.Adam),
                dict(wd=0.), dict(wd=0.), dict(mom=0.8, label='AdamW, beta1 0.8')]
    cmp = compare_lr_finds(learn, settings, start_lr=1e-5, end_lr=1., num_it=30)
    assert isinstance(cmp, LRComparison) and len(cmp) == 5
    assert cmp.labels == ['SGD', 'Adam', 'wd=0', 'wd=0', 'AdamW, beta1 0.8']
    assert len(starts) == 5 and all(torch.equal(s, starts[0]) for s in starts)   # every run from the same weights
    assert len({r.train_losses[0] for r in cmp.results}) == 1                      # ... and the same first batch
    assert cmp[2].losses == cmp[3].losses   # identical settings, identical curves
    assert cmp[0].losses != cmp[1].losses and cmp[1].losses != cmp[2].losses
    assert learn.opt is opt and learn.opt_func is opt_func and learn.wd == wd
    assert_learner_unchanged(before, learner_snapshot(learn))
    text = cmp.summary()
    assert all(label in text for label in cmp.labels) and 'max_bound' in text


def test_compare_sweeps_a_given_momentum_as_given_and_bare_sgd_as_lr_find_does(make_learner):
    "mom=0 compares a sweep without momentum; without `mom` bare SGD sweeps at 0.9, the 1cycle fit's middle."
    from onecycle.core.callback import Callback
    seen = []
    spy = type('Spy', (Callback,), {'order': 100, 'before_fit': lambda cb: seen.append(set()),
                                    'after_step': lambda cb: seen[-1].add(cb.learn.opt.param_groups[0]['momentum'])})
    learn = make_learner(opt_func=torch.optim.SGD, cbs=[spy()])
    cmp = compare_lr_finds(learn, [dict(mom=0.), dict(), dict(mom=0.5)], num_it=20)
    assert seen == [{0.}, {0.9}, {0.5}] and cmp[0].losses != cmp[1].losses
    assert learn.opt.param_groups[0]['momentum'] == 0.


def test_compare_plot_puts_every_run_on_one_figure(make_learner):
    learn = make_learner(dls_kw=dict(n_train=128, bs=8))
    cmp = compare_lr_finds(learn, [dict(wd=w) for w in (0., 1e-2, 1.)], start_lr=1e-4, num_it=40)
    fig = cmp.plot()
    assert len(fig.axes) == 2
    for ax in fig.axes:
        labelled = [l for l in ax.get_lines() if l.get_label() in cmp.labels]
        assert len(labelled) in (0, 3)
    assert {l.get_label() for l in fig.axes[1].get_lines()} >= set(cmp.labels)
    markers = [l for l in fig.axes[0].get_lines() if l.get_marker() == '^' and len(l.get_xdata()) == 1]
    assert sorted(m.get_xdata()[0] for m in markers) == pytest.approx(sorted(r.max_bound for r in cmp.results), rel=0.2)
    fig.savefig('/tmp/test_range_test_compare.png', dpi=60)


@pytest.mark.parametrize('settings,kwargs,exc,word', [
    ([], {}, TypeError, 'non-empty list'),
    ([dict(wd=0.), 'SGD'], {}, TypeError, r'settings\[1\]'),
    ([dict(lr=0.1)], {}, ValueError, r"unknown key.*'lr'"),
    ([dict(wd=-1.)], {}, ValueError, 'wd'),
    ([dict(opt_func=torch.optim.Adagrad, mom=0.9)], {}, ValueError, 'no momentum'),
    ([dict(opt_func='SGD')], {}, TypeError, 'opt_func'),
    ([dict(num_it=10, valid_every=5)], {}, ValueError, 'valid_every'),
    ([dict(wd=0.)], dict(epochs=3), TypeError, 'epochs'),
    ([dict(wd=0.), dict(suggest='best')], {}, ValueError, 'suggest'),
])
def test_bad_compare_settings_fail_before_any_run(make_learner, settings, kwargs, exc, word):
    learn = make_learner(opt_func=torch.optim.Adam)
    before, forwards = learner_snapshot(learn), []
    learn.model.register_forward_hook(lambda *a: forwards.append(1))
    with pytest.raises(exc, match=word): compare_lr_finds(learn, settings, **kwargs)
    assert forwards == []
    assert_learner_unchanged(before, learner_snapshot(learn))
