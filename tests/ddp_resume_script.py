"""Helper for tests/distributed/test_ddp_resume.py, run on two processes by torchrun (gloo, CPU).

``stop OUT``: the uninterrupted fit (the reference), then fits that a real SIGINT stops (on one rank
only, mid-epoch in training; on the other rank, during validation), each saved (every rank calls
``learn.save``) and resumed in memory. ``resume OUT``, in new processes: every ``OUT/*.ckpt`` resumed.
Each rank writes ``OUT/{mode}_rank{R}.json``: per case, whether weights and history are bitwise the
reference's, and the batch each rank stopped after."""
import json
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)

from onecycle import Callback, GradAccumulation, Learner, accuracy  # noqa: E402
from onecycle.core.dist import rank  # noqa: E402


def make():
    torch.manual_seed(0)
    x = torch.randn(100, 6); y = (x[:, 0] - x[:, 1] > 0).long()
    # shuffled by the global RNG: the DistributedSampler's seed is drawn on rank 0 and broadcast
    train = DataLoader(TensorDataset(x[:72], y[:72]), batch_size=6, shuffle=True)
    valid = DataLoader(TensorDataset(x[72:], y[72:]), batch_size=10)
    torch.manual_seed(1 + rank())   # every rank's RNG elsewhere: Dropout draws differ per rank
    model = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 2))
    return Learner(model, (train, valid), nn.CrossEntropyLoss(), opt_func=torch.optim.AdamW, metrics=[accuracy],
                   device='cpu', progress=False, wd=0.01)


class SigintAt(Callback):
    "A real SIGINT on rank `on_rank` at its n-th `after_pred` (training or validation)."
    def __init__(self, on_rank, n): self.on_rank, self.n, self.seen = on_rank, n, 0
    def after_pred(self):
        self.seen += 1
        if rank() == self.on_rank and self.seen == self.n: signal.raise_signal(signal.SIGINT)


def fit(learn, extra=(), resume=None):
    learn.fit_one_cycle(3, 2e-2, callbacks=[GradAccumulation(2), *extra], resume=resume)


def history(learn):
    r = learn.recorder
    return json.loads(json.dumps({'losses': r.losses, 'hps': r.hps, 'batches_per_epoch': r.batches_per_epoch,
                                  'epochs': [{k: v for k, v in e.items() if k != 'time'} for e in r.epochs]}))


def same(learn, ref):
    sd = learn.model.state_dict()
    return {'weights': all(torch.equal(sd[k], ref['weights'][k]) for k in sd),
            'history': history(learn) == ref['history']}


# 6 training batches per rank per epoch (36 samples each), 2 validation batches (14 samples each)
CASES = {'train_rank1': (1, 10),   # rank 1 only, epoch 1, training batch 2 (the end of an accumulation group)
         'in_group_rank0': (0, 11),   # rank 0 only, epoch 1, training batch 3 (inside an accumulation group)
         'valid_rank0': (0, 7)}    # rank 0 only, epoch 0, first validation batch


def main(mode, out):
    r = rank()
    results = {}
    if mode == 'stop':
        learn = make(); fit(learn)
        ref = {'weights': {k: v.clone() for k, v in learn.model.state_dict().items()}, 'history': history(learn)}
        torch.save(ref['weights'], out / f'ref_rank{r}.pt')
        (out / f'ref_rank{r}.json').write_text(json.dumps(ref['history']))
        for name, (on_rank, n) in CASES.items():
            learn = make()
            try: fit(learn, [SigintAt(on_rank, n)]); stopped = False
            except KeyboardInterrupt: stopped = True
            pos = learn.position
            at = [pos.epochs_done, pos.batches_done]
            learn.save(out / f'{name}.ckpt')   # every rank: the file holds both ranks' RNG states
            torch.rand(2); random.random(); np.random.rand()
            fit(learn, resume=True)
            results[name] = {'stopped': stopped, 'at': at, **same(learn, ref)}
    else:
        ref = {'weights': torch.load(out / f'ref_rank{r}.pt', weights_only=True),
               'history': json.loads((out / f'ref_rank{r}.json').read_text())}
        for ck in sorted(out.glob('*.ckpt')):
            learn = make()
            torch.rand(5); random.random()   # this process's RNGs are elsewhere
            fit(learn, resume=ck)
            results[ck.stem] = same(learn, ref)
    (out / f'{mode}_rank{r}.json').write_text(json.dumps(results))


if __name__ == '__main__':
    main(sys.argv[1], Path(sys.argv[2]))
