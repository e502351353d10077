"""Loggers: what CSVLogger, TensorBoardLogger, WandbLogger and MLflowLogger wrote, read back and compared
with the recorder."""
import csv

import pytest
import torch

from onecycle import (Callback, CancelFitException, CSVLogger, GradAccumulation, ParamScheduler, TensorBoardLogger,
                      accuracy)
from onecycle.schedules.functions import Linear


def _rows(path):
    with open(path, newline='') as f: return list(csv.reader(f))


def _table(learn):
    "The recorder's epoch table as the CSV file should hold it."
    return [[repr(float(v)) if isinstance(v, float) else str(v) for v in r.values()] for r in learn.recorder.epochs]


# --- CSV ------------------------------------------------------------------------------------------
def test_csv_one_row_per_epoch_equal_to_the_recorder(make_learner, tmp_path):
    learn = make_learner(metrics=[accuracy], cbs=[CSVLogger(tmp_path / 'sub' / 'h.csv')])
    learn.fit_one_cycle(3, 0.05)
    rows = _rows(tmp_path / 'sub' / 'h.csv')
    assert rows[0] == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time'] == learn.recorder.metric_names
    assert rows[1:] == _table(learn) and len(rows) == 4
    assert [float(r[2]) for r in rows[1:]] == [r['valid_loss'] for r in learn.recorder.epochs]   # exact floats


def test_csv_restarts_or_appends(make_learner, tmp_path):
    p = tmp_path / 'h.csv'
    learn = make_learner(cbs=[CSVLogger(p)])
    learn.fit(2); learn.fit(3)
    assert len(_rows(p)) == 4 and _rows(p)[1:] == _table(learn)
    learn = make_learner(cbs=[CSVLogger(p, append=True)])
    learn.fit(2)
    assert len(_rows(p)) == 6 and _rows(p)[0][0] == 'epoch' and _rows(p)[4:] == _table(learn)
    # a file with other columns is not appended to
    other = make_learner(metrics=[accuracy], cbs=[CSVLogger(p, append=True)])
    with pytest.raises(ValueError, match='has the columns'): other.fit(1)
    assert len(_rows(p)) == 6 and other.recorder.epochs == []


class SaveAt(Callback):
    "Saves a checkpoint at the end of epoch `n`, then (optionally) lets the run go on and stops it at `stop`."
    order = 90
    def __init__(self, path, n, stop): self.path, self.n, self.stop = path, n, stop
    def after_epoch(self):
        if self.learn.epoch == self.n: self.learn.save(self.path)
        if self.learn.epoch == self.stop: raise CancelFitException()


def test_csv_a_resumed_fit_continues_the_file(make_learner, tmp_path):
    full = make_learner(opt_func=torch.optim.AdamW, dls_kw=dict(shuffle=True))
    full.fit(5, 1e-2)
    p, ck = tmp_path / 'h.csv', tmp_path / 'ck.pt'
    part = make_learner(opt_func=torch.optim.AdamW, dls_kw=dict(shuffle=True), cbs=[CSVLogger(p)])
    part.fit(5, 1e-2, cbs=[SaveAt(ck, 1, 3)])   # checkpoint after epoch 1, the run goes on to write epoch 3
    assert [r[0] for r in _rows(p)[1:]] == ['0', '1', '2', '3']
    again = make_learner(opt_func=torch.optim.AdamW, dls_kw=dict(shuffle=True), cbs=[CSVLogger(p)])
    again.fit(5, 1e-2, resume=ck)
    rows = _rows(p)
    assert [r[0] for r in rows[1:]] == ['0', '1', '2', '3', '4']   # epochs 2 and 3 once, from the resumed run
    assert [r[:3] for r in rows[1:]] == [r[:3] for r in _table(full)]   # epoch, train_loss, valid_loss


def test_csv_stands_aside_for_trials_and_other_ranks(make_learner, tmp_path, monkeypatch):
    p = tmp_path / 'h.csv'
    learn = make_learner(cbs=[CSVLogger(p)])
    learn.lr_find(num_it=10, stop_div=False)
    assert not p.exists()
    import onecycle.callbacks.loggers as loggers
    monkeypatch.setattr(loggers, 'is_main_process', lambda: False)
    learn.fit(1)
    assert not p.exists()


# --- TensorBoard ----------------------------------------------------------------------------------
def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir), size_guidance={'scalars': 0, 'images': 0})
    acc.Reload()
    return acc


def _scalars(acc, tag): return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_steps_and_epochs_equal_the_recorder(make_learner, splitter, tmp_path):
    pytest.importorskip('tensorboard')
    tb = TensorBoardLogger(tmp_path, every_n_steps=3)
    learn = make_learner(opt_func=torch.optim.Adam, splitter=splitter, metrics=[accuracy], cbs=[tb])
    learn.fit_one_cycle(2, [0.01, 0.05], cbs=[ParamScheduler({'eps': Linear(1e-8, 1e-6)})])
    tb.close()
    acc = _events(tmp_path)
    rec, n = learn.recorder, learn.step_count
    assert _scalars(acc, 'train/loss') == [(i + 1, pytest.approx(v, rel=1e-6)) for i, v in enumerate(rec.losses)]
    for g in (0, 1):
        assert [v for _, v in _scalars(acc, f'hp/lr/group{g}')] == pytest.approx([r[g] for r in rec.hps['lr']],
                                                                                 rel=1e-6)
        assert [v for _, v in _scalars(acc, f'hp/mom/group{g}')] == pytest.approx([r[g] for r in rec.hps['mom']],
                                                                                  rel=1e-6)
    eps = [v for _, v in _scalars(acc, 'hp/eps/group0')]
    assert len(eps) == n and eps[0] == pytest.approx(1e-8) and eps[-1] == pytest.approx(1e-6)
    ends = [n // 2, n]
    for col in ('train_loss', 'valid_loss', 'accuracy'):
        assert _scalars(acc, f'epoch/{col}') == [(s, pytest.approx(r[col], rel=1e-6)) for s, r in zip(ends, rec.epochs)]


def test_tensorboard_loss_per_step_with_accumulation_and_steps_over_fits(make_learner, make_dls, tmp_path):
    pytest.importorskip('tensorboard')
    tb = TensorBoardLogger(tmp_path, every_n_steps=100)
    # 72 samples in batches of 16: steps join batches (16, 16), (16, 16), (8)
    learn = make_learner(dls=make_dls(n_train=72, bs=16), cbs=[tb])
    learn.fit(1, 0.05, cbs=[GradAccumulation(2)])
    l = learn.recorder.losses
    want = [(l[0] + l[1]) / 2, (l[2] + l[3]) / 2, l[4]]
    learn.fit(1, 0.05)
    tb.close()
    got = _scalars(_events(tmp_path), 'train/loss')
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6, 7, 8] and tb.step == 8   # the second fit goes on counting
    assert [v for _, v in got[:3]] == pytest.approx(want, rel=1e-6)
    assert [v for _, v in got[3:]] == pytest.approx(learn.recorder.losses, rel=1e-6)


def test_tensorboard_logs_the_range_test_plot_not_its_steps(make_learner, tmp_path):
    pytest.importorskip('tensorboard')
    tb = TensorBoardLogger(tmp_path)
    learn = make_learner(cbs=[tb])
    res = learn.lr_find(num_it=30, stop_div=False)
    tb.close()
    acc = _events(tmp_path)
    assert acc.Tags()['images'] == ['lr_find'] and 'train/loss' not in acc.Tags()['scalars']
    assert _scalars(acc, 'lr_find/suggestion') == [(0, pytest.approx(res.suggestion, rel=1e-6))]
    img = acc.Images('lr_find')[0]
    assert img.width > 100 and img.height > 100 and tb.step == 0


def test_bad_logger_arguments():
    from onecycle import MLflowLogger, WandbLogger
    with pytest.raises(TypeError, match='path'): CSVLogger(3)
    with pytest.raises(TypeError, match='append'): CSVLogger('h.csv', append='yes')
    with pytest.raises(TypeError, match='log_dir'): TensorBoardLogger(None)
    with pytest.raises(ValueError, match='every_n_steps'): TensorBoardLogger('runs', every_n_steps=0)
    with pytest.raises(ValueError, match='mode'): WandbLogger(mode='offine')
    with pytest.raises(TypeError, match='config'): WandbLogger(config=[1])
    with pytest.raises(TypeError, match='experiment_name'): MLflowLogger(experiment_name='')
    with pytest.raises(TypeError, match='params'): MLflowLogger(params=['a'])
