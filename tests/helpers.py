"""Helpers several test modules and torchrun scripts share: bitwise comparison of nested states, a callback
that stops a fit, a metric that reads a script, a small two-class problem, a learner with nothing to learn, and
plain CNNs on the 8x8 digits."""
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


def plain_cnn_digits(pool=False):
    """scikit-learn's 8x8 digits as images (shuffled with seed 1) and a factory of a plain CNN for them (no
    normalization layers): two 3x3 convolutions, the second strided, or with `pool` two with max-pooling."""
    from sklearn.datasets import load_digits
    from torch import nn
    d = load_digits()
    x, y = torch.tensor(d.images / 16., dtype=torch.float32)[:, None], torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    if pool:
        net = lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Flatten(), nn.Linear(32 * 4, 10))
    else:
        net = lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
                                    nn.Flatten(), nn.Linear(32 * 16, 10))
    return net, x[perm], y[perm]


def no_signal_learner(model):
    "A Learner (SGD) of `model` on random labels: its sweep's loss stays flat but for noise until it blows up."
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from onecycle import Learner
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4096, 8, generator=g), torch.randint(0, 2, (4096,), generator=g)
    dls = (DataLoader(TensorDataset(x[:4000], y[:4000]), batch_size=16),
           DataLoader(TensorDataset(x[4000:], y[4000:]), batch_size=32))
    return Learner(model, dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, progress=False, device='cpu')
