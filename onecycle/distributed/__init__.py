"""Distributed data parallel training: the same code on one process or on N launched by ``torchrun``.

Under ``torchrun`` the Learner adds a ``DistributedCallback``, which joins the process group, wraps
the model in ``DistributedDataParallel`` and shards the data with a ``DistributedSampler``. Every
rank then sees the same per-batch training loss (all-reduced), the same validation loss and metrics
(reduced with sample-count weights) and the same schedule, so any decision made from them (the LR
finder's divergence test, early stopping, a tuning recipe) is taken identically on every rank and
the ranks stop together. Only rank 0 shows progress.

With ``FSDP()`` among the callbacks the model is sharded (FSDP2's ``fully_shard``) instead of wrapped
in DDP: parameters, gradients and optimizer state are split across the ranks, and ``learn.save``
writes a sharded checkpoint directory (``torch.distributed.checkpoint``) that loads on any number of
ranks.
"""
from ..core.dist import (any_rank, full_state_dict, init_distributed, is_distributed, is_main_process, is_sharded,
                         local_rank, main_print, max_over_ranks, pad_forward_passes, rank, sum_over_ranks,
                         unwrap_model, world_size)
from ..core.hyper import scale_lr
from .ddp import DistributedCallback, ShardSampler, distribute, effective_batch_size, shard_loader
from .fsdp import FSDP, default_blocks, shard_model
from .sharded import is_sharded_checkpoint, load_sharded, load_sharded_model, save_sharded

__all__ = ['is_distributed', 'rank', 'local_rank', 'world_size', 'is_main_process', 'main_print', 'init_distributed',
           'any_rank', 'sum_over_ranks', 'unwrap_model', 'ShardSampler', 'shard_loader', 'effective_batch_size',
           'scale_lr', 'DistributedCallback', 'distribute', 'FSDP', 'shard_model', 'default_blocks', 'is_sharded',
           'full_state_dict', 'max_over_ranks', 'pad_forward_passes', 'save_sharded', 'load_sharded',
           'load_sharded_model', 'is_sharded_checkpoint']
