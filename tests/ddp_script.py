"""Trains tiny models data-parallel; run by tests/test_distributed.py under
``python -m torch.distributed.run --nproc_per_node=2 tests/ddp_script.py OUT_DIR``.

The training code is what one would write for one process: the Learner joins the process group
and shards the data by itself. Each rank saves what it saw to OUT_DIR/rank{R}.pt and the test
compares the ranks with each other and with one process training on the same global batches.
"""
import contextlib
import io
import os
import sys
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import two_class_arrays

torch.set_num_threads(1)

N_TRAIN, N_VALID, N_IN, BS, SHUFFLE_SEED, MODEL_SEED = 64, 21, 8, 8, 7, 100


def make_data():
    "A two-class problem, the same on every rank (N_VALID is odd: the ranks get unequal validation shares)."
    x, y, xv, yv = two_class_arrays(N_TRAIN, N_VALID, N_IN)
    return TensorDataset(x, y), TensorDataset(xv, yv)


def make_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, 16), nn.ReLU(), nn.Linear(16, 2))


def make_dls(bs=BS):
    train, valid = make_data()
    return (DataLoader(train, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(SHUFFLE_SEED)),
            DataLoader(valid, batch_size=6))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(out_dir):
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from onecycle import Learner
    from onecycle.core.callback import Callback, CancelFitException
    from onecycle.distributed import any_rank, rank, unwrap_model, world_size
    from onecycle.core.metrics import accuracy
    from onecycle.core.snapshot import preserved
    from onecycle.tuning.search import run_trial
    from onecycle.callbacks.training import GradAccumulation

    class Probe(Callback):
        "Notes what the model looks like inside and outside the training pass."
        order = 100

        def __init__(self): self.seen = {}

        def after_batch(self):
            if self.learn.training and 'train_type' not in self.seen:
                self.seen['train_type'] = type(self.learn.model).__name__
                self.seen['train_keys'] = list(self.learn.model.state_dict())

        def after_fit(self): self.seen['after_type'] = type(self.learn.model).__name__

    class CountAllReduces(Callback):
        "Counts the gradient all-reduces DDP makes, with a communication hook."
        order = 100

        def __init__(self): self.calls, self._hooked = 0, set()

        def before_train(self):
            ddp = self.learn.model
            if id(ddp) in self._hooked: return
            self._hooked.add(id(ddp))

            def hook(state, bucket):
                self.calls += 1
                return allreduce_hook(state, bucket)
            ddp.register_comm_hook(None, hook)

    res, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        # 1. fit_one_cycle with shuffled data, weight decay, a metric; each rank starts from other weights.
        probe = Probe()
        learn = Learner(make_model(MODEL_SEED + rank()), make_dls(), nn.CrossEntropyLoss(), opt_func=torch.optim.SGD,
                        metrics=[accuracy], device='cpu', progress=True)
        res['cbs'] = [type(c).__name__ for c in learn.cbs]
        res['joined_before_fit'] = torch.distributed.is_initialized()   # the group is joined by the first fit
        learn.fit_one_cycle(2, max_lr=0.5, wd=1e-2, callbacks=[probe])
        res['loaders'] = {'train_bs': learn.dls.train.batch_size, 'train_len': len(learn.dls.train),
                          'train_sampler': type(learn.dls.train.sampler).__name__,
                          'train_shuffle': learn.dls.train.sampler.shuffle,
                          'valid_sampler': type(learn.dls.valid.sampler).__name__,
                          'valid_indices': list(learn.dls.valid.sampler)}
        res['fit'] = {'state': _state(learn.model), 'hps': learn.recorder.hps, 'losses': learn.recorder.losses,
                      'epochs': [{k: v for k, v in e.items() if k != 'time'} for e in learn.recorder.epochs],
                      'probe': probe.seen, 'effective_bs': learn.effective_batch_size,
                      'validate': learn.validate()}

        # 2. The LR range test runs to divergence: every rank must stop at the same step and get its weights back.
        before = _state(learn.model)
        r = learn.lr_find(start_lr=1e-3, end_lr=1e4, num_it=60)
        res['lr_find'] = {'lrs': r.lrs, 'losses': r.train_losses, 'stopped_early': r.stopped_early,
                          'before': before, 'after': _state(learn.model), 'model_type': type(learn.model).__name__,
                          'held': r.held, 'suggestion': r.suggestion}   # SGD on a plain MLP: hold probes ran
        # ... also when it measures the loss on the (sharded) validation set.
        r = learn.lr_find(start_lr=1e-3, end_lr=1., num_it=6, valid_every=2)
        res['lr_find_valid'] = {'valid_losses': r.losses, 'after': _state(learn.model)}
        # ... and, on an untrained model at lrs too small to learn anything, every rank sweeps again, longer
        fresh = Learner(make_model(MODEL_SEED), make_dls(), nn.CrossEntropyLoss(), opt_func=torch.optim.SGD,
                        device='cpu', progress=False)
        before_fresh = _state(fresh.model)
        r = fresh.lr_find(start_lr=1e-9, end_lr=1e-7)
        res['lr_find_extended'] = {'extended': r.extended, 'steps': r.cost['train_steps'], 'lrs': r.train_lrs,
                                   'held_steps': r.held['steps'], 'replicate_losses': r.replicate.train_losses,
                                   'losses': r.train_losses,
                                   'before': before_fresh, 'after': _state(fresh.model)}
        # ... and inputs far above unit scale (x 100) under AdamW lower the suggestion by their root mean square over
        # the global batch, not each rank's share: one suggestion on every rank
        from onecycle.core.data import input_squares

        class FirstInputs(Callback):
            "Each rank's own first training batch: its inputs' (sum of squares, count)."
            def __init__(self): self.seen = None

            def after_pred(self):
                if self.learn.training and self.seen is None: self.seen = input_squares(self.learn.xb)
        train, valid = make_data()
        x, y = train.tensors
        scaled = (DataLoader(TensorDataset(x * 100, y), batch_size=BS, shuffle=True,
                             generator=torch.Generator().manual_seed(SHUFFLE_SEED)), DataLoader(valid, batch_size=6))
        big = Learner(make_model(MODEL_SEED), scaled, nn.CrossEntropyLoss(), opt_func=torch.optim.AdamW, device='cpu',
                      progress=False)
        first = FirstInputs()
        with big.added_cbs([first]), warnings.catch_warnings(record=True):
            r = big.lr_find(num_it=20)
        res['lr_find_scaled'] = {'input_rms': r.input_rms, 'own': first.seen, 'suggestion': r.suggestion}
        # ... and so does a search trial: its validation losses too are over both shares, the same on every rank.
        with preserved(learn):
            t = run_trial(learn, 4, 0.1, eval_every=2)
        res['trial'] = {'valid_losses': t.valid_losses, 'after': _state(learn.model)}
        with preserved(learn):   # a hold probe (tune's look above S): its score decides on every rank alike
            h = run_trial(learn, 6, 0.1, schedule='hold', pct_start=0.5, eval_every=2)
        res['hold_trial'] = {'valid_losses': h.valid_losses, 'score': h.score, 'after': _state(learn.model)}

        # 3. Gradient accumulation: all-reduce only on the batches that step.
        counter = CountAllReduces()
        learn = Learner(make_model(MODEL_SEED + rank()), make_dls(bs=4), nn.CrossEntropyLoss(),
                        opt_func=torch.optim.SGD, device='cpu', progress=False, cbs=[GradAccumulation(2)])
        res['accum_effective_bs_before_fit'] = learn.effective_batch_size
        learn.fit(1, lr=0.3, cbs=[counter])
        res['accum'] = {'state': _state(learn.model), 'allreduces': counter.calls, 'steps': learn.step_count,
                        'batches': len(learn.dls.train)}

        # 4. A stop that only rank 1 knows about stops both ranks at the same step.
        class StopOnRank1(Callback):
            def after_step(self):
                if any_rank(rank() == 1 and self.learn.step_count == 3): raise CancelFitException()
        learn = Learner(make_model(MODEL_SEED), make_dls(), nn.CrossEntropyLoss(), device='cpu', progress=False)
        learn.fit(3, cbs=[StopOnRank1()])
        res['stop'] = {'steps': learn.step_count, 'model_type': type(unwrap_model(learn.model)).__name__}
    res['stdout'] = out.getvalue()
    res['rank'], res['world_size'], res['backend'] = rank(), world_size(), str(torch.distributed.get_backend())
    torch.save(res, os.path.join(out_dir, f'rank{rank()}.pt'))


if __name__ == '__main__':
    main(sys.argv[1])
