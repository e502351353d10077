"""GPU throughput: images per second of a CIFAR ResNet-18 under fit_one_cycle against a hand-written loop.

Both train copies of the same model (same initial weights) on the same synthetic CIFAR-shaped
batches (3x32x32, 10 classes), already on the GPU so that data loading is not measured, with the
same optimizer (SGD, Nesterov momentum, weight decay 5e-4), the 1cycle schedule of lr and
momentum (torch's OneCycleLR in the hand-written loop) and bf16 autocast. Runs alternate
(hand-written, onecycle, hand-written, ...) so that drift in clocks hits both alike; each run is
timed between two cuda.synchronize() calls, the onecycle one around the whole fit_one_cycle call.
The script prints the median images per second of each, their ratio (target >= 0.98) and the range of
the paired runs' ratios, for bf16 alone, with channels_last, and with channels_last and torch.compile.
The Learner runs as a GPU learner does by default, without a DivergenceGuard; one more row
(``--config guard``) shows what the guard costs when asked for (``guard=True``: one host-device
synchronisation per optimizer step, to stop a NaN before it reaches the weights).

    python bench/gpu.py [--bs 512] [--batches 40] [--epochs 2] [--repeats 5] [--config all|bf16|guard|cl|compile]
                        [--pinned] [--progress]
    python bench/gpu.py --cpu      # a tiny version on the CPU, to check the script itself

Without a CUDA GPU (and without --cpu) it prints that it skipped and exits 0.

Data parallel: ``--config ddp`` and ``--config fsdp`` compare the Learner (with the DistributedCallback's
DDP, or with ``FSDP()``) against a hand-written loop doing the same work
(``DistributedDataParallel``, or ``fully_shard`` on the same blocks, both with bf16 autocast and
float32 weights: the ResNet's BatchNorm keeps float32 statistics); every rank trains on its own copy
of the batches, so images per second are summed over ranks. Run them under torchrun (one process per
GPU), or alone for a one-process group:

    torchrun --nproc_per_node=8 bench/gpu.py --config fsdp
    torchrun --nproc_per_node=2 bench/gpu.py --config fsdp --cpu    # gloo on the CPU, to check the script
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import sys
import time
import warnings
from functools import partial

import torch
from torch import nn

from onecycle import ChannelsLast, Compile, Learner, MixedPrecision, fit_one_cycle
from onecycle.vision import cifar_resnet18

MAX_LR, WD, MOMS, PCT_START = 0.4, 5e-4, (0.95, 0.85), 0.25
CONFIGS = {'bf16': dict(channels_last=False, compile=False, guard=False),
           'guard': dict(channels_last=False, compile=False, guard=True),
           'cl': dict(channels_last=True, compile=False, guard=False),
           'compile': dict(channels_last=True, compile=True, guard=False)}
LABELS = {'bf16': 'bf16', 'guard': 'bf16 + DivergenceGuard', 'cl': 'bf16 + channels_last',
          'compile': 'bf16 + channels_last + compile', 'ddp': 'DDP, bf16', 'fsdp': 'FSDP, bf16'}
PARALLEL = ('ddp', 'fsdp')


def make_batches(n, bs, device, pinned, seed=0):
    "`n` batches of random CIFAR-shaped images and labels, on `device` (or in pinned host memory)."
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x, y = torch.randn(bs, 3, 32, 32, generator=g), torch.randint(0, 10, (bs,), generator=g)
        out.append((x.pin_memory(), y.pin_memory()) if pinned else (x.to(device), y.to(device)))
    return out


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def hand_written(model, batches, epochs, device, channels_last=False):
    """The loop a PyTorch user writes by hand, on a plain model or one already wrapped (DDP) or sharded
    (fully_shard): returns its wall time."""
    opt = torch.optim.SGD(model.parameters(), lr=MAX_LR, momentum=MOMS[0], nesterov=True, weight_decay=WD)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, MAX_LR, total_steps=epochs * len(batches), pct_start=PCT_START,
                                                base_momentum=MOMS[1], max_momentum=MOMS[0])
    loss_func = nn.CrossEntropyLoss()
    model.train()
    sync(device); t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last: x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_func(model(x), y)
            loss.backward()
            opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t0


def with_onecycle(learn, epochs, device, cbs, progress):
    "fit_one_cycle on the same work: returns its wall time."
    out = contextlib.redirect_stdout(io.StringIO()) if progress else contextlib.nullcontext()
    sync(device); t0 = time.perf_counter()
    with out: fit_one_cycle(learn, epochs, MAX_LR, moms=MOMS, pct_start=PCT_START, cbs=cbs)
    sync(device)
    return time.perf_counter() - t0


def measure_parallel(name, args, device, width):
    "DDP or FSDP: the Learner against the hand-written loop, on every rank; images per second over all ranks."
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    from onecycle import FSDP
    from onecycle.distributed import default_blocks
    torch.manual_seed(0)
    base = cifar_resnet18(width=width)
    hand_model, our_model = copy.deepcopy(base).to(device), copy.deepcopy(base)
    if name == 'ddp':
        hand_model = DistributedDataParallel(hand_model, device_ids=[device.index] if device.type == 'cuda' else None)
        cbs, fit_cbs = [], [MixedPrecision(torch.bfloat16)]
    else:
        # float32 shards and bf16 autocast: BatchNorm's float32 running statistics refuse bf16 weights
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        for block in default_blocks(hand_model): fully_shard(block, mesh=mesh)
        fully_shard(hand_model, mesh=mesh)
        cbs, fit_cbs = [FSDP(mixed_precision=None)], [MixedPrecision(torch.bfloat16)]
    batches = make_batches(args.batches, args.bs, device, False)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*unsharded')   # a list of batches: every rank reads all of them
        learn = Learner(our_model, (batches, None), nn.CrossEntropyLoss(), device=device, progress=args.progress,
                        opt_func=partial(torch.optim.SGD, momentum=MOMS[0], nesterov=True, weight_decay=WD),
                        guard=False, cbs=cbs)
        hand_written(hand_model, batches, 1, device)   # warm-up
        with_onecycle(learn, 1, device, fit_cbs, args.progress)
        hand, ours = [], []
        for _ in range(args.repeats):
            hand.append(hand_written(hand_model, batches, args.epochs, device))
            ours.append(with_onecycle(learn, args.epochs, device, fit_cbs, args.progress))
    n_images = args.epochs * args.batches * args.bs * dist.get_world_size()
    h, o = n_images / statistics.median(hand), n_images / statistics.median(ours)
    return h, o, [a / b for a, b in zip(hand, ours)]


def _join_group(device):
    "Under torchrun, the group onecycle joins; alone, a one-process group (so that DDP and FSDP run at all)."
    import torch.distributed as dist

    from onecycle.distributed import init_distributed
    if init_distributed(): return
    if not dist.is_initialized():
        import os
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1'); os.environ.setdefault('MASTER_PORT', '29531')
        if device.type == 'cuda': torch.cuda.set_device(device)
        # as init_distributed makes it: gloo for the CPU collectives (objects, counts), NCCL for CUDA tensors
        dist.init_process_group('cpu:gloo,cuda:nccl' if device.type == 'cuda' else 'gloo', rank=0, world_size=1)


def measure(name, args, device, width):
    if name in PARALLEL: return measure_parallel(name, args, device, width)
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    base = cifar_resnet18(width=width).to(device)
    hand_model, our_model = copy.deepcopy(base), copy.deepcopy(base)
    if cfg['channels_last']: hand_model = hand_model.to(memory_format=torch.channels_last)
    if cfg['compile']: hand_model = torch.compile(hand_model)
    batches = make_batches(args.batches, args.bs, device, args.pinned)
    learn = Learner(our_model, (batches, None), nn.CrossEntropyLoss(), device=device, progress=args.progress,
                    opt_func=partial(torch.optim.SGD, momentum=MOMS[0], nesterov=True, weight_decay=WD),
                    guard=cfg['guard'])   # off on a GPU by default; its cost is the 'guard' row
    cbs = [MixedPrecision(torch.bfloat16)] + [ChannelsLast()] * cfg['channels_last'] + [Compile()] * cfg['compile']
    # warm-up: cuDNN autotuning, allocator growth and, with compile, the compilation itself
    hand_written(hand_model, batches, 1, device, cfg['channels_last'])
    with_onecycle(learn, 1, device, cbs, args.progress)
    hand, ours = [], []
    for _ in range(args.repeats):
        hand.append(hand_written(hand_model, batches, args.epochs, device, cfg['channels_last']))
        ours.append(with_onecycle(learn, args.epochs, device, cbs, args.progress))
    n_images = args.epochs * args.batches * args.bs
    h, o = n_images / statistics.median(hand), n_images / statistics.median(ours)
    return h, o, [a / b for a, b in zip(hand, ours)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bs', type=int, default=512)
    ap.add_argument('--batches', type=int, default=40, help='batches per epoch')
    ap.add_argument('--epochs', type=int, default=2, help='epochs per timed run')
    ap.add_argument('--repeats', type=int, default=5, help='timed runs of each')
    ap.add_argument('--config', choices=['all', *CONFIGS, *PARALLEL], default='all',
                    help='all: the one-GPU rows; ddp / fsdp: data parallel (under torchrun)')
    ap.add_argument('--pinned', action='store_true', help='batches in pinned host memory, copied every step')
    ap.add_argument('--progress', action='store_true', help='onecycle with its progress bar')
    ap.add_argument('--cpu', action='store_true', help='a tiny run on the CPU, to check the script')
    args = ap.parse_args(argv)
    from onecycle.core.dist import launched_by_torchrun
    if launched_by_torchrun() and args.config not in PARALLEL:
        ap.error(f'--config {args.config} measures one GPU: run it without torchrun (with torchrun: --config ddp|fsdp)')
    width = 64
    if args.cpu:
        device, width = torch.device('cpu'), 8
        torch.set_num_threads(1)
        args.bs, args.batches, args.epochs, args.repeats = 16, 3, 1, 2
        args.pinned = False
        names = ['bf16', 'guard', 'cl'] if args.config == 'all' else [args.config]
    elif not torch.cuda.is_available():
        print('bench/gpu.py: no CUDA GPU on this machine, skipped (use --cpu for a tiny check of the script)')
        return 0
    else:
        from onecycle import default_device
        device = default_device()   # under torchrun, this process's GPU
        names = list(CONFIGS) if args.config == 'all' else [args.config]
    if args.config in PARALLEL: _join_group(device)
    from onecycle import main_print as say   # one report, from rank 0
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU, 1 thread (script check only)'
    say(f'ResNet-18 (CIFAR, width {width}), {args.batches} batches of {args.bs} x 3x32x32 per epoch, '
          f'{args.epochs} epochs per run, {args.repeats} runs, SGD + 1cycle, bf16 autocast; {where}; '
          f'torch {torch.__version__}')
    say(f'{"configuration":30s} {"hand img/s":>11s} {"onecycle img/s":>15s} {"ratio":>6s} {"paired runs":>12s}')
    ratios = {}
    for name in names:
        h, o, paired = measure(name, args, device, width)
        ratios[name] = statistics.median(paired)
        # the spread of the paired runs' ratios: on a shared machine one run's ratio says little alone
        say(f'{LABELS[name]:30s} {h:11.0f} {o:15.0f} {ratios[name]:6.3f} {min(paired):6.3f}-{max(paired):.3f}')
    say('ratio onecycle / hand-written images per second (median of paired runs): '
          + ', '.join(f'{LABELS[k]}: {v:.3f}' for k, v in ratios.items() if k != 'guard') + '  (target >= 0.98)')
    if 'guard' in ratios and 'bf16' in ratios:   # not a target: what guard=True costs, one sync per step
        say(f"DivergenceGuard's cost: {ratios['bf16'] / ratios['guard']:.3f}x the time of the same fit without it")
    return 0


if __name__ == '__main__':
    sys.exit(main())
