"""Helpers several test modules share: bitwise comparison of nested states, and a callback that stops a fit."""
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
