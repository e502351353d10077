"""Checkpoint files: the format marker, a digest of the payload, atomic writes, and a reader that never
unpickles code and refuses a file whose content is not what was written.

A version 2 file is what ``torch.save`` wrote followed by a short trailer with the SHA-256 of those
bytes (``torch.load`` ignores bytes after the archive, so the file still loads with
``torch.load(path, weights_only=True)``). Any changed, lost or added byte makes the digest differ, so
a damaged file is refused rather than read back as other weights. Version 1 files (written before the
digest) are still read, unchecked.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
from glob import escape as glob_escape
from pathlib import Path

import torch

__all__ = ['CheckpointError', 'FORMAT', 'VERSION', 'atomic_save', 'read_checkpoint', 'check_path', 'check_plain']

FORMAT, VERSION = 'onecycle.checkpoint', 2
READABLE = (1, 2)   # version 1: no digest


class CheckpointError(ValueError):
    "A checkpoint that cannot be used: unreadable, unsafe to unpickle, not ours, or not matching this learner."


def check_path(path, must_exist=False) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'path must be a str or os.PathLike, got {type(path).__name__} {path!r}')
    path = Path(path)
    if path.is_dir(): raise ValueError(f'path must be a file, got the directory {str(path)!r}')
    if must_exist and not path.exists(): raise FileNotFoundError(f'no checkpoint at {str(path)!r}')
    return path


def check_plain(o, where='checkpoint'):
    "Refuse, naming where it is, anything in `o` that ``torch.load(weights_only=True)`` would not read back."
    if isinstance(o, dict):
        for k, v in o.items():
            check_plain(k, f'{where} key'); check_plain(v, f'{where}[{k!r}]')
    elif isinstance(o, (list, tuple)):   # torch.Size is a tuple
        for i, v in enumerate(o): check_plain(v, f'{where}[{i}]')
    elif not (o is None or isinstance(o, (torch.Tensor, bool, int, float, str, bytes, torch.dtype, torch.device))):
        raise TypeError(f'a checkpoint holds tensors, numbers, strings, None and lists/tuples/dicts of them; '
                        f'{where} is a {type(o).__module__}.{type(o).__qualname__} ({o!r:.60}): make the state_dict '
                        'that produced it return plain values (e.g. float(x), int(x), x.tolist())')


class _Hashing:
    "A write-only file that hashes what goes through it."
    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        return self.f.write(b)

    def flush(self): self.f.flush()


_TRAILER = b'\nonecycle-sha256:'
_TRAILER_LEN = len(_TRAILER) + 64 + 1


def _file_digest(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        left = size
        while left:
            chunk = f.read(min(left, 1 << 22))
            if not chunk: break
            h.update(chunk); left -= len(chunk)
    return h.hexdigest()


def _read_trailer(path: Path):
    "(digest, size of what it covers) from the end of the file, or None when it has no trailer."
    size = path.stat().st_size
    if size < _TRAILER_LEN: return None
    with open(path, 'rb') as f:
        f.seek(size - _TRAILER_LEN)
        tail = f.read(_TRAILER_LEN)
    if not (tail.startswith(_TRAILER) and tail.endswith(b'\n')): return None
    return tail[len(_TRAILER):-1].decode('ascii', 'replace'), size - _TRAILER_LEN


def _umask() -> int:
    mask = os.umask(0); os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    except (PermissionError, OSError): return True
    return True


def _remove_orphans(path: Path):
    "Temporary files beside `path` left by a writer that was killed mid-save (its process is gone)."
    for tmp in path.parent.glob(f'.{glob_escape(path.name)}.*.tmp'):
        pid = tmp.name[len(path.name) + 2:].split('.', 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError): tmp.unlink()


def atomic_save(obj, path, digest=True) -> Path:
    """``torch.save(obj)`` to a temporary file beside `path`, then ``os.replace`` it into place: a crash
    or an error mid-write leaves the previous file at `path` untouched (and no temporary file). The
    temporary file a killed process left (SIGKILL mid-write) is removed by the next save to `path`.
    With `digest`, the SHA-256 of the bytes written follows them (``torch.load`` ignores it;
    ``read_checkpoint`` checks it)."""
    path = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.{os.getpid()}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            if digest:
                w = _Hashing(f)
                torch.save(obj, w)
                f.write(_TRAILER + w.h.hexdigest().encode() + b'\n')
            else: torch.save(obj, f)
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
    unpickling, that is not an onecycle checkpoint, or whose content does not match its digest, is
    refused with a CheckpointError. (Version 1 files, which have no digest, are read unchecked.)"""
    path = check_path(path, must_exist=True)
    trailer = _read_trailer(path)
    if trailer is not None and _file_digest(path, trailer[1]) != trailer[0]:
        raise CheckpointError(f'{str(path)!r} is damaged: its bytes do not match the digest written with them '
                              '(a changed or lost byte, a disk or copy error). Use another checkpoint, e.g. the '
                              'previous one SaveModel kept.')
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
    if ck.get('version') not in READABLE:
        raise CheckpointError(f'{str(path)!r} has checkpoint version {ck.get("version")!r}; '
                              f'this onecycle reads versions {", ".join(map(str, READABLE))}')
    if ck['version'] >= 2 and trailer is None:
        raise CheckpointError(f'{str(path)!r} is damaged: the digest that follows a version {ck["version"]} checkpoint '
                              'is missing or altered (a truncated file?). Use another checkpoint.')
    return ck
