"""The Recorder: per-step hyper-parameters, per-batch losses, per-epoch rows, and its plots."""
import math
from functools import partial

import pytest
import torch

from onecycle import Callback, accuracy, fit_one_cycle, smooth_ema


class LossSpy(Callback):
    "The training loss of every batch and the weighted epoch mean, read directly."
    def __init__(self): self.losses, self.epoch_means, self._sum = [], [], []
    def before_train(self): self._sum = []
    def after_loss(self):
        if self.learn.training:
            l = float(self.learn.loss.detach()); self.losses.append(l); self._sum.append((l, self.learn.batch_size))
    def after_train(self):
        self.epoch_means.append(sum(l * b for l, b in self._sum) / sum(b for _, b in self._sum))


@pytest.fixture
def fitted(make_learner, make_dls):
    # 72 training samples in batches of 16: the last batch has 8, so the epoch mean must weight by batch size
    learn = make_learner(opt_func=partial(torch.optim.SGD, momentum=0.9), metrics=[accuracy],
                         dls=make_dls(n_train=72, bs=16, n_valid=40))
    spy = LossSpy()
    fit_one_cycle(learn, 3, 0.1, callbacks=[spy])
    return learn, spy


def test_lrs_and_moms_are_floats_one_per_step(fitted):
    learn, _ = fitted
    rec = learn.recorder
    assert len(rec.lrs) == len(rec.moms) == 15 == learn.step_count
    assert all(type(v) is float for v in rec.lrs + rec.moms)
    assert rec.lrs[0] == pytest.approx(0.1 / 25) and max(rec.lrs) <= 0.1 and rec.moms[0] == pytest.approx(0.95)
    assert rec.hps['lr'][-1] == [rec.lrs[-1]]


def test_every_param_group_is_recorded(make_learner, splitter):
    learn = make_learner(splitter=splitter, opt_func=torch.optim.Adam)
    fit_one_cycle(learn, 1, [0.01, 0.1])
    assert all(len(row) == 2 for row in learn.recorder.hps['lr'] + learn.recorder.hps['mom'])
    assert learn.recorder.hps['lr'][0] == pytest.approx([0.01 / 25, 0.1 / 25])
    assert learn.recorder.lrs == [row[0] for row in learn.recorder.hps['lr']]


def test_losses_raw_and_smoothed(fitted):
    learn, spy = fitted
    rec = learn.recorder
    assert len(rec.losses) == 15 and all(type(v) is float for v in rec.losses)
    assert rec.losses == pytest.approx(spy.losses, rel=1e-6)
    assert rec.smooth_losses == pytest.approx(smooth_ema(spy.losses, 0.98), rel=1e-6)
    assert rec.smooth_losses[0] == pytest.approx(rec.losses[0])   # debiased: no pull towards zero at the start


def test_epoch_rows(fitted):
    learn, spy = fitted
    rows = learn.recorder.epochs
    assert len(rows) == 3 and [r['epoch'] for r in rows] == [0, 1, 2]
    for r, mean in zip(rows, spy.epoch_means):
        assert {'train_loss', 'valid_loss', 'accuracy', 'time'} <= set(r)
        assert r['train_loss'] == pytest.approx(mean, rel=1e-6)
        assert r['time'] >= 0 and 0 <= r['accuracy'] <= 1
    assert rows[-1]['valid_loss'] == pytest.approx(learn.validate()['valid_loss'], rel=1e-6)
    assert rows[-1]['accuracy'] == pytest.approx(learn.validate()['accuracy'])
    assert learn.recorder.metric_names == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']


def test_history_is_per_fit(fitted):
    learn, _ = fitted
    learn.fit(1, lr=0.01)
    assert len(learn.recorder.losses) == 5 and len(learn.recorder.epochs) == 1 and len(learn.recorder.lrs) == 5
    assert learn.recorder.lrs == [0.01] * 5


def test_no_validation_set(make_learner, make_dls):
    learn = make_learner(dls=make_dls(valid=False))
    learn.fit(2, lr=0.1)
    assert 'valid_loss' not in learn.recorder.epochs[0]
    assert learn.recorder.metric_names == ['epoch', 'train_loss', 'time']


def test_plots_return_figures(fitted, tmp_path):
    import matplotlib.figure
    learn, _ = fitted
    fig = learn.recorder.plot_loss()
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = [l.get_label() for l in fig.axes[0].get_lines()]
    assert any('valid' in l for l in labels) and any('train' in l for l in labels)
    valid = next(l for l in fig.axes[0].get_lines() if 'valid' in l.get_label())
    assert list(valid.get_xdata()) == [4, 9, 14]               # the last batch of each epoch
    fig.savefig(tmp_path / 'loss.png', dpi=60)
    assert (tmp_path / 'loss.png').stat().st_size > 1000
    fig = learn.recorder.plot_sched()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx(learn.recorder.lrs)
    assert list(fig.axes[1].get_lines()[0].get_ydata()) == pytest.approx(learn.recorder.moms)
    fig.savefig(tmp_path / 'sched.png', dpi=60)
    assert (tmp_path / 'sched.png').stat().st_size > 1000
    import matplotlib.pyplot as plt
    plt.close('all')


# --- where per-epoch results are, and when ------------------------------------------------------------
def _reader(order=0):
    from onecycle import Callback

    class Reader(Callback):
        def __init__(self): self.rows, self.valid = [], []
        def after_validate(self): self.valid.append(dict(self.learn.recorder.last_valid))
        def after_epoch(self): self.rows.append(dict(self.learn.recorder.epochs[-1]))
    Reader.order = order
    return Reader()


@pytest.mark.parametrize('order', [-50, 0, 49, 51, 100])
def test_this_epochs_row_is_there_in_after_epoch_at_any_order(make_learner, order):
    from onecycle import accuracy
    learn = make_learner(metrics=[accuracy])
    cb = _reader(order)
    learn.fit(3, lr=0.1, cbs=[cb])
    assert [r['epoch'] for r in cb.rows] == [0, 1, 2]
    assert cb.rows == learn.recorder.epochs                   # the same rows the recorder keeps, none added twice
    assert all(set(r) == {'epoch', 'train_loss', 'valid_loss', 'accuracy', 'time'} for r in cb.rows)
    assert all(r['time'] > 0 for r in cb.rows)


def test_this_epochs_row_without_a_validation_set(make_learner):
    learn = make_learner(dls_kw={'valid': False})
    cb = _reader(0)
    learn.fit(2, lr=0.1, cbs=[cb])
    assert [r['epoch'] for r in cb.rows] == [0, 1] and len(learn.recorder.epochs) == 2
    assert 'valid_loss' not in cb.rows[0] and cb.rows[0]['train_loss'] > 0


@pytest.mark.parametrize('order', [0, 60])
def test_a_cancelled_epoch_still_gets_its_row(make_learner, order):
    from onecycle import Callback, CancelEpochException

    class CancelSecondEpochEarly(Callback):
        def after_batch(self):
            if self.learn.epoch == 1 and self.learn.training: raise CancelEpochException()
    learn = make_learner()
    cb = _reader(order)
    learn.fit(3, lr=0.1, cbs=[CancelSecondEpochEarly(), cb])
    assert [r['epoch'] for r in learn.recorder.epochs] == [0, 1, 2]
    assert math.isnan(learn.recorder.epochs[1]['valid_loss'])   # no validation ran in the cancelled epoch
    # a cancelled epoch's row is added by the Recorder's own after_epoch (order 50): callbacks after it see it
    assert [r['epoch'] for r in cb.rows] == ([0, 1, 2] if order > 50 else [0, 0, 2])


def test_validate_after_an_interrupted_fit_adds_no_row(make_learner):
    from onecycle import Callback

    class Stop(Callback):
        def after_batch(self):
            if self.learn.epoch == 1: raise KeyboardInterrupt
    learn = make_learner()
    with pytest.raises(KeyboardInterrupt): learn.fit(3, lr=0.1, cbs=[Stop()])
    assert len(learn.recorder.epochs) == 1
    learn.validate()
    assert len(learn.recorder.epochs) == 1
