"""Metrics of the validation pass, two kinds:

- a function ``metric(pred, *targets) -> scalar`` is computed on every batch and averaged over the
  validation set weighted by batch size (exact for means such as accuracy);
- a metric object with ``update``, ``compute`` and ``reset`` (any ``torchmetrics.Metric``, torcheval's
  metrics) accumulates over the whole set: ``reset`` before each pass, ``update(pred, *targets)`` per
  batch, ``compute()`` once at the end. F1, AUROC and other metrics that are not means of per-batch
  values need this. torchmetrics synchronises its states over the ranks of a process group by itself.

``metrics=`` takes one metric, a list, or a dict ``{name: metric}`` to choose the column names.
"""
from __future__ import annotations

import functools
import numbers
import re

import torch

from .checks import short_repr

__all__ = ['accuracy', 'error_rate', 'accuracy_multi', 'better_mode', 'is_accumulated', 'metric_name', 'check_metrics',
           'NamedMetric', 'metric_value', 'RESERVED_COLUMNS']

RESERVED_COLUMNS = ('epoch', 'train_loss', 'valid_loss', 'time')


def accuracy(pred: torch.Tensor, targ: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Fraction of samples whose highest-scoring class is the target: `pred` holds a score per class in its last
    dimension (two or more), `targ` a class index per sample (``pred.shape[:-1]``). Other shapes would give a
    number that looks like an accuracy and is not one (a single logit's argmax is always 0; targets of shape (N, 1)
    broadcast into a comparison of every sample with every other), so they are refused: a single logit or
    multi-label targets take `accuracy_multi`, class probabilities as targets their ``argmax(-1)``. The check reads
    shapes only: no device sync.

    `ignore_index`: targets equal to it are left out, as ``F.cross_entropy`` leaves them out of the loss (padding
    labelled -100 in a tagger's or language model's (batch, time) targets: ``partial(accuracy, ignore_index=-100)``);
    a batch with nothing else gives NaN. Like every metric function it is averaged over the validation set weighted by
    batch size, so a batch with more padding weighs as much as one with less; torchmetrics' ``MulticlassAccuracy(...,
    ignore_index=-100)`` counts every position alike (it takes the classes in dimension 1: ``pred.transpose(1, 2)``)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(targ, torch.Tensor) or pred.dim() == 0 \
            or pred.shape[-1] < 2 or tuple(targ.shape) != tuple(pred.shape[:-1]):
        raise ValueError(f'accuracy: takes class scores pred (..., n_classes >= 2) and class-index targets of '
                         f'pred.shape[:-1], got pred {_shape(pred)} and targ {_shape(targ)}; for one logit per sample '
                         'or multi-label targets (targ shaped as pred) use accuracy_multi; class probabilities as '
                         'targets (one-hot or smoothed) are compared by their argmax(-1)')
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f'accuracy: ignore_index must be an int (a target value to leave out, e.g. -100) or None, got '
                        f'{type(ignore_index).__name__} {ignore_index!r}')
    hit = pred.argmax(dim=-1) == targ
    if ignore_index is None: return hit.float().mean()
    kept = targ != ignore_index
    return (hit & kept).sum() / kept.sum()   # 0 / 0 = NaN where nothing is kept; no sync, unlike hit[kept]


def error_rate(pred: torch.Tensor, targ: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    "1 - accuracy (`ignore_index` as there)."
    return 1 - accuracy(pred, targ, ignore_index)


def accuracy_multi(pred: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True) -> torch.Tensor:
    """Fraction of (sample, label) pairs predicted right when each label is a yes/no of its own: binary
    classification with one logit (``BCEWithLogitsLoss``) and multi-label targets. A label counts as predicted
    when ``sigmoid(pred)`` (`pred` itself with ``sigmoid=False``) exceeds `thresh`; `targ` is shaped as `pred`
    (0/1 or booleans; a binary target vector of shape (N,) also goes with logits of shape (N, 1)). Choose another
    threshold with ``functools.partial(accuracy_multi, thresh=0.3)``."""
    if not isinstance(pred, torch.Tensor) or not isinstance(targ, torch.Tensor):
        raise TypeError(f'accuracy_multi: pred and targ must be tensors, got {type(pred).__name__} and '
                        f'{type(targ).__name__}')
    if targ.shape != pred.shape and pred.shape[-1:] == (1,) and tuple(targ.shape) == tuple(pred.shape[:-1]):
        targ = targ.unsqueeze(-1)
    if targ.shape != pred.shape:
        raise ValueError(f'accuracy_multi: takes one score per label and targets of the same shape, got pred '
                         f'{_shape(pred)} and targ {_shape(targ)}; for class scores with class-index targets use '
                         'accuracy')
    if sigmoid: pred = pred.sigmoid()
    return ((pred > thresh) == targ.bool()).float().mean()


def _shape(t) -> str:
    "A tensor's shape as a tuple for an error message, else the type of what was passed."
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def better_mode(monitor: str) -> str:
    "'min' for a column whose name says lower is better (loss, error, perplexity), else 'max'."
    return 'min' if any(w in monitor for w in ('loss', 'error', 'perplexity')) else 'max'


def is_accumulated(m) -> bool:
    "Whether `m` accumulates over the whole pass (has update/compute/reset) rather than being averaged per batch."
    m = getattr(m, 'metric', m) if isinstance(m, NamedMetric) else m
    return all(callable(getattr(m, a, None)) for a in ('update', 'compute', 'reset'))


def _snake(name: str) -> str:
    "'F1Score' -> 'f1_score', 'BinaryAUROC' -> 'binary_auroc', 'MeanSquaredError' -> 'mean_squared_error'."
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])', '_', name).lower()


def metric_name(m) -> str:
    """The column name of metric `m`: its ``name`` attribute if it has one; a function's ``__name__``
    (a ``functools.partial`` its function's); an accumulating metric object its class name in snake
    case (``F1Score`` -> ``f1_score``); any other callable object its class name."""
    name = getattr(m, 'name', None)
    if isinstance(name, str) and name: return name
    if isinstance(m, functools.partial): return metric_name(m.func)
    if is_accumulated(m): return _snake(type(m).__name__)
    return getattr(m, '__name__', None) or type(m).__name__


class NamedMetric:
    "`metric` under the column name `name` (what a ``{name: metric}`` dict in ``metrics=`` makes)."
    def __init__(self, name: str, metric):
        self.name, self.metric = name, metric

    def __call__(self, *args, **kwargs): return self.metric(*args, **kwargs)
    def update(self, *args, **kwargs): return self.metric.update(*args, **kwargs)
    def compute(self): return self.metric.compute()
    def reset(self): return self.metric.reset()

    def __getattr__(self, name):   # anything else (device, to, ...) is the metric's
        if name.startswith('__') or name == 'metric': raise AttributeError(name)
        return getattr(self.metric, name)

    def __repr__(self): return f'NamedMetric({self.name!r}, {self.metric!r})'


def _expand_collection(m) -> list | None:
    "A torchmetrics MetricCollection as its (name, metric) pairs (names with its prefix/postfix), else None."
    if type(m).__name__ != 'MetricCollection' or not callable(getattr(m, 'items', None)): return None
    return [(k, v) for k, v in m.items(keep_base=False)]


def check_metrics(metrics) -> list:
    """`metrics` as a list: one metric, a list/tuple of them, or a dict {column name: metric}. Each is
    a callable ``metric(pred, *targets)`` or an object with update/compute/reset (torchmetrics); a
    torchmetrics MetricCollection counts as its members. Names must be distinct and must not be
    one of the recorder's own columns. Raises TypeError/ValueError naming the problem."""
    if metrics is None: return []
    if isinstance(metrics, dict):
        items = []
        for k, m in metrics.items():
            if not isinstance(k, str) or not k:
                raise TypeError(f'metrics: the keys of a metrics dict are column names (non-empty str), got {k!r}')
            items.append(NamedMetric(k, m))
    else:
        items = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
    out = []
    for m in items:
        inner = m.metric if isinstance(m, NamedMetric) else m
        coll = _expand_collection(inner)
        if coll is not None:
            prefix = f'{m.name}_' if isinstance(m, NamedMetric) else ''
            out += [NamedMetric(prefix + k, v) for k, v in coll]
            continue
        if not (is_accumulated(inner) or callable(inner)):
            raise TypeError(f'metrics must be callables metric(pred, *targets) or metric objects with update, compute '
                            f'and reset (torchmetrics), got {type(inner).__name__} {inner!r}')
        out.append(m)
    names = [metric_name(m) for m in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f'metrics: two metrics are named {dup[0]!r}; give them distinct column names with a dict, '
                         f"e.g. metrics={{'{dup[0]}_a': ..., '{dup[0]}_b': ...}}")
    clash = [n for n in names if n in RESERVED_COLUMNS]
    if clash:
        raise ValueError(f'metrics: {clash[0]!r} is a column the recorder fills itself '
                         f'({", ".join(RESERVED_COLUMNS)}); name the metric otherwise with a dict')
    return out


def metric_value(m, v) -> torch.Tensor:
    """What metric `m` gave (a batch's value, or ``compute()``'s) as a 0-d tensor: a real number, or a
    one-element real tensor or array. Anything else (a string, None, a list, several values, a complex
    number) is refused with an error naming the metric, on the first batch it happens. No device sync."""
    how = 'computed' if is_accumulated(m) else 'returned'
    if isinstance(v, torch.Tensor): t = v
    elif isinstance(v, numbers.Real): t = torch.tensor(float(v))   # bool, int, float, numpy scalars
    elif hasattr(v, '__array__') and not isinstance(v, (str, bytes)): t = torch.as_tensor(v)   # a numpy array
    else:
        raise TypeError(f'metric {metric_name(m)!r} {how} {type(v).__name__} {short_repr(v)}; a metric gives one '
                        'number per batch (or per pass with compute()): a float or a one-element tensor')
    if t.is_complex():
        raise TypeError(f'metric {metric_name(m)!r} {how} a complex value {short_repr(v)}; the epoch table holds real '
                        'numbers')
    if t.numel() != 1:
        raise ValueError(f'metric {metric_name(m)!r} {how} a tensor of shape {tuple(t.shape)}; the epoch table holds '
                         'one number per metric: reduce it (e.g. .mean(), or average=\'macro\' rather than None)')
    return t.reshape(())
