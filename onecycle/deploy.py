"""Export for inference: the model's forward pass as a ``torch.export`` program (a .pt2 file holding the
graph and the weights), which ``torch.export.load(path).module()`` runs in a process that has neither
onecycle nor the model's code, and without unpickling Python objects."""
from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .core.checks import check_bool
from .core.data import output_pred, split_batch, to_device

__all__ = ['ExportError', 'export', 'load_exported']


class ExportError(RuntimeError):
    "The model cannot be captured by torch.export (the reason is in the message and the chained error)."


class _Predictions(nn.Module):
    """The model as it predicts: its output's logits when it has them (Hugging Face), so that the exported
    program returns plain tensors that need no model library to read. Given `keywords`, its forward takes
    exactly those keyword inputs (torch.export reads the names from its signature)."""
    def __init__(self, model: nn.Module, keywords=()):
        super().__init__()
        self.model = model
        if keywords:
            def forward(**kwargs): return output_pred(self.model(**kwargs))
            forward.__signature__ = inspect.Signature(
                [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in keywords])
            self.forward = forward

    def forward(self, *args):
        return output_pred(self.model(*args))


def _first_batch(learn):
    for dl in (learn.dls.valid, learn.dls.train):
        if dl is not None:
            for b in dl: return b
    raise ValueError('the learner has no batch to trace the model with (both loaders are None or empty): pass batch=')


def _dynamic_batch(o):
    "dynamic_shapes for inputs `o`: the first dimension of every tensor may vary (the batch), nothing else."
    if isinstance(o, torch.Tensor): return {0: torch.export.Dim.AUTO} if o.ndim else None
    if isinstance(o, dict): return {k: _dynamic_batch(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return type(o)(_dynamic_batch(v) for v in o)
    return None


def export(learn, path, batch=None, dynamic_batch=True):
    """Write the model, for inference, to `path` (a ``.pt2`` file) with ``torch.export``: its forward pass
    in eval mode (dropout off, batch norm on its running statistics) as a graph, with the weights.

    Load it anywhere with plain torch, no onecycle and no model code: ``m = torch.export.load(path).module()``
    then ``m(x)`` (or ``m(**inputs)`` for a model that takes a dict batch), or ``onecycle.load_exported``.
    The program returns the predictions (a Hugging Face model's ``logits``).

    Args:
        path: where to write (written to a temporary file first, then renamed).
        batch: an example batch, as the loaders give it, to trace with (the first validation batch by
            default); its targets (and a dict batch's ``labels``) are left out of the inputs.
        dynamic_batch: let the batch size vary (the first dimension of every input); False fixes it to
            the example's.

    A model that torch.export cannot capture (Python control flow on tensor values, operations torch
    cannot trace) raises ``ExportError`` with torch's reason; save its ``state_dict`` instead.
    Returns the path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'path must be a file path (str or os.PathLike), got {type(path).__name__} {path!r}')
    check_bool('dynamic_batch', dynamic_batch)
    path = Path(path)
    if not path.parent.is_dir(): raise FileNotFoundError(f'the folder of path does not exist: {path.parent}')
    b = to_device(_first_batch(learn) if batch is None else batch, learn.device)
    xb, _ = split_batch(b, learn.n_inp)
    if len(xb) == 1 and isinstance(xb[0], dict):
        args, kwargs = (), {k: v for k, v in xb[0].items() if k != 'labels'}
    else: args, kwargs = tuple(xb), {}
    model = learn.model
    was_training = model.training
    model.eval()
    try:
        program = torch.export.export(_Predictions(model, tuple(kwargs)).eval(), args, kwargs,
                                      dynamic_shapes=_shapes_spec(args, kwargs) if dynamic_batch else None)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f'{type(model).__name__} cannot be exported with torch.export: {type(e).__name__}: {reason}. '
                          'Common causes are Python if/for on tensor values and operations torch cannot trace; '
                          "save the weights (learn.save or torch.save(model.state_dict(), ...)) instead") from e
    finally: model.train(was_training)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.stem}.', suffix='.tmp.pt2')
    os.close(fd)
    try:
        torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp): os.remove(tmp)
    return path


def _shapes_spec(args, kwargs):
    "torch.export's dynamic_shapes for _Predictions' forward: its positional inputs, or its keyword inputs by name."
    if kwargs: return {k: _dynamic_batch(v) for k, v in kwargs.items()}
    return (tuple(_dynamic_batch(a) for a in args),)


def load_exported(path) -> nn.Module:
    "The module a file written by ``export`` holds: ``torch.export.load(path).module()``, ready to call."
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'path must be a file path (str or os.PathLike), got {type(path).__name__} {path!r}')
    return torch.export.load(path).module()
