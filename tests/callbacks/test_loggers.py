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


# --- W&B (offline run files) and MLflow (local file store) ------------------------------------------
def _wandb_history(run_dir):
    """The history rows of an offline W&B run, read from its .wandb file (a LevelDB-style log of protobuf
    records) once wandb's service has written the run's exit record (it writes after finish() returns)."""
    import time

    from google.protobuf.message import DecodeError
    for _ in range(300):
        try: rows, done = _wandb_records(next(run_dir.glob('run-*.wandb')).read_bytes())
        except DecodeError: done = False   # read while the service was writing a record: read it again
        if done: return rows
        time.sleep(0.1)
    raise AssertionError('the offline run file has no exit record')


def _wandb_records(data):
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
    assert data[:4] == b':W&B'
    pos, buf, rows, block, done = 7, b'', [], 32768, False
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7: pos += left; continue
        length, kind = struct.unpack('<HB', data[pos + 4:pos + 7])
        if pos + 7 + length > len(data): break   # a record the service is still writing
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            r = pb.Record(); r.ParseFromString(buf)
            if r.WhichOneof('record_type') == 'history':
                rows.append({i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
            done = done or r.WhichOneof('record_type') == 'exit'
    return rows, done


def test_wandb_offline_run_holds_the_recorder(make_learner, tmp_path, monkeypatch):
    pytest.importorskip('wandb')
    from onecycle import WandbLogger
    monkeypatch.setenv('WANDB_SILENT', 'true')
    wb = WandbLogger(project='onecycle-test', mode='offline', dir=tmp_path, every_n_steps=2)
    learn = make_learner(metrics=[accuracy], cbs=[wb])
    learn.lr_find(num_it=20, stop_div=False)
    learn.fit_one_cycle(2, 0.05)
    wb.finish()
    rows = _wandb_history(next((tmp_path / 'wandb').glob('offline-run-*')))
    steps = [r for r in rows if 'train/loss' in r]
    assert [r['_step'] for r in steps] == list(range(1, learn.step_count + 1))
    assert [r['train/loss'] for r in steps] == pytest.approx(learn.recorder.losses, rel=1e-6)
    assert [r['hp/lr'] for r in steps] == pytest.approx(learn.recorder.lrs, rel=1e-9)
    assert [r['hp/mom'] for r in steps] == pytest.approx(learn.recorder.moms, rel=1e-9)
    ends = [r for r in rows if 'epoch/valid_loss' in r]
    assert [r['epoch/valid_loss'] for r in ends] == pytest.approx([e['valid_loss'] for e in learn.recorder.epochs])
    assert [r['epoch/accuracy'] for r in ends] == pytest.approx([e['accuracy'] for e in learn.recorder.epochs])
    lr_find = [r for r in rows if r.get('lr_find/_type') == 'image-file']   # the plot, and the suggestion with it
    assert len(lr_find) == 1 and lr_find[0]['_step'] == 0 and 'lr_find/suggestion' in lr_find[0]


def test_mlflow_local_store_holds_the_recorder(make_learner, tmp_path, monkeypatch):
    pytest.importorskip('mlflow')
    monkeypatch.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')   # MLflow 3 keeps file: stores behind this switch
    from mlflow.tracking import MlflowClient

    from onecycle import MLflowLogger
    uri = (tmp_path / 'mlruns').as_uri()
    ml = MLflowLogger('exp', run_name='r1', tracking_uri=uri, params={'arch': 'mlp'}, every_n_steps=4)
    learn = make_learner(metrics=[accuracy], cbs=[ml])
    learn.fit_one_cycle(2, 0.05)
    client = MlflowClient(uri)
    run = client.get_run(ml.run_id)
    assert run.info.status == 'FINISHED' and run.data.params == {'arch': 'mlp'} and run.info.run_name == 'r1'
    hist = sorted(client.get_metric_history(ml.run_id, 'train/loss'), key=lambda m: m.step)
    assert [m.step for m in hist] == list(range(1, learn.step_count + 1))
    assert [m.value for m in hist] == pytest.approx(learn.recorder.losses, rel=1e-6)
    lrs = sorted(client.get_metric_history(ml.run_id, 'hp/lr'), key=lambda m: m.step)
    assert [m.value for m in lrs] == pytest.approx(learn.recorder.lrs, rel=1e-9)
    vl = sorted(client.get_metric_history(ml.run_id, 'epoch/valid_loss'), key=lambda m: m.step)
    assert [(m.step, m.value) for m in vl] == [(s, pytest.approx(e['valid_loss']))
                                               for s, e in zip([learn.step_count // 2, learn.step_count],
                                                               learn.recorder.epochs)]
    # a second fit logs to the same run, which ends FAILED when the fit fails
    class Boom(Callback):
        def after_epoch(self): raise RuntimeError('boom')
    n = learn.step_count
    with pytest.raises(RuntimeError): learn.fit(1, cbs=[Boom()])
    assert client.get_run(ml.run_id).info.status == 'FAILED'
    steps = sorted(m.step for m in client.get_metric_history(ml.run_id, 'train/loss'))
    assert steps == list(range(1, n + learn.step_count + 1))   # the steps of the failed fit were written too
