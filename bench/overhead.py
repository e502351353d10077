"""Framework overhead: fit_one_cycle against a hand-written PyTorch loop doing the same work.

Both train the same MLP on the same in-memory data (batch 64, one thread) with AdamW and torch's
OneCycleLR schedule (lr and momentum), compute the epoch's training loss, and run one validation
pass per epoch (loss and accuracy). Epochs alternate between the two so that drift in machine
speed hits both alike. Times are the training thread's CPU time (time.thread_time), so other
processes on a shared machine do not blur the comparison. The script prints median epoch times and
their ratio (target: <= 1.05).

    python bench/overhead.py [--epochs 12] [--progress]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import Callback, Learner, accuracy, fit_one_cycle
from onecycle.models import mlp

N_TRAIN, N_VALID, BS, MAX_LR = 8192, 2048, 64, 3e-3


def make_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(40, 10, generator=g)
    x = torch.randn(N_TRAIN + N_VALID, 40, generator=g)
    y = (x @ w + 0.5 * torch.randn(N_TRAIN + N_VALID, 10, generator=g)).argmax(1)
    train = DataLoader(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), batch_size=BS, shuffle=True)
    valid = DataLoader(TensorDataset(x[N_TRAIN:], y[N_TRAIN:]), batch_size=BS)
    return train, valid


def hand_written_epochs(n_epoch, train, valid, times):
    "The loop a PyTorch user writes by hand, timed per epoch."
    torch.manual_seed(0)
    model, loss_func = mlp(), nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, MAX_LR, total_steps=n_epoch * len(train))
    for _ in range(n_epoch):
        t0 = time.thread_time()
        model.train()
        tot, n = 0., 0
        for xb, yb in train:
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step(); sched.step(); opt.zero_grad()
            tot += loss.item() * len(yb); n += len(yb)
        model.eval()
        vl, acc, nv = 0., 0., 0
        with torch.no_grad():
            for xb, yb in valid:
                pred = model(xb)
                vl += loss_func(pred, yb).item() * len(yb); acc += (pred.argmax(1) == yb).float().sum().item(); nv += len(yb)
        times.append(time.thread_time() - t0)
        yield tot / n, vl / nv, acc / nv


class EpochTimer(Callback):
    order = 100
    def __init__(self, times): self.times = times
    def before_epoch(self): self.t0 = time.thread_time()
    def after_epoch(self): self.times.append(time.thread_time() - self.t0)


class Interleave(Callback):
    "Runs one epoch of the hand-written loop after each onecycle epoch, so both see the same machine state."
    order = 101
    def __init__(self, gen): self.gen = gen
    def after_epoch(self): next(self.gen)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--progress', action='store_true', help='show onecycle progress bars (off by default)')
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, valid = make_data()
    hand_times, ours_times = [], []
    gen = hand_written_epochs(args.epochs, train, valid, hand_times)
    torch.manual_seed(0)
    learn = Learner(mlp(), (train, valid), nn.CrossEntropyLoss(), metrics=[accuracy], device='cpu',
                    progress=args.progress, cbs=[EpochTimer(ours_times), Interleave(gen)])
    fit_one_cycle(learn, args.epochs, MAX_LR)
    skip = 1 if args.epochs > 2 else 0   # first epoch warms up caches and allocator
    h, o = statistics.median(hand_times[skip:]), statistics.median(ours_times[skip:])
    # each onecycle epoch is paired with the hand-written epoch run right after it
    paired = statistics.median(a / b for a, b in zip(ours_times[skip:], hand_times[skip:]))
    n_batches = len(train) + len(valid)
    print(f'batches per epoch: {len(train)} train + {len(valid)} valid, batch size {BS}, 1 thread')
    print(f'hand-written loop : median epoch {h * 1e3:8.1f} ms')
    print(f'onecycle          : median epoch {o * 1e3:8.1f} ms  (progress bars {"on" if args.progress else "off"})')
    print(f'overhead per batch: {(o - h) / n_batches * 1e6:8.1f} us')
    print(f'ratio of medians  : {o / h:.3f}')
    print(f'ratio onecycle / hand-written (median of paired epochs): {paired:.3f}  (target <= 1.05)')


if __name__ == '__main__':
    main()
