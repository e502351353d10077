"""Process-group helpers: who am I (rank, world size, main process), joining the group torchrun
prepared, and the few collectives the rest of onecycle needs. Nothing here changes a model."""
from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ['is_distributed', 'rank', 'local_rank', 'world_size', 'is_main_process', 'main_print',
           'launched_by_torchrun', 'init_distributed', 'any_rank', 'sum_over_ranks', 'unwrap_model',
           'reduces_cpu_tensors', 'collective_device', 'gather_objects', 'broadcast_module', 'is_sharded',
           'full_state_dict', 'max_over_ranks', 'pad_forward_passes']


def is_distributed() -> bool:
    "True when a torch.distributed process group is initialized (this process is one of several ranks)."
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default process group; before the group is joined, the rank torchrun
    gave it (``RANK``); 0 in a single process."""
    if is_distributed(): return dist.get_rank()
    return int(os.environ['RANK']) if launched_by_torchrun() else 0


def world_size() -> int:
    "How many processes train together (torchrun's ``WORLD_SIZE`` before the group is joined; 1 in a single process)."
    if is_distributed(): return dist.get_world_size()
    return int(os.environ['WORLD_SIZE']) if launched_by_torchrun() else 1


def local_rank() -> int:
    "This process's index on its machine, as torchrun sets it in ``LOCAL_RANK`` (0 otherwise)."
    return int(os.environ.get('LOCAL_RANK', 0))


def is_main_process() -> bool:
    "True on rank 0, the process that shows progress, prints and writes files."
    return rank() == 0


def main_print(*args, **kwargs):
    "``print`` on rank 0 only, so N processes do not print everything N times."
    if is_main_process(): print(*args, **kwargs)


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')) \
        and int(os.environ['WORLD_SIZE']) > 1


def init_distributed() -> bool:
    """Join the process group when this process was launched by ``torchrun`` with more than one
    process, so that notebook-style code needs no distributed boilerplate; returns whether this
    process now trains as one of several ranks.

    An existing process group (``init_process_group`` called by the user) is used as it is. The
    group made here uses gloo for CPU tensors and, when CUDA is available, NCCL for CUDA tensors
    (with this process's GPU, ``LOCAL_RANK``, made current); it is destroyed at exit.
    """
    if is_distributed(): return True
    if not dist.is_available() or not launched_by_torchrun(): return False
    global _exit_group
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        dist.init_process_group('cpu:gloo,cuda:nccl')
    else:
        dist.init_process_group('gloo')
    # torch's monitored_barrier takes only a group whose backend is gloo alone, not a mixed one
    _exit_group = None if str(dist.get_backend()) == 'gloo' else dist.new_group(backend='gloo')
    atexit.register(_destroy)
    return True


_exit_group = None   # the gloo group the exit handler waits in (None: the default group, gloo itself)


EXIT_BARRIER_TIMEOUT = datetime.timedelta(seconds=60)


def _destroy():
    """Leave the group made by `init_distributed` at exit, once every rank got there: a rank that tears
    its gloo connections down while a peer still reads from them aborts that peer (SIGABRT), and with
    two torchrun nodes the surviving agent then waits at its exit barrier for minutes. A peer that
    never arrives (it crashed) costs `EXIT_BARRIER_TIMEOUT`, not a hang."""
    if not is_distributed(): return
    try:
        dist.monitored_barrier(group=_exit_group, timeout=EXIT_BARRIER_TIMEOUT)
    except (RuntimeError, ValueError):
        pass   # a peer is gone (or the group was replaced by one monitored_barrier refuses): leave anyway
    dist.destroy_process_group()


def reduces_cpu_tensors() -> bool:
    "Whether the default group's backend handles CPU tensors (gloo, mpi), not NCCL alone."
    backend = str(dist.get_backend())
    return 'gloo' in backend or 'mpi' in backend


def collective_device() -> torch.device:
    "Where a small tensor must live for a collective: the CPU, unless the backend is NCCL alone."
    return torch.device('cpu') if reduces_cpu_tensors() else torch.device('cuda', torch.cuda.current_device())


def any_rank(flag) -> bool:
    """True on every rank when `flag` is true on any rank. Use it for a stop decision made from
    something only one rank knows (its clock, a file), so that all ranks stop at the same step;
    a rank that stopped alone would leave the others waiting in the next all-reduce forever."""
    if not is_distributed(): return bool(flag)
    t = torch.tensor([1 if flag else 0], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(total, count, device=None) -> tuple:
    """(`total` summed over ranks, `count` summed over ranks) in one all-reduce, as float64 tensors:
    for means over data that the ranks share out, like ``sum(loss x batch size) / samples``.
    `total` is a number or a tensor (of any shape); without a process group both come back as given."""
    if not is_distributed(): return total, count
    total = torch.as_tensor(total, device=device if device is not None else
                            (total.device if isinstance(total, torch.Tensor) else collective_device()))
    dtype = torch.float32 if total.device.type == 'mps' else torch.float64   # exact sample counts, precise sums
    packed = torch.cat([total.detach().to(dtype).reshape(-1),
                        torch.full((1,), float(count), dtype=dtype, device=total.device)])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed[:-1].reshape(total.shape), packed[-1]


def gather_objects(obj) -> list:
    """`obj` from every rank, as a list indexed by rank, on every rank (pickled: for results gathered once,
    such as predictions, not per batch); ``[obj]`` in a single process."""
    if not is_distributed(): return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module: torch.nn.Module, src: int = 0):
    "Every rank's `module` gets rank `src`'s weights and buffers (in place); nothing happens without a process group."
    if not is_distributed(): return
    for t in module.state_dict().values():
        if isinstance(t, torch.Tensor): dist.broadcast(t, src=src)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    "The user's module inside a DistributedDataParallel wrapper (the model itself when not wrapped)."
    while isinstance(model, DistributedDataParallel): model = model.module
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` is sharded by FSDP2 (``torch.distributed.fsdp.fully_shard``, as the ``FSDP``
    callback does): its parameters are DTensors and every forward pass is a collective."""
    if not dist.is_available(): return False
    from torch.distributed.fsdp import FSDPModule
    return isinstance(unwrap_model(model), FSDPModule)


def full_state_dict(model: torch.nn.Module, cpu: bool = True) -> dict:
    """The model's full (unsharded) state dict as plain tensors, on the CPU by default: for a sharded
    model the shards are gathered on every rank (a collective: call it on all ranks); otherwise the
    module's own state dict, detached."""
    model = unwrap_model(model)
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    else: sd = model.state_dict()
    return {k: (v.detach().cpu() if cpu else v.detach()) if isinstance(v, torch.Tensor) else v for k, v in sd.items()}


def max_over_ranks(n: int) -> int:
    "The largest of the ranks' integers `n` (`n` itself without a process group); a collective."
    if not is_distributed(): return int(n)
    t = torch.tensor([int(n)], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def pad_forward_passes(model: torch.nn.Module, n_extra: int, forward) -> int:
    """Run `n_extra` forward passes (no gradients, outputs dropped) of a sharded `model`, each a call of
    `forward()` (e.g. ``lambda: model(*inputs)``); returns how many ran (none for a model that is not
    sharded). Each forward
    of a sharded model gathers its weights from all ranks, so a rank whose share of an evaluation set
    has fewer batches must keep joining in until every rank has made as many forwards as the one
    with the most: take that number with ``max_over_ranks`` BEFORE the evaluation loop (a collective
    started while another rank is still in a forward pass would deadlock)."""
    if n_extra <= 0 or not (is_distributed() and is_sharded(model)): return 0
    if forward is None: raise RuntimeError('pad_forward_passes: this rank has no inputs to run the model on')
    with torch.no_grad():
        for _ in range(n_extra): forward()
    return n_extra
