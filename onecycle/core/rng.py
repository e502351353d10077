"""Random-number-generator states (python, numpy, torch, CUDA and a DataLoader's own generators) as
plain tensors and numbers, so that checkpoints read them with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .checks import check_bool, check_int

__all__ = ['get_rng_state', 'set_rng_state', 'loader_generators', 'reseed', 'set_seed']


def loader_generators(dl) -> list[torch.Generator]:
    "The torch.Generators a DataLoader shuffles with (its own, its sampler's, its batch sampler's), once each."
    cands = [getattr(dl, 'generator', None), getattr(getattr(dl, 'sampler', None), 'generator', None),
             getattr(getattr(getattr(dl, 'batch_sampler', None), 'sampler', None), 'generator', None)]
    out = []
    for g in cands:
        if isinstance(g, torch.Generator) and all(g is not o for o in out): out.append(g)
    return out


def reseed(seed: int, dl=None):
    """Another data order (and other dropout draws): torch's global generator and `dl`'s own generators
    seeded with `seed`. Callers put the states back afterwards (``core.snapshot.preserved``)."""
    torch.manual_seed(seed)
    for g in loader_generators(dl): g.manual_seed(seed)


def get_rng_state(dl=None, cuda=True) -> dict:
    """The python, numpy, torch (and CUDA, when initialized) RNG states, and those of `dl`'s generators,
    as tensors and numbers that ``torch.load(weights_only=True)`` accepts."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {'python': {'version': version, 'state': torch.tensor(state, dtype=torch.int64), 'gauss': gauss},
            'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                      'has_gauss': int(has_gauss), 'cached': float(cached)},
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if cuda and torch.cuda.is_initialized() else None,
            'loaders': [g.get_state() for g in loader_generators(dl)] if dl is not None else []}


def set_rng_state(state: dict, dl=None):
    "Put back RNG states from ``get_rng_state`` (the generators of `dl` too, when both have them)."
    py = state['python']
    random.setstate((py['version'], tuple(py['state'].tolist()), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'], npy['has_gauss'],
                         npy['cached']))
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        for i, s in enumerate(state['cuda'][:torch.cuda.device_count()]): torch.cuda.set_rng_state(s, i)
    if dl is not None:
        for g, s in zip(loader_generators(dl), state.get('loaders', [])): g.set_state(s)


def set_seed(seed: int, deterministic: bool = False):
    """Seed python's, numpy's and torch's random number generators (every CUDA device's too) with `seed`.

    `deterministic=True` also makes torch use deterministic algorithms (an error where an operation has
    none), with cuDNN deterministic and its autotuner off, and sets ``CUBLAS_WORKSPACE_CONFIG`` (unless
    already set) as CUDA's deterministic matrix products need; slower, but a rerun gives the same bits.
    ``deterministic=False`` leaves those settings as they are."""
    check_int('seed', seed, min_value=0); check_bool('deterministic', deterministic)
    if seed >= 2**32: raise ValueError(f'seed must be < 2**32 (numpy accepts no larger seed), got {seed}')
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)   # every CUDA device's generator too
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
