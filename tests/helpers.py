"""Helpers several test modules and torchrun scripts share: bitwise comparison of nested states, a callback
that stops a fit, a metric that reads a script, and a small two-class problem."""
import torch

from onecycle import Callback, CancelFitException


def same(a, b) -> bool:
    "Nested dicts, lists and tuples of tensors and values, equal bitwise (NaN equal to NaN)."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a: return b != b
    return a is b or a == b


def stop_after(n):
    "A callback that cancels the fit after its `n`-th training batch (counted over epochs)."
    class Stop(Callback):
        order = 100
        seen = 0
        def after_batch(self):
            if self.learn.training:
                self.seen += 1
                if self.seen == n: raise CancelFitException()
    return Stop()


class ScriptedMetric:
    "A metric object whose value at epoch e is values[e], whatever the model does (set `.learn` first)."
    def __init__(self, values): self.values, self.learn = list(values), None
    def reset(self): pass
    def update(self, pred, y): pass
    def compute(self): return self.values[self.learn.epoch]


def two_class_arrays(n_train, n_valid, n_in):
    "A linearly separable two-class problem, the same in every process: x, y, x_valid, y_valid."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_valid, n_in, generator=g)
    y = (x @ torch.randn(n_in, generator=g) > 0).long()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
