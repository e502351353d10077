"""Momentum, weight-decay and learning-rate searches: each trial starts from the same weights (or the
same snapshot) and the learner is left bitwise as it was."""
import math

from functools import partial

import pytest
import torch

from onecycle.core.hyper import DEFAULT_WD
from onecycle.core.snapshot import TrainingState
from onecycle.core.snapshot import preserved
from onecycle.tuning.search import (DEEP_WDS, SHALLOW_WDS, default_wds, edge_search, lr_search, momentum_search,
                                    run_trial, wd_search)


def _weights(learn):
    return {k: v.clone() for k, v in learn.model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_momentum_search_runs_each_candidate_from_the_same_weights(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    w0, opt0 = _weights(learn), learn.opt.state_dict()
    hist0 = learn.recorder.state_dict()
    res = momentum_search(learn, 0.1, moms=[0.99, 0.9, (0.95, 0.85)], n_steps=8, eval_every=2)
    assert res.candidates == [0.99, 0.9, (0.95, 0.85)] and len(res.trials) == 3
    first = {t.valid_losses[0] for t in res.trials}
    assert len(first) == 1                                  # every trial measured the same start
    assert len({t.valid_losses[-1] for t in res.trials}) == 3   # and then went its own way
    assert res.best == res.candidates[min(range(3), key=lambda i: res.trials[i].score)]
    assert res.steps == 24 and all(t.n_steps == 8 for t in res.trials)
    assert _same(w0, _weights(learn))
    assert learn.opt.state_dict()['param_groups'] == opt0['param_groups']
    assert learn.recorder.state_dict() == hist0
    assert 'best' in res.table()
    fig = res.plot(); assert len(fig.axes[0].lines) == 3


def test_wd_search_branches_every_candidate_from_one_snapshot(make_learner, monkeypatch):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    w0 = _weights(learn)
    starts = []
    real = TrainingState.restore
    def spy(self):   # record the weights every restore puts back
        real(self); starts.append(_weights(self.learn))
    monkeypatch.setattr(TrainingState, 'restore', spy)
    res = wd_search(learn, 0.1, wds=[1e-1, 1e-3, 0.], plateau_steps=12, branch_steps=4, eval_every=2)
    monkeypatch.undo()
    snap_step = res.extra['snapshot_step']
    assert 0 < snap_step <= 12
    # three branch starts (all equal: the snapshot, not the initial weights) then the final restore to w0
    branch_starts = starts[:3]
    assert all(_same(branch_starts[0], s) for s in branch_starts[1:])
    assert not _same(branch_starts[0], w0)
    assert _same(starts[-1], w0) and _same(_weights(learn), w0)
    assert len({t.valid_losses[0] for t in res.trials}) == 1       # each branch starts at the snapshot's loss
    assert res.extra['steps_saved'] == 2 * snap_step
    assert res.steps == snap_step + sum(t.n_steps for t in res.trials)
    assert res.extra['steps_from_scratch'] == res.steps + res.extra['steps_saved']
    assert learn.wd is None and 'wd' not in learn.opt.param_groups[0]
    assert res.best in (1e-1, 1e-3, 0.)
    res.plot()


def test_wd_search_sets_weight_decay_per_branch(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    seen = []
    from onecycle import Callback
    class Spy(Callback):
        def after_step(self): seen.append(self.learn.opt.param_groups[0]['wd'])
    learn.add_cb(Spy())
    wd_search(learn, 0.1, wds=[0.5, 0.], plateau_steps=4, branch_steps=3, eval_every=1, mid_wd=0.25)
    assert seen[:4] == [0.25] * 4 and seen[-6:] == [0.5] * 3 + [0.] * 3


def test_default_wds_follow_depth():
    shallow = torch.nn.Sequential(torch.nn.Linear(2, 2))
    deep = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(12)])
    # Smith's values are L2 for SGD; decoupled, SGD-like optimizers need them x 1/(1 - 0.9) = 10
    assert default_wds(shallow) == pytest.approx([w * 10 for w in SHALLOW_WDS])
    assert default_wds(shallow) == pytest.approx([0.1, 0.01, 0.001])
    assert default_wds(deep) == pytest.approx([w * 10 for w in DEEP_WDS])
    sgd, adam = torch.optim.SGD(shallow.parameters(), lr=0.1), torch.optim.AdamW(shallow.parameters())
    assert default_wds(shallow, sgd) == default_wds(shallow)
    assert sorted(default_wds(shallow, sgd))[1] == DEFAULT_WD             # the middle one: the one-liners' default
    assert default_wds(shallow, adam) == pytest.approx([1., 0.1, 0.01])  # Adam-like: 100x (see the docstring)
    assert default_wds(deep, adam) == pytest.approx([1e-2, 1e-3, 1e-4, 0.])


def test_wd_search_defaults_follow_the_optimizer(make_learner, monkeypatch):
    seen = []
    from onecycle.tuning import search
    from onecycle.tuning.search import Trial
    def fake(learn, n_steps, lr, wd=None, label='', **kw):
        seen.append(wd); return Trial(label, steps=[0, n_steps], valid_losses=[3., 1.], n_steps=n_steps)
    monkeypatch.setattr(search, 'run_trial', fake)
    wd_search(make_learner(opt_func=torch.optim.Adam, lr=1e-3), 1e-3, plateau_steps=4, branch_steps=3, eval_every=1)
    assert seen == pytest.approx([1., 0.1, 0.01])


def test_lr_search_prefers_the_largest_near_best_and_marks_divergence(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    w0 = _weights(learn)
    res = lr_search(learn, [1e4, 0.01, 0.3], n_steps=10, eval_every=2)
    assert res.candidates == [0.01, 0.3, 1e4]
    assert res.trials[-1].diverged and math.isinf(res.trials[-1].score)
    assert res.extra['edge'] == 0.3 and res.best in (0.01, 0.3)
    assert _same(w0, _weights(learn))


def test_edge_search_climbs_until_training_breaks(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    res = edge_search(learn, 0.05, n_steps=10, factor=10., max_trials=5, eval_every=2)
    assert res.candidates[0] == pytest.approx(0.005) and len(res.candidates) >= 3
    assert res.candidates == sorted(res.candidates)
    top = res.trials[-1]
    # it stopped climbing because the top probe blew up or was no longer the best
    assert top.diverged or res.best != res.candidates[-1] or len(res.candidates) == 5


def test_run_trial_takes_exactly_n_steps_across_epochs(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)   # 4 batches per epoch
    with preserved(learn):
        t = run_trial(learn, 10, 0.1, schedule='constant', eval_every=3)
        assert learn.step_count == 10
    assert t.steps == [0, 3, 6, 9, 10] and len(t.train_losses) == 10


def test_a_hold_trial_warms_up_then_holds_its_peak(make_learner):
    "schedule='hold': lr from lr/25 up to lr over pct_start of the steps, then lr; momentum high to low, then low."
    from onecycle.core.callback import Callback

    class Seen(Callback):
        def __init__(self): self.lrs, self.moms = [], []
        def before_step(self):
            pg = self.learn.opt.param_groups[0]
            self.lrs.append(pg['lr']); self.moms.append(pg['momentum'])
    learn = make_learner(opt_func=partial(torch.optim.SGD, momentum=0.9), lr=0.1)
    seen = Seen()
    with preserved(learn), learn.added_cbs([seen]):
        t = run_trial(learn, 20, 0.4, mom=(0.95, 0.85), schedule='hold', pct_start=0.5, score_on='tail')
    assert len(seen.lrs) == 20 and t.n_steps == 20
    assert seen.lrs[0] == pytest.approx(0.4 / 25, rel=0.05)
    assert all(a < b for a, b in zip(seen.lrs[:10], seen.lrs[1:11]))          # rising through the warm-up
    assert seen.lrs[11:] == pytest.approx([0.4] * 9)                           # then held at the peak
    assert seen.moms[0] == pytest.approx(0.95, abs=0.01) and seen.moms[11:] == pytest.approx([0.85] * 9)
    with pytest.raises(ValueError, match='schedule'): run_trial(learn, 20, 0.4, schedule='plateau')


def test_bad_settings_fail_before_any_work(make_learner):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    w0 = _weights(learn)
    with pytest.raises(ValueError, match='moms'): momentum_search(learn, 0.1, moms=[1.5])
    with pytest.raises(TypeError, match='moms'): momentum_search(learn, 0.1, moms=0.9)
    with pytest.raises(ValueError, match='moms must not be empty'): momentum_search(learn, 0.1, moms=[])
    with pytest.raises(ValueError, match='lr'): momentum_search(learn, -1.)
    with pytest.raises(ValueError, match='wds'): wd_search(learn, 0.1, wds=[-1e-3])
    with pytest.raises(ValueError, match='n_steps'): lr_search(learn, [0.1], n_steps=1)
    with pytest.raises(ValueError, match='eval_every'): momentum_search(learn, 0.1, n_steps=5, eval_every=10)
    with pytest.raises(ValueError, match='no momentum'):
        momentum_search(make_learner(opt_func=torch.optim.Adagrad), 0.1)
    with pytest.raises(ValueError, match='dls.valid'):
        momentum_search(make_learner(dls_kw={'valid': False}), 0.1)
    assert _same(w0, _weights(learn)) and learn.step_count == 0


def test_log_parabola_vertex_finds_the_minimum_between_rungs():
    from onecycle.tuning.search import log_parabola_vertex
    v = 0.037
    f = lambda lr: 2.5 * (math.log(lr) - math.log(v)) ** 2 + 0.6
    lrs = [v * 2 ** -1.3, v * 2 ** -0.3, v * 2 ** 0.7]
    assert log_parabola_vertex(lrs, [f(l) for l in lrs]) == pytest.approx(v, rel=1e-9)
    assert log_parabola_vertex([0.01, 0.02, 0.04], [1., 0.5, 1.]) == pytest.approx(0.02)   # symmetric: the middle
    assert log_parabola_vertex([0.01, 0.02, 0.04], [0.4, 0.5, 0.4]) is None                # curves down: no minimum
    assert log_parabola_vertex([0.01, 0.02, 0.04], [1., 0.5, float('inf')]) is None
    with pytest.raises(ValueError, match='three'): log_parabola_vertex([0.01, 0.02], [1., 0.5])


def _fake_trials(monkeypatch, score_of):
    "Replace run_trial in the searches by one whose validation loss is score_of(lr or wd), no training."
    from onecycle.tuning import search
    from onecycle.tuning.search import Trial
    def fake(learn, n_steps, lr, mom=None, wd=None, label='', **kw):
        return Trial(label, steps=[0, n_steps], valid_losses=[3., score_of(lr, wd)], n_steps=n_steps)
    monkeypatch.setattr(search, 'run_trial', fake)


def test_edge_search_refines_the_best_rung_to_the_parabola_vertex(make_learner, monkeypatch):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    _fake_trials(monkeypatch, lambda lr, wd: (math.log(lr) - math.log(0.03)) ** 2 + 0.5)
    res = edge_search(learn, 0.05, n_steps=10, factor=2.)
    assert res.candidates == pytest.approx([0.0125, 0.025, 0.05])     # stepped down once, then bracketed
    assert res.extra['rung'] == pytest.approx(0.025) and res.best == pytest.approx(0.03)
    assert '0.025' in [ln for ln in res.table().splitlines() if 'best' in ln][0] and 'refined to 0.03' in res.table()
    plain = edge_search(learn, 0.05, n_steps=10, factor=2., refine=False)
    assert plain.best == pytest.approx(0.025) and 'rung' not in plain.extra
    # a pick at the top of the ladder has no upper neighbour: it stays a rung
    _fake_trials(monkeypatch, lambda lr, wd: -lr)
    top = edge_search(learn, 0.05, n_steps=10, factor=2., max_trials=3)
    assert top.candidates[-1] == top.best == pytest.approx(0.1) and 'rung' not in top.extra


def test_wd_search_settles_a_near_tie_for_more_weight_decay(make_learner, monkeypatch):
    learn = make_learner(opt_func=torch.optim.SGD, lr=0.1)
    scores = {1e-2: 1.01, 1e-3: 1.0, 1e-4: 0.995}
    _fake_trials(monkeypatch, lambda lr, wd: scores[wd])
    kw = dict(plateau_steps=4, branch_steps=3, eval_every=1)
    assert wd_search(learn, 0.1, wds=list(scores), **kw).best == 1e-2             # within 2% of the best
    assert wd_search(learn, 0.1, wds=list(scores), tol=0., **kw).best == 1e-4     # the lowest score as is
    scores[1e-2] = 1.1                                                              # clearly worse: not taken
    assert wd_search(learn, 0.1, wds=list(scores), **kw).best == 1e-3
    with pytest.raises(ValueError, match='tol'): wd_search(learn, 0.1, wds=list(scores), tol=-1, **kw)
