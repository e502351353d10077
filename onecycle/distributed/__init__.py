"""Distributed data parallel training: the same code on one process or on N launched by ``torchrun``.

Under ``torchrun`` the Learner adds a ``DistributedCallback``, which joins the process group, wraps
the model in ``DistributedDataParallel`` and shards the data with a ``DistributedSampler``. Every
rank then sees the same per-batch training loss (all-reduced), the same validation loss and metrics
(reduced with sample-count weights) and the same schedule, so any decision made from them (the LR
finder's divergence test, early stopping, a tuning recipe) is taken identically on every rank and
the ranks stop together. Only rank 0 shows progress.
"""
from ..core.dist import (any_rank, init_distributed, is_distributed, is_main_process, local_rank, main_print, rank,
                         sum_over_ranks, unwrap_model, world_size)
from ..core.hyper import scale_lr
from .ddp import DistributedCallback, ShardSampler, distribute, effective_batch_size, shard_loader

__all__ = ['is_distributed', 'rank', 'local_rank', 'world_size', 'is_main_process', 'main_print', 'init_distributed',
           'any_rank', 'sum_over_ranks', 'unwrap_model', 'ShardSampler', 'shard_loader', 'effective_batch_size',
           'scale_lr', 'DistributedCallback', 'distribute']
