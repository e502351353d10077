"""Experiment loggers: the epoch table to a CSV file; per-step training loss and hyper-parameters and
per-epoch results to TensorBoard, Weights & Biases or MLflow. All write on rank 0 only and stand
aside during trial fits (range tests, searches); their library is imported when they first write."""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import torch

from ..core.callback import Callback, in_trial
from ..core.checks import check_bool, check_int
from ..core.dist import is_main_process
from ..core.hyper import has_hyper, hyper_getter

__all__ = ['CSVLogger', 'StepLogger', 'TensorBoardLogger', 'WandbLogger', 'MLflowLogger']


def _check_path(name, p):
    if not isinstance(p, (str, os.PathLike)) or not str(p):
        raise TypeError(f'{name} must be a path (str or os.PathLike), got {type(p).__name__} {p!r}')
    return Path(p)


def _fmt(v) -> str:
    "A value as the CSV file holds it: floats in full precision (read back exactly), ints as they are."
    return repr(float(v)) if isinstance(v, float) else str(v)


class CSVLogger(Callback):
    """Writes the epoch table to `path`: a header, then one row per epoch as it ends (epoch, train_loss,
    valid_loss, each metric, time in seconds), flushed at once so the file is readable during the fit.

    Args:
        path: the CSV file (its folder is created when needed).
        append: add to an existing file (its header must name the same columns) instead of starting it
            afresh at every fit.

    A resumed fit continues the file: rows written after the checkpoint it resumes from (by the run
    that was interrupted) are dropped first, so every epoch appears once. Rank 0 only.
    """
    order = 65   # after the Recorder writes the row, before SaveModel saves a checkpoint that counts it

    def __init__(self, path='history.csv', append=False):
        self.path = _check_path('path', path)
        check_bool('append', append)
        self.append = append
        self.rows = 0             # data rows in the file
        self._saved_rows = None   # rows a checkpoint being resumed had counted
        self._active, self._columns, self._pending = False, None, False

    def state_dict(self) -> dict: return {'rows': self.rows}
    def load_state_dict(self, sd: dict): self._saved_rows = int(sd['rows'])

    def _read(self) -> list[list[str]]:
        with open(self.path, newline='') as f: return list(csv.reader(f))

    def _write(self, lines, mode):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, mode, newline='') as f: csv.writer(f).writerows(lines)

    def _existing(self):
        "The data rows of the file, after checking its header names this fit's columns."
        lines = self._read() if self.path.exists() and self.path.stat().st_size else []
        if lines and lines[0] != self._columns:
            raise ValueError(f'CSVLogger: {self.path} has the columns {lines[0]}, this fit records {self._columns}: '
                             'append to another file, or use append=False to start it afresh')
        return lines[1:]

    def before_fit(self):
        self._active = is_main_process() and not in_trial(self.learn)
        if not self._active: return
        self._columns = list(self.learn.recorder.metric_names)
        self._saved_rows, self._pending = None, bool(self.learn.keep_history)
        if self._pending: return   # resuming: the checkpoint's count arrives with before_epoch
        if self.append:
            self.rows = len(self._existing())
            if not self.rows: self._write([self._columns], 'w')
        else:
            self._write([self._columns], 'w'); self.rows = 0

    def before_epoch(self):
        if not (self._active and self._pending): return
        self._pending = False
        rows = self._existing()
        keep = rows if self._saved_rows is None else rows[:self._saved_rows]
        self._write([self._columns] + keep, 'w')
        self.rows = len(keep)

    def after_epoch(self):
        if not self._active or not self.learn.recorder.epochs: return
        row = self.learn.recorder.epochs[-1]
        self._write([[_fmt(row.get(c, float('nan'))) for c in self._columns]], 'a')
        self.rows += 1

    def after_fit(self):
        self._active = False


class StepLogger(Callback):
    """Base of the loggers that follow a fit step by step: per optimizer step the training loss (the
    mean over the batches of the step, weighted by batch size; the same on every rank under DDP) as
    ``train/loss`` and every hyper-parameter the recorder or a scheduler tracks, for every param group
    (``hp/lr``, or ``hp/lr/group1``... with several groups); per epoch every column of the epoch table as
    ``epoch/valid_loss``, ``epoch/<metric>``..., at the step the epoch ends. Steps count over all fits
    of the learner (and survive a resume). Losses stay on the device until written, in one transfer
    every `every_n_steps` steps and at the end of each training pass. Rank 0 only; a subclass
    implements ``open``, ``write(scalars, step)``, ``flush`` and ``log_figure(tag, fig, step)``."""
    order = 65

    def __init__(self, every_n_steps=50):
        self.every_n_steps = check_int('every_n_steps', every_n_steps, min_value=1)
        self.step, self._opened = 0, False
        self._active, self._group, self._pending, self._hypers = False, [], [], []

    def state_dict(self) -> dict: return {'step': self.step}
    def load_state_dict(self, sd: dict): self.step = int(sd['step'])

    # --- for subclasses -------------------------------------------------------------------------
    def open(self): raise NotImplementedError
    def write(self, scalars: dict, step: int): raise NotImplementedError
    def flush(self): pass
    def log_figure(self, tag: str, fig, step: int): raise NotImplementedError

    def _ensure_open(self):
        if not self._opened: self.open(); self._opened = True

    def log_lr_find(self, result):
        """Log an LR range test: its plot (``result.plot()``) as figure ``lr_find`` and its suggestion as
        ``lr_find/suggestion``. ``learn.lr_find()`` calls it for the loggers attached to the learner."""
        if not is_main_process(): return
        import matplotlib.pyplot as plt
        self._ensure_open()
        fig = result.plot()
        try:
            self.log_figure('lr_find', fig, self.step)
            self.write({'lr_find/suggestion': float(result.suggestion)}, self.step)
            self.flush()
        finally: plt.close(fig)

    # --- events ---------------------------------------------------------------------------------
    def before_fit(self):
        learn = self.learn
        self._active = is_main_process() and not in_trial(learn)
        if not self._active: return
        self._ensure_open()
        pgs = learn.opt.param_groups
        names = list(learn.recorder.HYPERS)
        for cb in learn.cbs:   # whatever a scheduler sets: 'beta2', 'eps'...
            scheds = getattr(cb, '__dict__', {}).get('scheds')
            if isinstance(scheds, dict): names += [k for k in scheds if isinstance(k, str) and k not in names]
        self._hypers = [(n, hyper_getter(pgs[0], n)) for n in names if has_hyper(pgs[0], n)]
        self._group, self._pending = [], []

    def after_loss(self):
        if self._active and self.learn.training: self._group.append((self.learn.loss.detach(), self.learn.batch_size))

    def after_step(self):
        if not self._active: return
        pgs = self.learn.opt.param_groups
        self.step += 1
        hps = {}
        for n, get in self._hypers:
            vals = [get(pg) for pg in pgs]
            if len(vals) == 1: hps[f'hp/{n}'] = float(vals[0])
            else: hps.update({f'hp/{n}/group{i}': float(v) for i, v in enumerate(vals)})
        self._pending.append((self.step, self._group, hps))
        self._group = []
        if len(self._pending) >= self.every_n_steps: self._write_steps()

    def _write_steps(self):
        pending, self._pending = self._pending, []
        losses = [l for _, g, _ in pending for l, _ in g]
        values = torch.stack(losses).float().cpu().tolist() if losses else []   # one transfer
        i = 0
        for step, group, hps in pending:
            if group:
                bs = [b for _, b in group]
                hps = {'train/loss': sum(v * b for v, b in zip(values[i:i + len(group)], bs)) / sum(bs), **hps}
                i += len(group)
            self.write(hps, step)

    def after_train(self):
        if self._active and self._pending: self._write_steps()

    def after_epoch(self):
        if not self._active or not self.learn.recorder.epochs: return
        if self._pending: self._write_steps()
        row = self.learn.recorder.epochs[-1]
        self.write({f'epoch/{k}': float(v) for k, v in row.items()}, self.step)
        self.flush()

    def after_fit(self):
        if not self._active: return
        self._active = False
        if self._pending: self._write_steps()
        self.flush()


class TensorBoardLogger(StepLogger):
    """Logs to TensorBoard event files in `log_dir` (``torch.utils.tensorboard.SummaryWriter``; needs the
    ``tensorboard`` package: ``pip install onecycle[tensorboard]``): see ``StepLogger`` for what is
    logged. ``log_lr_find`` adds the range test's plot as a figure. ``close()`` closes the writer."""
    def __init__(self, log_dir='runs', every_n_steps=50, **writer_kwargs):
        super().__init__(every_n_steps)
        self.log_dir, self.writer_kwargs, self.writer = _check_path('log_dir', log_dir), writer_kwargs, None

    def open(self):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(self.log_dir), **self.writer_kwargs)

    def write(self, scalars, step):
        for k, v in scalars.items(): self.writer.add_scalar(k, v, step)

    def flush(self):
        if self.writer is not None: self.writer.flush()

    def log_figure(self, tag, fig, step): self.writer.add_figure(tag, fig, step, close=False)

    def close(self):
        if self.writer is not None: self.writer.close()
        self.writer, self._opened = None, False


class WandbLogger(StepLogger):
    """Logs to a Weights & Biases run (needs ``wandb``: ``pip install onecycle[wandb]``), made at the first
    fit with ``wandb.init(project=..., name=..., config=..., dir=..., mode=..., **init_kwargs)``
    (``mode='offline'`` writes to `dir` only) and kept for later fits; see ``StepLogger`` for what is
    logged. ``finish()`` ends the run (wandb also ends it when the process exits)."""
    def __init__(self, project=None, name=None, config=None, dir=None, mode=None, every_n_steps=50, **init_kwargs):
        super().__init__(every_n_steps)
        if config is not None and not isinstance(config, dict):
            raise TypeError(f'config must be a dict, got {type(config).__name__}')
        if mode is not None and mode not in ('online', 'offline', 'disabled', 'shared'):
            raise ValueError(f"mode must be 'online', 'offline', 'disabled' or 'shared', got {mode!r}")
        if dir is not None: _check_path('dir', dir)
        self.init_kwargs = dict(project=project, name=name, config=config, dir=None if dir is None else str(dir),
                                mode=mode, **init_kwargs)
        self.run = None

    def open(self):
        import wandb
        self.run = wandb.init(reinit='create_new', **{k: v for k, v in self.init_kwargs.items() if v is not None})

    def write(self, scalars, step): self.run.log(scalars, step=step)

    def log_figure(self, tag, fig, step):
        import wandb
        self.run.log({tag: wandb.Image(fig)}, step=step)

    def finish(self):
        if self.run is not None: self.run.finish()
        self.run, self._opened = None, False


class MLflowLogger(StepLogger):
    """Logs to an MLflow run (needs ``mlflow`` or ``mlflow-skinny``: ``pip install onecycle[mlflow]``) in
    `experiment_name` at `tracking_uri` (MLflow's default when None; ``'file:/some/dir'`` for a local
    store), made at the first fit with `run_name`, `tags` and `params`; see ``StepLogger`` for what is
    logged. The run is marked finished (or failed) at the end of every fit and running again at the
    next; ``run_id`` names it."""
    def __init__(self, experiment_name='onecycle', run_name=None, tracking_uri=None, tags=None, params=None,
                 every_n_steps=50):
        super().__init__(every_n_steps)
        if not isinstance(experiment_name, str) or not experiment_name:
            raise TypeError(f'experiment_name must be a non-empty str, got {experiment_name!r}')
        for n, d in (('tags', tags), ('params', params)):
            if d is not None and not isinstance(d, dict): raise TypeError(f'{n} must be a dict, got {type(d).__name__}')
        if tracking_uri is not None and not isinstance(tracking_uri, (str, os.PathLike)):
            raise TypeError(f'tracking_uri must be a str, got {type(tracking_uri).__name__}')
        self.experiment_name, self.run_name, self.tracking_uri = experiment_name, run_name, tracking_uri
        self.tags, self.params = dict(tags or {}), dict(params or {})
        self.client = self.run_id = None

    def open(self):
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient(None if self.tracking_uri is None else str(self.tracking_uri))
        exp = self.client.get_experiment_by_name(self.experiment_name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment_name)
        run = self.client.create_run(exp_id, run_name=self.run_name, tags={k: str(v) for k, v in self.tags.items()})
        self.run_id = run.info.run_id
        for k, v in self.params.items(): self.client.log_param(self.run_id, k, v)

    def before_fit(self):
        super().before_fit()
        if self._active and self.client is not None: self.client.update_run(self.run_id, status='RUNNING')

    def write(self, scalars, step):
        from mlflow.entities import Metric
        ms = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ms, step) for k, v in scalars.items()])

    def log_figure(self, tag, fig, step): self.client.log_figure(self.run_id, fig, f'{tag}.png')

    def after_fit(self):
        was = self._active
        super().after_fit()
        if was and self.client is not None:
            e = sys.exception()
            status = 'FINISHED' if e is None else 'KILLED' if isinstance(e, KeyboardInterrupt) else 'FAILED'
            self.client.set_terminated(self.run_id, status=status)
