"""Predictions after training: ``get_preds`` over a loader, ``predict`` for one batch of inputs.

``get_preds`` runs the learner's validation pass with a ``GatherPreds`` callback, so the callbacks that
shape a forward pass (MixedPrecision, ChannelsLast, a user's ``after_pred``) take part; GatherPreds keeps
each batch's predictions, copied to host memory without waiting for the GPU, and skips the loss, so
loaders without targets work. Under torchrun every rank gets the whole set, in the dataset's order.
"""
from __future__ import annotations

import copy
import functools
import inspect

import torch

from ..core.callback import Callback, CancelBatchException, check_callbacks
from ..core.checks import check_bool, check_callable
from ..core.data import call_model, check_loader, output_pred, to_device
from ..core.dist import gather_objects, is_distributed

__all__ = ['GatherPreds', 'get_preds', 'predict', 'per_item_loss']


def per_item_loss(loss_func):
    """`loss_func` returning one loss per item: a copy with ``reduction='none'`` of a loss that has a
    ``reduction`` attribute (torch loss modules; the user's own is left as it is), or the function called
    with ``reduction='none'`` when it takes that argument (``torch.nn.functional`` losses)."""
    if loss_func is None:
        raise ValueError('with_loss needs a loss_func: this learner has none (the model returns its own loss, '
                         'a mean over the batch, so there are no per-item losses to return)')
    if isinstance(getattr(loss_func, 'reduction', None), str):
        f = copy.copy(loss_func)
        f.reduction = 'none'
        return f
    try: params = inspect.signature(loss_func).parameters
    except (TypeError, ValueError): params = {}
    if 'reduction' in params: return functools.partial(loss_func, reduction='none')
    raise TypeError(f'with_loss needs per-item losses, but loss_func {getattr(loss_func, "__name__", loss_func)!r} '
                    "has no `reduction` attribute or argument: use a torch loss (e.g. nn.CrossEntropyLoss()), or "
                    "one that takes reduction='none'")


# --- nested results: tensors in tuples, lists and dicts -------------------------------------------------
def _detach_to_host(o):
    "Tensors to host memory; from a GPU by a non-blocking copy (into pinned memory): no wait for the device."
    if isinstance(o, torch.Tensor):
        o = o.detach()
        return o.to('cpu', non_blocking=True) if o.device.type == 'cuda' else o.cpu()
    if isinstance(o, dict): return {k: _detach_to_host(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        vals = [_detach_to_host(v) for v in o]
        return type(o)(*vals) if hasattr(o, '_fields') else type(o)(vals)
    return o


def _is_leaf_list(o) -> bool:
    "A list of per-item values (strings, numbers), as a dict batch may hold, rather than a structure of tensors."
    return isinstance(o, list) and all(not isinstance(v, (torch.Tensor, list, tuple, dict)) for v in o)


def _cat(items: list):
    "Per-batch values, joined along the batch dimension, keeping their structure; None when there are none."
    if not items or items[0] is None: return None
    first = items[0]
    if isinstance(first, torch.Tensor): return torch.cat([t.reshape(1) if t.ndim == 0 else t for t in items])
    if isinstance(first, dict): return {k: _cat([o[k] for o in items]) for k in first}
    if _is_leaf_list(first): return [v for o in items for v in o]
    if isinstance(first, (list, tuple)):
        vals = [_cat([o[i] for o in items]) for i in range(len(first))]
        return type(first)(*vals) if hasattr(first, '_fields') else type(first)(vals)
    return items


def _take(o, idx: torch.Tensor):
    "The items of `o` (from _cat) at positions `idx`."
    if o is None: return None
    if isinstance(o, torch.Tensor): return o[idx]
    if isinstance(o, dict): return {k: _take(v, idx) for k, v in o.items()}
    if _is_leaf_list(o): return [o[i] for i in idx.tolist()]
    if isinstance(o, (list, tuple)):
        vals = [_take(v, idx) for v in o]
        return type(o)(*vals) if hasattr(o, '_fields') else type(o)(vals)
    return o


def _n_items(o) -> int:
    if isinstance(o, torch.Tensor): return len(o)
    if isinstance(o, dict): o = list(o.values())
    if _is_leaf_list(o): return len(o)
    return _n_items(o[0]) if isinstance(o, (list, tuple)) and o else 0


def _one(t: tuple):
    "A batch's inputs or targets: the element itself when there is one, None when there are none."
    return None if not t else t[0] if len(t) == 1 else tuple(t)


# --- the callback -----------------------------------------------------------------------------------------
class GatherPreds(Callback):
    """Keeps, for every batch of a validation pass, the predictions (``learn.pred``, after every other
    callback's ``after_pred``), the targets, optionally the inputs and per-item losses (from
    `loss_func`, which must return one loss per item), all in host memory; then skips the rest of the
    batch (the learner's loss and metrics), so batches without targets work. Used by ``get_preds``."""
    order = 90

    def __init__(self, with_input=False, loss_func=None):
        self.with_input, self.loss_func = with_input, loss_func
        self.inputs, self.preds, self.targets, self.losses = [], [], [], []

    def before_validate(self):
        self.inputs, self.preds, self.targets, self.losses = [], [], [], []

    def after_pred(self):
        learn = self.learn
        self.preds.append(_detach_to_host(learn.pred))
        self.targets.append(_detach_to_host(_one(learn.yb)))
        if self.with_input: self.inputs.append(_detach_to_host(_one(learn.xb)))
        if self.loss_func is not None:
            if not learn.yb: raise ValueError('with_loss needs targets, but the batches have none')
            loss = self.loss_func(learn.pred, *learn.yb).detach()
            if loss.ndim == 0:
                raise ValueError('with_loss: the loss function returned one value for the whole batch even with '
                                 "reduction='none'; per-item losses need a loss that honours it")
            if loss.ndim > 1: loss = loss.reshape(len(loss), -1).float().mean(1)   # e.g. per token: mean per item
            self.losses.append(_detach_to_host(loss))
        raise CancelBatchException()

    def results(self) -> tuple:
        "(inputs, preds, targets, losses), each joined over the batches (None where not kept)."
        return _cat(self.inputs), _cat(self.preds), _cat(self.targets), _cat(self.losses)


def _sharded_indices(dl, n: int):
    """Dataset indices of the `n` items this rank read, when `dl` reads one rank's share (a ShardSampler
    or DistributedSampler over several replicas); None when it reads everything."""
    sampler = getattr(dl, 'sampler', None)
    if not is_distributed() or getattr(sampler, 'num_replicas', 1) <= 1: return None
    return torch.tensor(list(iter(sampler))[:n], dtype=torch.long)


def _gather_ranks(idx: torch.Tensor, parts: tuple) -> tuple:
    "Every rank's items, put in dataset order; samples a sampler repeated (DistributedSampler pads) kept once."
    got = [(i, p) for i, p in gather_objects((idx, parts)) if len(i)]
    idx = torch.cat([i for i, _ in got])
    joined = [_cat([p[k] for _, p in got]) for k in range(len(parts))]
    order = torch.sort(idx, stable=True).indices
    ordered = idx[order]
    keep = torch.ones(len(order), dtype=torch.bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return tuple(_take(p, order[keep]) for p in joined)


def get_preds(learn, dl=None, with_input=False, with_loss=False, act=None, cbs=None):
    """Predictions of the model over `dl` (the validation loader by default), in the loader's order:
    ``(preds, targets)`` as CPU tensors, ``(inputs, preds, targets)`` with `with_input`, and per-item
    losses appended with `with_loss` (the learner's loss with ``reduction='none'``, averaged per item over
    any further dimensions).

    Args:
        dl: a DataLoader (or sized iterable of batches); batches without targets give ``targets=None``.
        with_input: also return the inputs.
        with_loss: also return one loss per item.
        act: applied to the predictions, e.g. ``lambda p: p.softmax(-1)``.
        cbs: callbacks for this call only (e.g. a test-time augmentation).

    Predictions are the model's output (its ``logits`` for Hugging Face models); targets of a dict batch
    are its ``'labels'``. It runs a validation pass (in eval mode, without gradients; the model's mode is
    put back) through the learner's callbacks, copying each batch to host memory without waiting for the
    GPU. The learner's last validation results are left as they were. Under torchrun call it on every
    rank: with the validation loader sharded (as it is after a fit), the ranks' shares are gathered so
    that every rank gets the whole set in dataset order.
    """
    dl = learn.dls.valid if dl is None else dl
    check_loader(dl, 'dl')
    check_bool('with_input', with_input); check_bool('with_loss', with_loss)
    check_callable('act', act, allow_none=True)
    cbs = check_callbacks('cbs', cbs)
    gather = GatherPreds(with_input, per_item_loss(learn.loss_func) if with_loss else None)
    last_valid = learn.recorder.last_valid
    try:
        with learn.added_cbs([gather, *cbs]): learn.validate(dl)
    finally: learn.recorder.last_valid = last_valid   # nothing was measured
    if learn.device.type == 'cuda': torch.cuda.current_stream(learn.device).synchronize()   # the copies to the host
    inputs, preds, targets, losses = gather.results()
    idx = _sharded_indices(dl, _n_items(preds) if preds is not None else 0)
    if idx is not None: inputs, preds, targets, losses = _gather_ranks(idx, (inputs, preds, targets, losses))
    if act is not None and preds is not None: preds = act(preds)
    return (*((inputs,) if with_input else ()), preds, targets, *((losses,) if with_loss else ()))


def predict(learn, x, act=None):
    """The model's predictions for one batch of inputs `x`: a tensor, a tuple of the model's inputs, or a
    dict of keyword inputs (a Hugging Face batch). Runs the model directly (no callbacks) on the learner's
    device, in eval mode without gradients, and puts its mode back; returns CPU tensors, `act` applied."""
    check_callable('act', act, allow_none=True)
    if not isinstance(x, (torch.Tensor, tuple, list, dict)):
        raise TypeError(f'x must be a tensor, a tuple of input tensors or a dict of keyword inputs, '
                        f'got {type(x).__name__}')
    xb = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    model = learn.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(): pred = output_pred(call_model(model, to_device(xb, learn.device)))
    finally: model.train(was_training)
    if act is not None: pred = act(pred)
    out = _detach_to_host(pred)
    if learn.device.type == 'cuda': torch.cuda.current_stream(learn.device).synchronize()
    return out
