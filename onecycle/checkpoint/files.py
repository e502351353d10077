"""Checkpoint files: the format marker, atomic writes and a reader that never unpickles code."""
from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path

import torch

__all__ = ['CheckpointError', 'FORMAT', 'VERSION', 'atomic_save', 'read_checkpoint', 'check_path']

FORMAT, VERSION = 'onecycle.checkpoint', 1


class CheckpointError(ValueError):
    "A checkpoint that cannot be used: unreadable, unsafe to unpickle, not ours, or not matching this learner."


def check_path(path, must_exist=False) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'path must be a str or os.PathLike, got {type(path).__name__} {path!r}')
    path = Path(path)
    if path.is_dir(): raise ValueError(f'path must be a file, got the directory {str(path)!r}')
    if must_exist and not path.exists(): raise FileNotFoundError(f'no checkpoint at {str(path)!r}')
    return path


def _umask() -> int:
    mask = os.umask(0); os.umask(mask)
    return mask


def atomic_save(obj, path) -> Path:
    """``torch.save(obj)`` to a temporary file beside `path`, then ``os.replace`` it into place: a crash
    or an error mid-write leaves the previous file at `path` untouched (and no temporary file)."""
    path = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush(); os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes it private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError): os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):   # make the rename itself durable where the OS allows it
        dfd = os.open(path.parent, os.O_RDONLY)
        try: os.fsync(dfd)
        finally: os.close(dfd)
    return path


def read_checkpoint(path) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; anything that would need arbitrary
    unpickling, or that is not an onecycle checkpoint, is refused with a CheckpointError."""
    path = check_path(path, must_exist=True)
    try:
        ck = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f'refusing to load {str(path)!r}: it holds objects other than tensors, numbers, strings '
                              f'and containers, and loading them could run arbitrary code. onecycle only loads with '
                              f'torch.load(weights_only=True). ({str(e).splitlines()[0]})') from e
    except Exception as e:
        raise CheckpointError(f'could not read {str(path)!r} as a checkpoint (truncated or corrupt?): '
                              f'{type(e).__name__}: {e}') from e
    if not isinstance(ck, dict) or ck.get('format') != FORMAT:
        raise CheckpointError(f'{str(path)!r} is not an onecycle checkpoint (made by learn.save); for bare weights use '
                              'learn.model.load_state_dict(torch.load(path, weights_only=True))')
    if ck.get('version') != VERSION:
        raise CheckpointError(f'{str(path)!r} has checkpoint version {ck.get("version")!r}; '
                              f'this onecycle reads version {VERSION}')
    return ck
