"""Batches and loaders: moving batches to a device, their size, splitting them into inputs and targets,
calling the model on them (dict batches the Hugging Face way), how large the inputs are (in the batch and where
the model's first weights meet them), the (train, valid) pair, and the checks and rebuild arguments every
loader-handling module shares."""
from __future__ import annotations

import math
import os

import torch
from torch.utils.data import DataLoader

from .dist import local_rank
from .hyper import NORM_TYPES

__all__ = ['DataLoaders', 'to_device', 'default_device', 'batch_size_of', 'check_loader', 'loader_kwargs',
           'split_batch', 'call_model', 'output_pred', 'output_loss', 'batch_loss', 'input_squares', 'input_rms',
           'FirstLayerInput']


def loader_kwargs(dl: DataLoader) -> dict:
    """What it takes to rebuild DataLoader `dl` (with another sampler or batch size): batching,
    collation, workers, memory pinning, the generator and the order of worker results."""
    kw = dict(batch_size=dl.batch_size, drop_last=dl.drop_last, collate_fn=dl.collate_fn, num_workers=dl.num_workers,
              pin_memory=dl.pin_memory, timeout=dl.timeout, worker_init_fn=dl.worker_init_fn,
              multiprocessing_context=dl.multiprocessing_context, generator=dl.generator,
              persistent_workers=dl.persistent_workers, pin_memory_device=dl.pin_memory_device)
    if dl.num_workers > 0: kw['prefetch_factor'] = dl.prefetch_factor
    if hasattr(dl, 'in_order'): kw['in_order'] = dl.in_order
    return kw


def default_device() -> torch.device:
    "CUDA when available (under torchrun, this process's GPU: LOCAL_RANK), else the CPU."
    if not torch.cuda.is_available(): return torch.device('cpu')
    if 'LOCAL_RANK' in os.environ: return torch.device('cuda', local_rank() % torch.cuda.device_count())
    return torch.device('cuda', torch.cuda.current_device())


def to_device(b, device, non_blocking=True):
    "Move tensors in (nested) tuples, lists and dicts to `device`; non-blocking so copies overlap compute."
    if isinstance(b, torch.Tensor): return b if b.device == device else b.to(device, non_blocking=non_blocking)
    if isinstance(b, (list, tuple)):
        if all(type(o) is torch.Tensor and o.device == device for o in b): return b   # the common case, per batch
        return type(b)([to_device(o, device, non_blocking) for o in b])
    if isinstance(b, dict): return {k: to_device(v, device, non_blocking) for k, v in b.items()}
    return b


class DataLoaders:
    "A training and a validation loader (the latter may be None)."
    def __init__(self, train, valid=None):
        self.train, self.valid = train, valid

    @classmethod
    def wrap(cls, dls):
        if hasattr(dls, 'train') and hasattr(dls, 'valid'): return dls
        if isinstance(dls, (tuple, list)) and len(dls) == 2: return cls(*dls)
        raise TypeError('dls must be a pair (train_dl, valid_dl) or an object with .train and .valid, '
                        f'got {type(dls).__name__}')


def batch_size_of(b) -> int:
    "Samples in batch `b`: the length of its first tensor (of a dict batch, its first tensor value); 1 without one."
    # the common case, per batch
    if type(b) is tuple and b and type(b[0]) is torch.Tensor and b[0].ndim: return b[0].shape[0]
    while isinstance(b, (list, tuple)) and b: b = b[0]
    if isinstance(b, dict): b = next((v for v in b.values() if isinstance(v, torch.Tensor) and v.ndim), None)
    return b.shape[0] if isinstance(b, torch.Tensor) and b.ndim > 0 else 1


def split_batch(b, n_inp: int = 1) -> tuple[tuple, tuple]:
    """(inputs, targets) of batch `b`, both tuples. A dict batch (the Hugging Face convention) is one input,
    called as ``model(**b)``, with ``b['labels']`` as its target when present; a tuple or list gives its first
    `n_inp` elements as inputs and the rest as targets; anything else (a lone tensor) is one input."""
    if isinstance(b, dict): return (b,), ((b['labels'],) if 'labels' in b else ())
    if isinstance(b, (list, tuple)): return tuple(b[:n_inp]), tuple(b[n_inp:])
    return (b,), ()


def input_squares(xb: tuple) -> tuple[float, int]:
    """(the sum of squares, the count) of every value in the floating-point tensors among inputs `xb` (a tuple, as
    :func:`split_batch` gives; a dict input's values count; token ids do not), summed in double: what
    :func:`input_rms` reads, in a form ranks can add up."""
    parts = [v for x in xb for v in (x.values() if isinstance(x, dict) else (x,))
             if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()]
    with torch.no_grad():
        return sum(float(v.detach().double().pow(2).sum()) for v in parts), sum(v.numel() for v in parts)


def input_rms(xb: tuple) -> float | None:
    """The root mean square of every value in the floating-point tensors among inputs `xb` (see
    :func:`input_squares`), or None where there are none (token ids). Layers are initialized for inputs of about
    unit scale; far above it, a net's outputs start far too large."""
    total, n = input_squares(xb)
    return math.sqrt(total / n) if n else None


class FirstLayerInput:
    """Watches `model`'s next forward pass for the floating-point input its first layer with weights receives
    (normalization layers aside: their input is what they rescale; an embedding's token ids are not floats, so the
    layer after it counts): ``squares`` is then :func:`input_squares` of it. That, not the batch, is the scale a
    net's first weights meet: a net that divides its pixels by 255 or puts a BatchNorm on its raw features sees unit
    scale whatever the batch holds. Nothing is recorded inside a ``torch.compile``d forward (``squares`` stays
    None; read the batch there); call :meth:`remove` once the pass is over."""

    def __init__(self, model: torch.nn.Module):
        self.squares: tuple[float, int] | None = None
        self._handles = [m.register_forward_pre_hook(self._record) for m in model.modules()
                         if not isinstance(m, NORM_TYPES) and next(m.parameters(recurse=False), None) is not None]

    def _record(self, module, args):
        if torch.compiler.is_compiling() or self.squares is not None: return
        total, n = input_squares(args)
        if n: self.squares = total, n   # no float values (token ids): the next layer's

    def remove(self):
        "Takes the hooks off the model (again: nothing happens)."
        for h in self._handles: h.remove()
        self._handles = []


def call_model(model, xb: tuple):
    "``model(**xb[0])`` when the input is one dict (a Hugging Face style batch), else ``model(*xb)``."
    if len(xb) == 1 and isinstance(xb[0], dict): return model(**xb[0])
    return model(*xb)


def _field(out, name):
    if isinstance(out, dict): return out.get(name)
    return None if isinstance(out, (torch.Tensor, tuple, list)) else getattr(out, name, None)


def output_pred(out):
    "The predictions in a model's output: its ``logits`` (attribute or key, as Hugging Face models return) if any."
    if isinstance(out, torch.Tensor): return out   # the common case, per batch
    logits = _field(out, 'logits')
    return out if logits is None else logits


def output_loss(out) -> torch.Tensor:
    """The loss a model computed itself (``loss_func=None``): its output's ``loss``, attribute or key, the
    Hugging Face convention. A clear error when there is none."""
    loss = _field(out, 'loss')
    if loss is None:
        what = (f'a tensor of shape {tuple(out.shape)}' if isinstance(out, torch.Tensor)
                else f'{type(out).__name__} without a loss')
        raise ValueError(f'loss_func is None, so the loss must come from the model, but the model returned {what}: '
                         "pass a loss_func, or a model that returns its loss (a Hugging Face model given a dict "
                         "batch with 'labels')")
    return loss


def check_loader(dl, name: str):
    "Refuse, before any work, a loader that is missing, has no length or is empty; `name` is the parameter."
    if dl is None: raise ValueError(f'{name} is None: there is no data to run on')
    if isinstance(dl, (str, bytes, dict)):
        raise TypeError(f'{name} must be a DataLoader (or a sized iterable of batches), got {type(dl).__name__} '
                        f'{dl!r:.40}')
    try: n = len(dl)
    except TypeError: raise TypeError(f'{name} must have a length (a DataLoader or a sized iterable)') from None
    if n == 0: raise ValueError(f'{name} is empty (len 0): check the dataset size, batch_size and drop_last')


def batch_loss(loss_func, out, yb: tuple) -> torch.Tensor:
    "The loss of model output `out` against targets `yb`: ``loss_func(pred, *yb)``, or the model's own when None."
    return output_loss(out) if loss_func is None else loss_func(output_pred(out), *yb)
