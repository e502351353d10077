"""Checkpoints: what they hold, atomic writes, safe loading, SaveModel."""
import copy
import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

import onecycle.checkpoint as ckpt_mod
from onecycle import CancelFitException, Callback, CheckpointError, GradAccumulation, SaveModel, accuracy
from onecycle.checkpoint import get_rng_state, read_checkpoint, set_rng_state


def _fitted(make_learner, n_epoch=2, **kw):
    learn = make_learner(opt_func=torch.optim.AdamW, metrics=[accuracy], dls_kw=dict(shuffle=True), **kw)
    learn.fit_one_cycle(n_epoch, 1e-2)
    return learn


def _model_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_load_round_trip(make_learner, tmp_path):
    learn = _fitted(make_learner)
    path = learn.save(tmp_path / 'a.pt')
    after_save = (torch.rand(3), random.random(), np.random.rand())
    other = make_learner(opt_func=torch.optim.AdamW, metrics=[accuracy], model_kw=dict(seed=1),
                         dls_kw=dict(shuffle=True))
    assert not _model_equal(learn.model, other.model)
    other.load(path)
    assert _model_equal(learn.model, other.model)
    so, sl = other.opt.state_dict(), learn.opt.state_dict()
    assert so['param_groups'] == sl['param_groups']
    assert all(torch.equal(so['state'][i][k], sl['state'][i][k]) for i in sl['state'] for k in sl['state'][i])
    assert other.recorder.state_dict() == learn.recorder.state_dict()
    assert len(other.recorder.losses) == 2 * 4 and len(other.recorder.epochs) == 2
    # the RNG states came back: the same draws as right after the save
    after_load = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(after_load[0], after_save[0]) and after_load[1:] == after_save[1:]


def test_rng_states_round_trip_all_generators(make_dls):
    train, _ = make_dls(shuffle=True)
    torch.manual_seed(3); random.seed(3); np.random.seed(3)
    state = get_rng_state(train)
    want = (torch.rand(2), random.random(), float(np.random.rand()), torch.randperm(10, generator=train.generator))
    torch.rand(5); random.random(); np.random.rand(); torch.randperm(10, generator=train.generator)
    set_rng_state(state, train)
    got = (torch.rand(2), random.random(), float(np.random.rand()), torch.randperm(10, generator=train.generator))
    assert torch.equal(got[0], want[0]) and got[1:3] == want[1:3] and torch.equal(got[3], want[3])


def test_checkpoint_holds_only_safe_types(make_learner, tmp_path):
    learn = _fitted(make_learner)
    learn.save(tmp_path / 'a.pt')
    ck = torch.load(tmp_path / 'a.pt', weights_only=True)   # would raise on anything but tensors and containers
    assert ck['format'] == 'onecycle.checkpoint' and ck['fit']['epochs_done'] == 2 and ck['fit']['n_epoch'] == 2
    assert ck['fit']['step_count'] == 8
    assert ck['callbacks']['OneCycleScheduler'] == {'total_steps': 8, 'start_step': 0}
    assert ck['callbacks']['DivergenceGuard']['n_skipped'] == 0
    assert ck['rng']['python']['state'].dtype == torch.int64 and len(ck['rng']['loaders']) == 1


def test_crash_during_save_keeps_previous_file(make_learner, tmp_path, monkeypatch):
    learn = _fitted(make_learner)
    path = learn.save(tmp_path / 'model.pt')
    good = path.read_bytes()
    learn.fit(1, lr=1e-1)   # the weights move on

    real_save = torch.save
    def crashing_save(obj, f, *a, **k):
        f.write(b'PK\x03\x04 half a checkpoint')   # part of a file is out...
        raise OSError('disk full')                 # ...then the write dies
    monkeypatch.setattr(torch, 'save', crashing_save)
    with pytest.raises(OSError, match='disk full'):
        learn.save(path)
    monkeypatch.setattr(torch, 'save', real_save)
    assert path.read_bytes() == good                                   # the previous checkpoint is intact
    assert sorted(os.listdir(tmp_path)) == ['model.pt']                # and no temporary file is left over
    read_checkpoint(path)


def test_interrupt_during_save_keeps_previous_file(make_learner, tmp_path, monkeypatch):
    learn = _fitted(make_learner)
    path = learn.save(tmp_path / 'model.pt')
    good = path.read_bytes()
    def interrupted(obj, f, *a, **k):
        f.write(b'partial'); raise KeyboardInterrupt()
    monkeypatch.setattr(torch, 'save', interrupted)
    with pytest.raises(KeyboardInterrupt):
        learn.save(path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ['model.pt']


class _Evil:
    "Unpickling this would create a file: the proof that code ran."
    marker = None
    def __reduce__(self):
        return (open, (str(self.marker), 'w'))


def test_pickled_object_is_refused_and_never_runs(make_learner, tmp_path):
    learn = _fitted(make_learner)
    ck = ckpt_mod.checkpoint_state(learn)
    _Evil.marker = tmp_path / 'pwned'
    ck['extra'] = _Evil()
    with open(tmp_path / 'evil.pt', 'wb') as f: torch.save(ck, f)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with pytest.raises(CheckpointError, match='weights_only=True'):
        learn.load(tmp_path / 'evil.pt')
    assert not _Evil.marker.exists()
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(CheckpointError, match='weights_only'):
        learn.fit(2, resume=tmp_path / 'evil.pt')


def test_foreign_and_corrupt_files_are_refused(make_learner, tmp_path):
    learn = _fitted(make_learner)
    torch.save(learn.model.state_dict(), tmp_path / 'bare.pt')
    with pytest.raises(CheckpointError, match='not an onecycle checkpoint'):
        learn.load(tmp_path / 'bare.pt')
    good = learn.save(tmp_path / 'good.pt').read_bytes()
    (tmp_path / 'cut.pt').write_bytes(good[:len(good) // 2])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        learn.load(tmp_path / 'cut.pt')
    (tmp_path / 'junk.pt').write_bytes(pickle.dumps({'format': 'x'}, protocol=2))
    with pytest.raises(CheckpointError):
        learn.load(tmp_path / 'junk.pt')


def test_load_without_rng_leaves_rng_alone(make_learner, tmp_path):
    learn = _fitted(make_learner)
    path = learn.save(tmp_path / 'a.pt')
    torch.manual_seed(123)
    want = torch.rand(4)
    torch.manual_seed(123)
    learn.load(path, with_rng=False)
    assert torch.equal(torch.rand(4), want)


def test_save_without_optimizer_loads_but_cannot_resume(make_learner, tmp_path):
    learn = _fitted(make_learner)
    path = learn.save(tmp_path / 'small.pt', with_opt=False)
    assert read_checkpoint(path)['opt'] is None
    other = make_learner(opt_func=torch.optim.AdamW, model_kw=dict(seed=2))
    other.load(path)
    assert _model_equal(learn.model, other.model)
    with pytest.raises(CheckpointError, match='with_opt=False'):
        learn.fit(2, resume=path)


def test_save_model_keeps_best_and_last(make_learner, tmp_path):
    learn = make_learner(opt_func=torch.optim.SGD, metrics=[accuracy], dls_kw=dict(shuffle=True))
    by_loss = SaveModel(tmp_path / 'loss', monitor='valid_loss')
    by_acc = SaveModel(tmp_path / 'acc', monitor='accuracy', save_last=False)
    learn.fit(6, lr=0.5, cbs=[by_loss, by_acc])
    rows = learn.recorder.epochs
    best_loss = min(range(6), key=lambda i: rows[i]['valid_loss'])
    best_acc = max(range(6), key=lambda i: (rows[i]['accuracy'], -i))   # the first of equal accuracies
    assert by_loss.mode == 'min' and by_acc.mode == 'max'
    assert (by_loss.best_epoch, by_loss.best) == (best_loss, rows[best_loss]['valid_loss'])
    assert by_acc.best_epoch == best_acc
    ck = read_checkpoint(by_loss.best_path)
    assert len(ck['recorder']['epochs']) == best_loss + 1 and ck['fit']['epochs_done'] == best_loss + 1
    last = read_checkpoint(by_loss.last_path)
    assert len(last['recorder']['epochs']) == 6
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in last['model'].items())
    assert sorted(os.listdir(tmp_path / 'acc')) == ['model_best.pt']
    # loading the best gives the weights it had then: its valid loss is the recorded best
    learn.load(by_loss.best_path)
    assert learn.validate()['valid_loss'] == pytest.approx(rows[best_loss]['valid_loss'], rel=1e-6)


def test_save_model_every_n_batches_and_best_survives_resume(make_learner, tmp_path):
    class Stop(Callback):
        order = 100
        def after_batch(self):
            if self.learn.training and self.learn.epoch == 2 and self.learn.iter == 2: raise CancelFitException()
    learn = make_learner(opt_func=torch.optim.SGD, dls_kw=dict(shuffle=True))
    saver = SaveModel(tmp_path, every_n_batches=3)
    learn.fit(4, lr=0.3, cbs=[saver, Stop()])
    ck = read_checkpoint(saver.last_path)
    assert (ck['fit']['epochs_done'], ck['fit']['batches_done']) == (2, 3)
    best = saver.best
    saver2 = SaveModel(tmp_path, every_n_batches=3)
    learn2 = make_learner(opt_func=torch.optim.SGD, dls_kw=dict(shuffle=True), model_kw=dict(seed=5))
    learn2.fit(4, lr=0.3, cbs=[saver2], resume=saver.last_path)
    assert saver2.best <= best and len(learn2.recorder.epochs) == 4


def test_load_into_a_different_model_changes_nothing(make_learner, tmp_path):
    learn = _fitted(make_learner)
    path = learn.save(tmp_path / 'a.pt')
    other = make_learner(opt_func=torch.optim.AdamW, model_kw=dict(n_hidden=5))
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(CheckpointError, match='shape mismatch'):
        other.load(path)
    assert all(torch.equal(v, other.model.state_dict()[k]) for k, v in before.items())
    two = make_learner(opt_func=torch.optim.AdamW,
                       splitter=lambda m: [list(m[0].parameters()), list(m[2].parameters())])
    with pytest.raises(CheckpointError, match='param groups'):
        two.load(path)


def test_accumulation_group_gradients_are_saved(make_learner, tmp_path):
    class Stop(Callback):
        order = 100
        def after_batch(self):
            if self.learn.iter == 1: raise CancelFitException()
    learn = make_learner(opt_func=torch.optim.SGD)
    learn.fit(1, lr=0.1, cbs=[GradAccumulation(3), Stop()])
    ck = read_checkpoint(learn.save(tmp_path / 'a.pt'))
    grads = [p.grad for p in learn.model.parameters()]
    assert ck['callbacks']['GradAccumulation'] == {'n_samples': 32}
    assert all(torch.equal(g, s) for g, s in zip(grads, ck['grads']))


def test_rng_draws_after_a_stopped_fit_do_not_shift_its_resume(make_learner, tmp_path):
    "The checkpoint of a stopped fit holds the RNG states of the moment it stopped, not of the save."
    class Stop(Callback):
        order = 100
        def after_batch(self):
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 1: raise CancelFitException()
    def dropout_learner(seed=0):
        torch.manual_seed(seed)   # Dropout draws from the global RNG, so a shifted RNG shows in the weights
        model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 2))
        return make_learner(opt_func=torch.optim.AdamW, model=model, dls_kw=dict(shuffle=True))
    ref = dropout_learner()
    ref.fit_one_cycle(3, 1e-2)
    learn = dropout_learner()
    learn.fit_one_cycle(3, 1e-2, callbacks=[Stop()])
    torch.rand(10); random.random()                     # somebody draws random numbers in between
    path = learn.save(tmp_path / 'a.pt')
    resaved = dropout_learner(seed=1)
    resaved.load(path)
    path2 = resaved.save(tmp_path / 'b.pt')             # load then save keeps the fit's position
    f1, f2 = read_checkpoint(path)['fit'], read_checkpoint(path2)['fit']
    assert {k: v for k, v in f1.items() if k != 'epoch_rng'} == {k: v for k, v in f2.items() if k != 'epoch_rng'}
    assert f1['batches_done'] == 2 and torch.equal(f1['epoch_rng']['torch'], f2['epoch_rng']['torch'])
    fresh = dropout_learner(seed=4)
    fresh.fit_one_cycle(3, 1e-2, resume=path2)
    assert _model_equal(fresh.model, ref.model)


def test_load_model_weights_puts_only_the_weights_back_and_reads_registered_formats(make_learner, tmp_path):
    from onecycle.checkpoint import load_model_weights, register_model_loader
    learn = make_learner(opt_func=torch.optim.AdamW)
    learn.fit(1, lr=0.1)
    learn.save(tmp_path / 'a.pt')
    want = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, lr=0.1)
    losses, steps, opt = list(learn.recorder.losses), learn.step_count, copy.deepcopy(learn.opt.state_dict())
    load_model_weights(learn.model, tmp_path / 'a.pt')
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in want.items())
    # the second fit's history, step count and optimizer state are untouched
    assert learn.recorder.losses == losses and learn.step_count == steps and learn.position.loaded is None
    assert opt['state'] and all(torch.equal(a, b) for a, b in zip(learn.opt.state_dict()['state'][0].values(),
                                                                   opt['state'][0].values()))
    # a format a higher layer registers (as sharded checkpoints do) is read by its own loader, only for its paths
    seen = []
    def accepts(p): return str(p).endswith('.mine')
    register_model_loader(accepts, lambda model, p: seen.append((model, p)))
    load_model_weights(learn.model, tmp_path / 'x.mine')
    load_model_weights(learn.model, tmp_path / 'a.pt')
    assert seen == [(learn.model, tmp_path / 'x.mine')]
    with pytest.raises(TypeError, match='callables'): register_model_loader(accepts, None)
