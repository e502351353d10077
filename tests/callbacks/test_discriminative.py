import pickle

import pytest
import torch
from torch import nn

from onecycle import Callback
from onecycle.callbacks.discriminative import (frozen_groups, norm_param_ids, split_by_children, split_by_modules,
                                               split_head)
from onecycle.schedules.fit import fine_tune


def bn_model(seed=0):
    "Body (Linear, BatchNorm, ReLU, Linear, ReLU) then a head Linear; children 0, 1 (BN), 3, 5 have parameters."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


def names_of(model, groups):
    ids = {id(p): n for n, p in model.named_parameters()}
    return [[ids[id(p)] for p in g] for g in groups]


# --- splitters -------------------------------------------------------------------------------------
def test_split_by_children_contiguous_and_head_smallest():
    m = bn_model()   # children with params: 0 Linear, 1 BN, 3 Linear, 5 Linear
    assert names_of(m, split_by_children(2)(m)) == [['0.weight', '0.bias', '1.weight', '1.bias'],
                                                   ['3.weight', '3.bias', '5.weight', '5.bias']]
    assert names_of(m, split_by_children(3)(m)) == [['0.weight', '0.bias', '1.weight', '1.bias'],
                                                   ['3.weight', '3.bias'], ['5.weight', '5.bias']]
    with pytest.raises(ValueError, match='n_groups=5'):
        split_by_children(5)(m)
    with pytest.raises(ValueError, match='n_groups'):
        split_by_children(0)


def test_split_head_and_split_by_modules():
    m = bn_model()
    assert names_of(m, split_head()(m))[1] == ['5.weight', '5.bias']
    assert names_of(m, split_head(2)(m))[1] == ['3.weight', '3.bias', '5.weight', '5.bias']
    g = split_by_modules(['0', '1'], m[3], '5')(m)
    assert names_of(m, g) == [['0.weight', '0.bias', '1.weight', '1.bias'], ['3.weight', '3.bias'],
                              ['5.weight', '5.bias']]
    with pytest.raises(ValueError, match=r"in no group.*3\.weight"):
        split_by_modules(['0', '1'], '5')(m)
    with pytest.raises(ValueError, match="no submodule 'head'"):
        split_by_modules('head')(m)
    with pytest.raises(TypeError, match='module name'):
        split_by_modules(3)
    with pytest.raises(ValueError, match='n_head=4'):
        split_head(4)(m)
    # picklable, so a Learner's splitter can travel with it
    assert names_of(m, pickle.loads(pickle.dumps(split_by_modules(['0', '1'], '3', '5')))(m)) == names_of(m, g)


def test_norm_param_ids():
    m = bn_model()
    assert norm_param_ids(m) == {id(m[1].weight), id(m[1].bias)}


# --- slices across groups ------------------------------------------------------------------------
def test_slice_spreads_geometrically_across_groups(make_learner):
    learn = make_learner(model=bn_model(), splitter=split_by_children(3))
    learn.fit(1, lr=slice(1e-4, 1e-2))
    assert [pg['lr'] for pg in learn.opt.param_groups] == pytest.approx([1e-4, 1e-3, 1e-2], rel=1e-12)
    learn.fit(1, lr=slice(1e-2))   # no start: the head gets hi, the others hi/10
    assert [pg['lr'] for pg in learn.opt.param_groups] == pytest.approx([1e-3, 1e-3, 1e-2])
    learn = make_learner(model=bn_model(), splitter=split_by_children(3), lr=slice(1e-6, 1e-4))
    assert [pg['lr'] for pg in learn.opt.param_groups] == pytest.approx([1e-6, 1e-5, 1e-4])


def test_one_cycle_with_slice_peaks_at_each_group_lr(make_learner):
    learn = make_learner(model=bn_model(), splitter=split_by_children(3), dls_kw=dict(n_train=160))
    learn.fit_one_cycle(2, slice(1e-5, 1e-3), div_factor=10., pct_start=0.5)
    per_group = list(zip(*learn.recorder.hps['lr']))
    assert [max(g) for g in per_group] == pytest.approx([1e-5, 1e-4, 1e-3], rel=1e-9)
    assert [g[0] for g in per_group] == pytest.approx([1e-6, 1e-5, 1e-4], rel=1e-9)
    # the schedule keeps the ratio between groups at every step
    for row in learn.recorder.hps['lr']:
        assert row[1] / row[0] == pytest.approx(10.) and row[2] / row[1] == pytest.approx(10.)


# --- freezing ------------------------------------------------------------------------------------
def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize('opt_func', [lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9),
                                      lambda ps, lr: torch.optim.AdamW(ps, lr=lr, weight_decay=0.1),
                                      lambda ps, lr: torch.optim.Adam(ps, lr=lr)])
@pytest.mark.parametrize('wd', [0.1, None])   # our decoupled decay, or the optimizer's own weight_decay
def test_frozen_weights_bitwise_unchanged_through_a_fit(make_learner, opt_func, wd):
    learn = make_learner(model=bn_model(), splitter=split_head(), opt_func=opt_func, wd=wd, wd_bn_bias=True)
    learn.fit(1, lr=1e-2)   # momentum / Adam state now non-zero for every parameter
    assert all(len(learn.opt.state[p]) > 0 for pg in learn.opt.param_groups for p in pg['params'])
    learn.freeze()
    assert frozen_groups(learn) == [True, False]
    before = _snapshot(learn.model)
    learn.fit_one_cycle(2, 1e-2, wd=wd)
    after = _snapshot(learn.model)
    for n in ('0.weight', '0.bias', '3.weight', '3.bias'):
        assert torch.equal(before[n], after[n]), f'frozen {n} moved'
    for n in ('1.weight', '1.bias', '5.weight', '5.bias'):   # BatchNorm and head still train
        assert not torch.equal(before[n], after[n]), f'{n} should have trained'
    learn.unfreeze()
    assert frozen_groups(learn) == [False, False]
    learn.fit(1, lr=1e-2)
    assert not torch.equal(after['0.weight'], learn.model[0].weight)


def test_freeze_without_norm_training_freezes_bn(make_learner):
    learn = make_learner(model=bn_model(), splitter=split_head())
    learn.freeze(train_norm=False)
    bn = learn.model[1]
    before = bn.weight.detach().clone()
    learn.fit(1, lr=0.1)
    assert torch.equal(before, bn.weight) and not bn.weight.requires_grad


def test_freeze_to_counts_groups_and_clears_stale_grads(make_learner):
    learn = make_learner(model=bn_model(), splitter=split_by_children(4))
    learn.model(torch.randn(4, 8)).sum().backward()
    learn.freeze_to(2)
    flags = [all(p.requires_grad for p in pg['params']) for pg in learn.opt.param_groups]
    assert flags == [False, True, True, True]   # group 1 is the BatchNorm: trainable anyway
    assert learn.model[0].weight.grad is None and learn.model[5].weight.grad is not None
    learn.freeze_to(-1)
    assert frozen_groups(learn) == [True, False, True, False]
    learn.freeze_to(0)
    assert all(p.requires_grad for p in learn.model.parameters())


def test_freeze_bad_arguments_change_nothing(make_learner):
    learn = make_learner()   # one param group
    with pytest.raises(ValueError, match='splitter'):
        learn.freeze()
    learn = make_learner(splitter=split_head())
    with pytest.raises(ValueError, match=r'n must be in \[-2, 2\]'):
        learn.freeze_to(3)
    with pytest.raises(TypeError, match='n must be an integer'):
        learn.freeze_to(1.5)
    with pytest.raises(ValueError, match='no trainable parameter'):
        learn.freeze_to(2)   # no normalization layer to keep training
    assert all(p.requires_grad for p in learn.model.parameters())


# --- fine_tune -----------------------------------------------------------------------------------
class FlagSpy(Callback):
    "Records, at the start of each fit, which param groups are frozen and the lr schedule's peaks."
    def __init__(self): self.fits = []
    def before_fit(self): self.fits.append(frozen_groups(self.learn))


def test_fine_tune_runs_both_phases(make_learner):
    spy = FlagSpy()
    learn = make_learner(model=bn_model(), splitter=split_head(), cbs=[spy], dls_kw=dict(n_train=160))
    body_before = learn.model[0].weight.detach().clone()
    hist = learn.fine_tune(2, base_lr=1e-2, freeze_epochs=1, lr_mult=100, moms=None)
    assert spy.fits == [[True, False], [False, False]]
    assert len(hist['frozen']['epochs']) == 1 and len(hist['unfrozen']['epochs']) == 2
    # phase 1: one lr for the head; phase 2: slice(base_lr/lr_mult, base_lr) across body and head
    assert max(r[1] for r in hist['frozen']['hps']['lr']) == pytest.approx(1e-2)
    peaks = [max(g) for g in zip(*hist['unfrozen']['hps']['lr'])]
    assert peaks == pytest.approx([1e-4, 1e-2])
    assert learn.recorder.state_dict()['epochs'] == hist['unfrozen']['epochs']
    assert not torch.equal(body_before, learn.model[0].weight)   # the body trained in phase 2
    assert all(p.requires_grad for p in learn.model.parameters())


def test_fine_tune_without_frozen_phase_works_with_one_group(make_learner):
    learn = make_learner()
    hist = fine_tune(learn, 1, base_lr=1e-2, freeze_epochs=0)
    assert list(hist) == ['unfrozen'] and len(hist['unfrozen']['epochs']) == 1


@pytest.mark.parametrize('kw, err, match', [
    (dict(n_epoch=0), ValueError, 'n_epoch'),
    (dict(base_lr=-1.), ValueError, 'base_lr'),
    (dict(lr_mult=0.5), ValueError, 'lr_mult'),
    (dict(pct_start=1.5), ValueError, 'pct_start'),
    (dict(moms=0.9), TypeError, 'moms'),
    (dict(bogus=1), TypeError, 'bogus'),
])
def test_fine_tune_bad_arguments_raise_before_work(make_learner, kw, err, match):
    learn = make_learner(model=bn_model(), splitter=split_head())
    before = _snapshot(learn.model)
    args = dict(n_epoch=1); args.update(kw)
    with pytest.raises(err, match=match):
        fine_tune(learn, **args)
    assert all(torch.equal(before[n], p) for n, p in learn.model.named_parameters())
    assert all(p.requires_grad for p in learn.model.parameters())


def test_fine_tune_needs_groups_to_freeze(make_learner):
    with pytest.raises(ValueError, match='freeze_epochs=0'):
        make_learner().fine_tune(1)


def test_failed_head_phase_restores_trainable_flags(make_learner):
    class Boom(Callback):
        def after_batch(self): raise RuntimeError('boom')
    learn = make_learner(model=bn_model(), splitter=split_head(), cbs=[Boom()])
    with pytest.raises(RuntimeError, match='boom'):
        learn.fine_tune(1)
    assert all(p.requires_grad for p in learn.model.parameters())
