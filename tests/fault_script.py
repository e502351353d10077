"""Helper for tests/checkpoint/test_faults.py: tiny fits that a real SIGINT interrupts, and their resumes.

``make(kind)`` builds the same learner every time for each kind of model: a plain MLP shuffled by a
seeded generator, BatchNorm + Dropout with gradient accumulation shuffled by the global RNG, and the
same under mixed precision (bfloat16 autocast; float16 with a GradScaler). ``fit(learn, kind)`` runs
its fit. ``python fault_script.py resume DIR`` resumes, in a new process, every ``DIR/*.ckpt`` (named
``{kind}__{anything}.ckpt``) and prints, as JSON, whether each ended bitwise on the reference
``DIR/ref_{kind}.pt`` / ``.json``."""
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)

from onecycle import GradAccumulation, Learner, MixedPrecision, accuracy  # noqa: E402

KINDS = ('mlp', 'bn_dropout_accum', 'bf16', 'fp16')
N_EPOCH = 2


def make(kind):
    "The same learner every time for `kind`."
    torch.manual_seed(0)
    x = torch.randn(80, 6); y = (x[:, 0] - 0.7 * x[:, 1] > 0).long()
    seeded = kind == 'mlp'
    train = DataLoader(TensorDataset(x[:56], y[:56]), batch_size=8, shuffle=True,
                       generator=torch.Generator().manual_seed(3) if seeded else None)
    valid = DataLoader(TensorDataset(x[56:], y[56:]), batch_size=12)
    if kind == 'mlp': model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    else: model = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 2))
    opt = torch.optim.SGD if kind == 'fp16' else torch.optim.AdamW
    return Learner(model, (train, valid), nn.CrossEntropyLoss(), opt_func=opt, metrics=[accuracy], device='cpu',
                   progress=False, wd=0.01)


def fit_cbs(kind):
    if kind == 'mlp': return []
    cbs = [GradAccumulation(3)]
    if kind == 'bf16': cbs.append(MixedPrecision(torch.bfloat16))
    if kind == 'fp16': cbs.append(MixedPrecision(torch.float16))
    return cbs


def fit(learn, kind, extra=(), resume=None):
    learn.fit_one_cycle(N_EPOCH, 2e-2, callbacks=fit_cbs(kind) + list(extra), resume=resume)


def history(learn):
    r = learn.recorder
    return json.loads(json.dumps({'losses': r.losses, 'hps': r.hps, 'batches_per_epoch': r.batches_per_epoch,
                                  'epochs': [{k: v for k, v in e.items() if k != 'time'} for e in r.epochs]}))


def weights(learn):
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def same(learn, ref_weights, ref_history) -> dict:
    sd = learn.model.state_dict()
    return {'weights': sd.keys() == ref_weights.keys() and all(torch.equal(sd[k], ref_weights[k]) for k in sd),
            'history': history(learn) == ref_history}


def write_refs(out):
    for kind in KINDS:
        learn = make(kind); fit(learn, kind)
        torch.save(weights(learn), out / f'ref_{kind}.pt')
        (out / f'ref_{kind}.json').write_text(json.dumps(history(learn)))


def resume_all(out):
    results = {}
    for ck in sorted(out.glob('*.ckpt')):
        kind = ck.name.split('__')[0]
        learn = make(kind)
        torch.rand(3); random.random(); np.random.rand()   # this process's RNGs are somewhere else
        fit(learn, kind, resume=ck)
        results[ck.name] = same(learn, torch.load(out / f'ref_{kind}.pt', weights_only=True),
                                json.loads((out / f'ref_{kind}.json').read_text()))
    return results


if __name__ == '__main__':
    if sys.argv[1] == 'resume': print(json.dumps(resume_all(Path(sys.argv[2]))))
