"""Helpers several test modules and torchrun scripts share: bitwise comparison of nested states, a callback
that stops a fit, a metric that reads a script, a small two-class problem, a learner with nothing to learn,
plain CNNs on the 8x8 digits, a learner's state before and after (bitwise), a spy on the momentum each step ran
at, and learners that all start from the same weights, with their fits' accuracy."""
import torch
from torch import nn

from onecycle import Callback, CancelFitException, fit_one_cycle


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


def no_signal_learner(model, bs=16):
    "A Learner (SGD, batch `bs`) of `model` on random labels: its sweep's loss stays flat until it blows up."
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from onecycle import Learner
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4096, 8, generator=g), torch.randint(0, 2, (4096,), generator=g)
    dls = (DataLoader(TensorDataset(x[:4000], y[:4000]), batch_size=bs),
           DataLoader(TensorDataset(x[4000:], y[4000:]), batch_size=32))
    return Learner(model, dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, progress=False, device='cpu')


def learner_snapshot(learn):
    "Clones of every tensor in the model and optimizer, the param groups' hyper-parameters, and the history."
    clone = lambda o: o.detach().clone() if isinstance(o, torch.Tensor) else o
    opt_sd = learn.opt.state_dict()
    return dict(
        model={k: v.clone() for k, v in learn.model.state_dict().items()},
        opt_state={i: {k: clone(v) for k, v in s.items()} for i, s in opt_sd['state'].items()},
        groups=[{k: v for k, v in pg.items() if k != 'params'} for pg in learn.opt.param_groups],
        lrs=list(learn.recorder.lrs), moms=list(learn.recorder.moms), losses=list(learn.recorder.losses),
        epochs=[dict(e) for e in learn.recorder.epochs], cbs=list(learn.cbs))


def assert_learner_unchanged(before, after):
    "Every tensor, hyper-parameter and history entry of two learner_snapshot()s the same, bitwise."
    assert before['model'].keys() == after['model'].keys()
    for k, v in before['model'].items():
        assert v.dtype == after['model'][k].dtype and torch.equal(v, after['model'][k]), f'model tensor {k} changed'
    assert before['opt_state'].keys() == after['opt_state'].keys()
    for i, s in before['opt_state'].items():
        assert s.keys() == after['opt_state'][i].keys()
        for k, v in s.items():
            w = after['opt_state'][i][k]
            if isinstance(v, torch.Tensor): assert torch.equal(v, w), f'optimizer state {i}.{k} changed'
            else: assert v == w
    assert before['groups'] == after['groups']
    for k in ('lrs', 'moms', 'losses', 'epochs', 'cbs'): assert before[k] == after[k], f'{k} changed'


class SeeMoms:
    "Records every param group's momentum at each optimizer step of the fits that run while attached."
    def __init__(self, learn):
        from onecycle.core.callback import Callback
        from onecycle.core.hyper import get_hyper
        self.steps = []
        # before the step: a fit that a callback cancels in after_step (the sweep, a probe) still counts its last one
        spy = type('Spy', (Callback,), {'order': 100, 'before_step': lambda cb: self.steps.append(
            tuple(get_hyper(pg, 'mom') for pg in cb.learn.opt.param_groups))})()
        learn.add_cb(spy)


def final_accuracy(make, n_epoch, max_lr, **kw):
    "The last epoch's accuracy of a 1cycle fit of a learner fresh from `make`."
    learn = make()
    fit_one_cycle(learn, n_epoch, max_lr, **kw)
    return learn.recorder.epochs[-1]['accuracy']


def learners_from_init(model_fn, x, y, n_test, bs, seed, opt_func=torch.optim.AdamW):
    "A factory of Learners that all start from the same weights (drawn from `seed`) and the same data order."
    from onecycle import Learner, accuracy
    from onecycle.data import tensor_dls
    torch.manual_seed(seed)
    init = model_fn().state_dict()
    def make():
        model = model_fn()
        model.load_state_dict(init)
        return Learner(model, tensor_dls(x[n_test:], y[n_test:], x[:n_test], y[:n_test], bs=bs, seed=seed),
                       nn.CrossEntropyLoss(), opt_func=opt_func, metrics=[accuracy], progress=False, device='cpu')
    return make


class TokenEncoder(nn.Module):
    """The tiny task's 8 inputs (conftest's make_dls) mapped to 4 tokens of width 8, a TransformerEncoderLayer, a
    LayerNorm, a head: a net with attention that is also normalized (core.hyper.is_normalized)."""
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Linear(8, 32), nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 2))
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0., batch_first=True)

    def forward(self, x): return self.head(self.layer(self.embed(x).view(-1, 4, 8)).mean(1))
