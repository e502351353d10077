"""Compact history: the recorder keeps at most 64 bytes per recorded step, and loses nothing it recorded."""
import tracemalloc

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import onecycle.core.recorder as recorder_module
from onecycle import Learner


def _learner(n, bs=1, shuffle=False):
    torch.manual_seed(0)
    x = torch.randn(n, 4); y = (x[:, 0] > 0).long()
    dls = (DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=shuffle), None)
    return Learner(nn.Linear(4, 2), dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, device='cpu',
                   progress=False)


def _retained_by_recorder(fn) -> int:
    "Bytes allocated from recorder.py (lists, arrays, floats) still alive after `fn()`."
    tracemalloc.start()
    try:
        fn()
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, recorder_module.__file__)])
        return sum(s.size for s in snap.statistics('filename'))
    finally: tracemalloc.stop()


def test_history_takes_at_most_64_bytes_per_step():
    small, big = _learner(100), _learner(1100)
    small.fit(1, lr=0.1); big.fit(1, lr=0.1)   # warm up (first-call allocations)
    a = _retained_by_recorder(lambda: small.fit(1, lr=0.1))
    b = _retained_by_recorder(lambda: big.fit(1, lr=0.1))
    per_step = (b - a) / (1100 - 100)
    print(f'{per_step:.1f} bytes per step')
    assert per_step <= 64, f'{per_step:.1f} bytes per step'
    assert len(big.recorder.losses) == 1100 and len(big.recorder.hps['lr']) == 1100


def test_nothing_recorded_is_lost_across_chunks_passes_and_state_dicts():
    learn = _learner(600, bs=1, shuffle=True)   # 600 batches per pass: several chunks of 256
    seen = []

    class Spy:
        order = 60
        def after_batch(self):
            if learn.training: seen.append(learn.loss.item())
    learn.fit(2, lr=0.05, cbs=[Spy()])
    r = learn.recorder
    assert r.losses == seen and len(r.hps['lr']) == 1200 and r.lrs == [0.05] * 1200
    assert [len(v) for v in r.hps['mom']] == [1] * 1200
    means = [sum(seen[:600]) / 600, sum(seen[600:]) / 600]
    assert all(abs(e['train_loss'] - m) < 1e-5 for e, m in zip(r.epochs, means))
    sd = r.state_dict()
    r2 = type(r)(); r2.load_state_dict(sd)
    assert r2.losses == seen and r2.hps == r.hps and r2.state_dict() == sd
