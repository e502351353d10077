"""Fully sharded data parallel training with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``):
parameters, gradients and optimizer state split across the ranks, for models that do not fit one GPU."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import default_collate

from ..callbacks.training import MixedPrecision
from ..core.callback import Callback
from ..core.checks import check_bool
from ..core.data import call_model, default_device, split_batch, to_device
from ..core.dist import (init_distributed, is_distributed, is_sharded, max_over_ranks, pad_forward_passes,
                         reduces_cpu_tensors, unwrap_model, world_size)
from ..core.hyper import hyper_state, restore_hyper_state

__all__ = ['FSDP', 'shard_model', 'default_blocks']

_CONTAINERS = (nn.ModuleList, nn.Sequential)


def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def default_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules the default policy shards one by one: the elements of every ``nn.ModuleList`` (a
    transformer's layers, whatever their type) and of every ``nn.Sequential`` (a ResNet stage's blocks,
    the layers of a Sequential model), looking inside lists of lists and Sequentials of Sequentials but
    never inside a block; modules without parameters are left to their parent. What is in no block is
    sharded with the root."""
    out = []

    def visit(m: nn.Module, in_list: bool):
        for child in m.children():
            a_list = isinstance(child, nn.ModuleList)
            if a_list or (isinstance(child, nn.Sequential) and not isinstance(m, nn.ModuleList)): visit(child, True)
            elif in_list and _has_params(child): out.append(child)
            else: visit(child, False)
    visit(model, isinstance(model, _CONTAINERS))
    return out


def _blocks(model: nn.Module, policy) -> list[nn.Module]:
    "The submodules `policy` picks, innermost first (fully_shard goes bottom-up), the root excluded."
    if policy == 'auto': picked = default_blocks(model)
    elif policy is None: picked = []
    elif isinstance(policy, type) or (isinstance(policy, (tuple, list, set, frozenset)) and policy
                                      and all(isinstance(c, type) for c in policy)):
        classes = (policy,) if isinstance(policy, type) else tuple(policy)
        picked = [m for m in model.modules() if isinstance(m, classes) and m is not model]
    else: picked = [m for m in model.modules() if m is not model and policy(m)]
    depth = {id(m): name.count('.') + 1 for name, m in model.named_modules() if name}
    seen, out = set(), []
    for m in sorted(picked, key=lambda m: -depth.get(id(m), 0)):   # stable: same depth keeps model order
        if id(m) not in seen and _has_params(m): seen.add(id(m)); out.append(m)
    return out


def _mp_policy(mixed_precision):
    from torch.distributed.fsdp import MixedPrecisionPolicy
    if mixed_precision is None or isinstance(mixed_precision, MixedPrecisionPolicy): return mixed_precision
    # compute in the low precision, reduce gradients and keep the sharded weights in float32
    return MixedPrecisionPolicy(param_dtype=mixed_precision, reduce_dtype=torch.float32)


def shard_model(model: nn.Module, device=None, policy='auto', mixed_precision=None, reshard_after_forward=True,
                sync_module_states=True, **shard_kwargs) -> nn.Module:
    """Shard `model` in place over the default process group with FSDP2's ``fully_shard``: each block
    `policy` picks, then the root; returns it. The blocks are gathered one at a time in the forward and
    backward passes, so only one block's full weights are in memory at once.

    Args:
        device: where the shards live (the mesh's device): this process's GPU under torchrun by default.
            Each block is moved there as it is sharded: a model built on the CPU never needs to fit it whole.
        policy: 'auto' (``default_blocks``: the elements of every ModuleList/Sequential), None (the root
            only), a module class or tuple of classes (e.g. your transformer layer), or a function
            ``policy(module) -> bool``.
        mixed_precision: None (float32), torch.bfloat16 / torch.float16 (compute in that dtype, reduce
            gradients and keep the weights in float32) or a ``MixedPrecisionPolicy``.
        sync_module_states: first copy rank 0's parameters and buffers to every rank (as DDP does), so
            that ranks that initialised differently start from the same model.
        reshard_after_forward, shard_kwargs: passed to ``fully_shard``.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    if not is_distributed():
        raise RuntimeError('shard_model needs an initialized process group: launch with torchrun')
    if is_sharded(model): return model
    device = torch.device(device) if device is not None else default_device()
    if sync_module_states:   # every rank starts from rank 0's weights and buffers, as DDP makes them
        with torch.no_grad():
            for t in model.state_dict().values():
                if isinstance(t, torch.Tensor): dist.broadcast(t, src=0)
    mesh = init_device_mesh(device.type, (world_size(),))
    kw = dict(mesh=mesh, reshard_after_forward=reshard_after_forward, **shard_kwargs)
    mp = _mp_policy(mixed_precision)
    if mp is not None: kw['mp_policy'] = mp
    for block in _blocks(model, policy): fully_shard(block, **kw)
    fully_shard(model, **kw)
    return model


def _check_mixed_precision(mixed_precision):
    from torch.distributed.fsdp import MixedPrecisionPolicy
    if mixed_precision in ('auto', None, torch.bfloat16, torch.float16) or \
            isinstance(mixed_precision, MixedPrecisionPolicy): return mixed_precision
    raise ValueError("mixed_precision must be 'auto', None, torch.bfloat16, torch.float16 or a "
                     f'torch.distributed.fsdp.MixedPrecisionPolicy, got {mixed_precision!r}')


def _check_policy(policy):
    if policy == 'auto' or policy is None or callable(policy): return policy
    if isinstance(policy, (tuple, list, set, frozenset)) and policy and all(isinstance(c, type) for c in policy):
        return policy
    raise TypeError("policy must be 'auto', None, a module class, a tuple of module classes or a function "
                    f'policy(module) -> bool, got {type(policy).__name__} {policy!r}')


class FSDP(Callback):
    """Fully sharded data parallel training (FSDP2): ``Learner(..., cbs=[FSDP()])`` launched by torchrun.

    The model is sharded over the ranks with ``torch.distributed.fsdp.fully_shard``, block by block
    (see ``shard_model`` for `policy`), when the Learner is made (or, if the callback is added later,
    at the start of the next fit, the optimizer then being made again from the sharded parameters with
    the same param groups and hyper-parameters). Parameters, gradients and optimizer state are split
    across the ranks; each block's weights are gathered for its forward and backward passes only.
    The ranks start from rank 0's weights (broadcast before sharding, as DDP does). The
    ``DistributedCallback`` the Learner adds still shards the data and reduces losses and metrics, but
    does not wrap the model in DDP.

    Everything else works as on one process: param groups and discriminative learning rates, every
    schedule, decoupled weight decay, gradient clipping (``clip_grad_norm_`` over DTensors gives the full
    norm), gradient accumulation (gradients are reduced only on the batches that step:
    ``set_requires_gradient_sync(False)`` on the others), ``lr_find``/``tune`` (which restore the
    shards exactly) and ``validate``: a rank whose share of the validation set has fewer batches runs
    extra forward passes on its last batch, unrecorded, because every forward is a collective.
    ``learn.save(dir)`` writes a sharded checkpoint with ``torch.distributed.checkpoint``, and so does
    ``SaveModel`` (directories ``{name}_last`` and ``{name}_best``; mid-epoch saves wait for the end of an
    accumulation group, whose gradients are not reduced yet).

    Outside torchrun (one process) it does nothing, so one script runs either way.

    Args:
        policy: which submodules become their own FSDP unit: 'auto', None, module class(es) or a function.
        mixed_precision: 'auto' (the dtype of a ``MixedPrecision`` callback among the Learner's
            callbacks, else float32), None, torch.bfloat16, torch.float16 or a ``MixedPrecisionPolicy``.
            With float16 also use ``MixedPrecision(torch.float16)`` for loss scaling (a
            ``ShardedGradScaler``, which agrees across ranks on skipped steps).
        reshard_after_forward: free each block's gathered weights after its forward (less memory, one
            more all-gather in backward); False keeps them until backward (ZeRO-2 style).
        shard_kwargs: passed to ``fully_shard`` (e.g. ``offload_policy``).
    """
    order = -30   # before DistributedCallback (-25), which then sees a sharded model and does not wrap it

    def __init__(self, policy='auto', mixed_precision='auto', reshard_after_forward=True, **shard_kwargs):
        if 'mesh' in shard_kwargs or 'mp_policy' in shard_kwargs:
            raise TypeError('FSDP makes the device mesh and the MixedPrecisionPolicy itself: pass mixed_precision= '
                            'instead of mp_policy, and launch with torchrun for the mesh')
        self.policy, self.mixed_precision = _check_policy(policy), _check_mixed_precision(mixed_precision)
        check_bool('reshard_after_forward', reshard_after_forward)
        self.reshard_after_forward, self.shard_kwargs = reshard_after_forward, shard_kwargs
        self._example, self._n_valid, self._n_target, self._syncing = None, 0, 0, True

    # --- sharding ---------------------------------------------------------------------------------
    def _dtype(self, cbs):
        if self.mixed_precision != 'auto': return self.mixed_precision
        mp = [c for c in cbs if isinstance(c, MixedPrecision)]
        return mp[0].dtype if mp else None

    def prepare(self, model: nn.Module, device=None, cbs=()) -> nn.Module:
        """Shard `model` for a learner on `device` with callbacks `cbs` (the Learner calls this before it
        makes its optimizer); the model unchanged outside torchrun."""
        init_distributed()
        if not is_distributed(): return model
        device = torch.device(device) if device is not None else default_device()
        if device.type != 'cuda' and not reduces_cpu_tensors():
            raise ValueError(f'FSDP on {device} needs a process group that handles CPU tensors (gloo): '
                             'train on CUDA, or initialize the group with backend "gloo"')
        return shard_model(unwrap_model(model), device, self.policy, self._dtype(cbs), self.reshard_after_forward,
                           **self.shard_kwargs)

    def shard(self, learn):
        """Shard `learn.model` if it is not yet, and make the optimizer again from the sharded parameters
        with the same param groups and hyper-parameters (its state, if it stepped already, cannot follow)."""
        if is_sharded(learn.model) or not init_distributed(): return
        if learn.opt.state:
            raise RuntimeError('FSDP: the optimizer already has state (the model was trained before being '
                               'sharded): pass FSDP() in Learner(cbs=...) so that the model is sharded from the start')
        hypers, wd = hyper_state(learn.opt), learn.wd
        learn.model = self.prepare(learn.model, learn.device, learn.cbs)
        learn.wd_hook.remove()
        learn.create_opt()   # then every group's lr, momentum, wd... as they were
        restore_hyper_state(learn.opt, hypers)
        learn.wd = wd

    # --- events ------------------------------------------------------------------------------------
    def before_fit(self):
        self.shard(self.learn)
        self._syncing = True

    def before_batch(self):
        learn = self.learn
        if not learn.training or not is_sharded(learn.model): return
        sync = learn.accum_steps <= 1 or learn.is_step_batch   # reduce-scatter only the step's gradients
        if sync != self._syncing:
            learn.model.set_requires_gradient_sync(sync)
            self._syncing = sync

    def before_validate(self):
        # every forward is a collective: the ranks must agree on the count before any of them starts
        self._n_valid = 0
        self._n_target = max_over_ranks(len(self.learn.dl)) if is_sharded(self.learn.model) else 0

    def after_pred(self):
        if not self.learn.training: self._n_valid += 1; self._example = self.learn.xb

    def after_validate(self):
        # before the DistributedCallback reduces the metrics: every rank must have made the same forwards
        learn = self.learn
        if not is_sharded(learn.model): return
        extra = self._n_target - self._n_valid
        if extra > 0:
            xb = self._example if self._n_valid else self._any_input()
            pad_forward_passes(learn.model, extra, lambda: call_model(learn.model, xb))
        self._example = None

    def _any_input(self):
        "Model inputs of one sample, for a rank whose validation share is empty."
        dl = self.learn.dl
        dl = getattr(dl, 'dl', dl)
        b = to_device(default_collate([dl.dataset[0]]), self.learn.device)
        return split_batch(b, self.learn.n_inp)[0]

    def after_fit(self):
        model = self.learn.model
        if not self._syncing and is_sharded(model): model.set_requires_gradient_sync(True)
        self._syncing, self._example = True, None
