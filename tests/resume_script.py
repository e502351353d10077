"""Helper for test_resume.py: ``resume_script.py stop DIR`` runs fit_one_cycle uninterrupted (the
reference) and stopped at several points, saving a checkpoint at each; ``resume_script.py resume DIR``,
in a new process, resumes every checkpoint and prints, as JSON, whether the final weights and the
recorded history are bitwise those of the uninterrupted run."""
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

from onecycle import Callback, CancelFitException, GradAccumulation, Learner, accuracy  # noqa: E402

# 11 training batches per epoch, accumulated in groups of 3 (3+3+3+2), 3 epochs: 33 batches, 12 steps.
POINTS = {
    'epoch_boundary': ('epoch', 1),     # after epoch 0 (train, validation, after_epoch)
    'mid_epoch': ('batch', 17),         # epoch 1, 6 batches done: between two accumulation groups
    'in_accum_group': ('batch', 16),    # epoch 1, 5 batches done: 2 of a group of 3 accumulated
    'train_pass_end': ('batch', 22),    # epoch 1, all 11 batches done, before its validation
    'first_batch': ('batch', 1),        # epoch 0, inside the very first group
    'last_epoch': ('batch', 31),        # epoch 2, 9 batches done
}


class StopAt(Callback):
    "Ends the fit after the n-th training batch or the n-th epoch (order 100: after the Recorder)."
    order = 100

    def __init__(self, event, n): self.event, self.n, self.seen = event, n, 0

    def after_batch(self):
        if self.event == 'batch' and self.learn.training:
            self.seen += 1
            if self.seen == self.n: raise CancelFitException()

    def after_epoch(self):
        if self.event == 'epoch' and self.learn.epoch + 1 == self.n: raise CancelFitException()


def make(seeded):
    "The same learner every time. Shuffling by a seeded generator, or (seeded=False) by the global RNG."
    torch.manual_seed(0)
    x = torch.randn(120, 8); y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    gen = torch.Generator().manual_seed(1) if seeded else None
    train = DataLoader(TensorDataset(x[:88], y[:88]), batch_size=8, shuffle=True, generator=gen)
    valid = DataLoader(TensorDataset(x[88:], y[88:]), batch_size=16)
    # BatchNorm (buffers) and Dropout (global RNG during training) make the run sensitive to both
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    return Learner(model, (train, valid), nn.CrossEntropyLoss(), opt_func=torch.optim.AdamW, metrics=[accuracy],
                   device='cpu', progress=False, wd=0.01)


def fit(learn, stop=None, resume=None):
    cbs = [GradAccumulation(3)] + ([StopAt(*stop)] if stop else [])
    learn.fit_one_cycle(3, 2e-2, callbacks=cbs, resume=resume)


def history(learn):
    r = learn.recorder
    return {'losses': r.losses, 'hps': r.hps, 'batches_per_epoch': r.batches_per_epoch,
            'epochs': [{k: v for k, v in e.items() if k != 'time'} for e in r.epochs]}


def main(mode, out):
    results = {}
    for seeded in (True, False):
        v = 'seeded' if seeded else 'global'
        if mode == 'stop':
            learn = make(seeded); fit(learn)
            torch.save(learn.model.state_dict(), out / f'ref_{v}.pt')
            (out / f'ref_{v}.json').write_text(json.dumps(history(learn)))
            for name, stop in POINTS.items():
                learn = make(seeded); fit(learn, stop)
                learn.save(out / f'{v}_{name}.ckpt')
            continue
        ref = torch.load(out / f'ref_{v}.pt', weights_only=True)
        ref_history = json.loads((out / f'ref_{v}.json').read_text())
        for name in POINTS:
            learn = make(seeded)
            torch.rand(3); random.random(); np.random.rand()   # this process's RNGs are somewhere else
            fit(learn, resume=out / f'{v}_{name}.ckpt')
            sd = learn.model.state_dict()
            results[f'{v}:{name}'] = {'weights': all(torch.equal(sd[k], ref[k]) for k in ref),
                                      'history': json.loads(json.dumps(history(learn))) == ref_history}
    if mode == 'resume': print(json.dumps(results))


if __name__ == '__main__':
    main(sys.argv[1], Path(sys.argv[2]))
