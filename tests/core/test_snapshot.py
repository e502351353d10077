"""The snapshot every trial runner shares: trials from it are bitwise repeatable, nothing a trial does
reaches it, and restoring it puts back all a trial may change, whatever ended the trial."""
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import Callback
from onecycle.core.snapshot import TrainingState, preserved
from onecycle.tuning.search import lr_search, run_trial

SGD_MOM = partial(torch.optim.SGD, momentum=0.9)
OPTS = pytest.mark.parametrize('opt_func', [SGD_MOM, torch.optim.AdamW], ids=['sgd_momentum', 'adamw'])


def _trained(make_learner, opt_func, **kw):
    "A learner whose optimizer has state (momentum buffers, Adam moments and step counts) to share by mistake."
    learn = make_learner(opt_func=opt_func, model_kw=dict(bn=True), **kw)
    learn.fit(1, lr=0.05 if opt_func is SGD_MOM else 1e-2)
    assert learn.opt.state
    return learn


def _clone(o):
    if isinstance(o, torch.Tensor): return o.detach().clone()
    if isinstance(o, dict): return {k: _clone(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return type(o)(_clone(v) for v in o)
    return o


def _equal(a, b):
    "Bitwise equality of nested dicts/lists of tensors and plain values."
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _everything(learn):
    "Copies of the model's tensors, the optimizer's state and hyper-parameters, and the history."
    return {'model': _clone(learn.model.state_dict()), 'opt': _clone(learn.opt.state_dict()),
            'recorder': learn.recorder.state_dict()}


# --- (a) identical trials score bitwise the same ---------------------------------------------------
@OPTS
def test_identical_trials_from_a_restored_state_are_bitwise_identical(make_learner, opt_func):
    learn = _trained(make_learner, opt_func)
    lr = 0.05 if opt_func is SGD_MOM else 1e-2
    with preserved(learn) as start:
        trials = []
        for _ in range(3):
            start.restore()
            trials.append(run_trial(learn, 8, lr, schedule='constant', eval_every=2))
    assert trials[0].valid_losses[-1] != trials[0].valid_losses[0]   # they did train
    for t in trials[1:]:
        assert t.valid_losses == trials[0].valid_losses and t.train_losses == trials[0].train_losses


@OPTS
def test_lr_search_scores_the_same_lr_three_times_alike(make_learner, opt_func):
    learn = _trained(make_learner, opt_func)
    lr = 0.05 if opt_func is SGD_MOM else 1e-2
    before = _everything(learn)
    res = lr_search(learn, [lr, lr, lr], n_steps=8, eval_every=2)
    assert len(set(res.scores)) == 1, res.scores
    assert all(t.valid_losses == res.trials[0].valid_losses for t in res.trials)
    assert _equal(before, _everything(learn))


# --- (b) nothing done after a restore reaches the snapshot ----------------------------------------
@OPTS
def test_changing_the_restored_state_in_place_does_not_change_the_snapshot(make_learner, opt_func):
    learn = _trained(make_learner, opt_func)
    state = TrainingState(learn)
    state.restore()
    first = _everything(learn)
    with torch.no_grad():   # everything the learner holds, changed in place, as an optimizer step or BatchNorm would
        for st in learn.opt.state.values():
            for v in st.values():
                if isinstance(v, torch.Tensor): v.add_(1.)
        for t in learn.model.state_dict().values(): t.add_(1)
        for pg in learn.opt.param_groups:
            if isinstance(pg.get('betas'), tuple): pg['betas'] = (0.5, 0.5)
            pg['lr'] = 123.
    learn.recorder.hps.setdefault('lr', []).append([9.])
    state.restore()
    assert _equal(first, _everything(learn))


def test_a_tensor_learning_rate_is_copied_too(make_learner):
    learn = make_learner(opt_func=partial(torch.optim.Adam, lr=torch.tensor(1e-3)))
    learn.opt.param_groups[0]['lr'] = torch.tensor(1e-3)
    state = TrainingState(learn)
    state.restore()
    learn.opt.param_groups[0]['lr'].fill_(5.)   # as a scheduler sets a tensor lr
    state.restore()
    assert float(learn.opt.param_groups[0]['lr']) == pytest.approx(1e-3)


def test_non_persistent_buffers_come_back(make_learner, make_model):
    model = make_model()
    model.register_buffer('seen', torch.zeros(3), persistent=False)
    learn = make_learner(model=model)
    state = TrainingState(learn)
    model.seen.add_(7.)
    state.restore()
    assert torch.equal(model.seen, torch.zeros(3))


# --- (c) restore puts back all a trial changes ----------------------------------------------------
def test_restore_puts_back_everything_a_trial_may_change(make_learner, make_dls):
    learn = _trained(make_learner, SGD_MOM, wd=1e-2)
    learn.n_epoch, learn.epoch, learn.step_count = 3, 2, 11
    model = learn.model
    model[1].eval()                                         # a submodule in eval mode, the rest training
    params = list(model.parameters())
    params[0].requires_grad_(False)                          # a frozen parameter
    params[2].grad = torch.full_like(params[2], 0.25)      # a gradient held between steps
    opt, hook, opt_func, wd, dls = learn.opt, learn.wd_hook, learn.opt_func, learn.wd, learn.dls
    train, valid = learn.dls.train, learn.dls.valid
    modes = [m.training for m in model.modules()]
    hypers = [{k: v for k, v in pg.items() if k != 'params'} for pg in opt.param_groups]
    before = _everything(learn)
    state = TrainingState(learn)

    # a trial that changes it all: hyper-parameters, a hook, a new optimizer, counters, loaders, flags, modes, grads
    calls = []
    opt.param_groups[0]['lr'] = 7.; opt.param_groups[0]['wd'] = 0.5; opt.param_groups[0]['extra'] = 1.
    opt.register_step_pre_hook(lambda *a: calls.append('stale hook'))
    learn.opt_func = torch.optim.Adam
    learn.create_opt(1e-3, wd=0.3)
    learn.fit(1, lr=1e-3)
    learn.dls.train, learn.dls.valid = make_dls(bs=8)
    learn.n_epoch, learn.epoch, learn.step_count = 9, 8, 99
    for p in params: p.requires_grad_(True); p.grad = torch.ones_like(p)
    model.train()

    state.restore()
    assert learn.opt is opt and learn.wd_hook is hook and learn.opt_func is opt_func and learn.wd == wd
    assert learn.dls is dls and learn.dls.train is train and learn.dls.valid is valid
    assert (learn.n_epoch, learn.epoch, learn.step_count) == (3, 2, 11)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in params] == [i != 0 for i in range(len(params))]
    assert [p.grad is None for p in params] == [i != 2 for i in range(len(params))]
    assert torch.equal(params[2].grad, torch.full_like(params[2], 0.25))
    assert [{k: v for k, v in pg.items() if k != 'params'} for pg in learn.opt.param_groups] == hypers
    assert _equal(before, _everything(learn))
    learn.opt.step()
    assert calls == []                                     # the trial's hook is gone; the learner's own stays
    assert learn.wd_hook.handle.id in learn.opt._optimizer_step_pre_hooks


def test_restore_puts_back_a_model_wrapped_after_the_snapshot(make_learner):
    "A DDP-like wrapper may be put on between snapshot and restore: the user's module is the one restored."
    learn = _trained(make_learner, SGD_MOM)
    inner = learn.model
    before = _clone(inner.state_dict())
    state = TrainingState(learn)
    with torch.no_grad():
        for p in inner.parameters(): p.add_(1.)
    learn.model = nn.Sequential(inner)   # keys now carry a prefix
    state.restore()
    assert _equal(before, inner.state_dict())


# --- (d) whatever ends the block, everything comes back --------------------------------------------
class _Boom(Callback):
    "Fails after the backward pass of the 3rd step: gradients are set, the optimizer is mid-run."
    def after_backward(self):
        if self.learn.step_count == 2: raise RuntimeError('boom')


@OPTS
def test_an_exception_inside_preserved_still_restores_everything(make_learner, opt_func):
    learn = _trained(make_learner, opt_func, progress=True)
    learn.n_epoch, learn.step_count = 5, 20
    opt, wd, hook, train = learn.opt, learn.wd, learn.wd_hook, learn.dls.train
    modes = [m.training for m in learn.model.modules()]
    before = _everything(learn)
    rng = torch.get_rng_state()
    assert learn.progress
    with pytest.raises(RuntimeError, match='boom'):
        with preserved(learn):
            assert not learn.progress                        # quiet inside
            learn.dls.train = DataLoader(TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long)),
                                         batch_size=4)
            learn.opt_func = torch.optim.SGD
            learn.create_opt(0.5, wd=0.1)
            learn.fit(2, lr=0.5, cbs=[_Boom()])
    assert learn.progress
    assert learn.opt is opt and learn.wd == wd and learn.wd_hook is hook and learn.dls.train is train
    assert (learn.n_epoch, learn.step_count) == (5, 20)
    assert all(p.grad is None for p in learn.model.parameters())   # no stale gradient of the interrupted step
    assert [m.training for m in learn.model.modules()] == modes
    assert _equal(before, _everything(learn))
    assert torch.equal(rng, torch.get_rng_state())


def test_keyboard_interrupt_inside_preserved_restores_too(make_learner):
    learn = _trained(make_learner, SGD_MOM)
    before = _everything(learn)
    with pytest.raises(KeyboardInterrupt):
        with preserved(learn):
            learn.fit(1, lr=0.5)
            raise KeyboardInterrupt
    assert _equal(before, _everything(learn))
