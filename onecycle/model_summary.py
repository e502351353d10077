"""``learn.summary()``: the model's layers with their output shapes and parameter counts (trainable and
frozen), from one forward pass on one batch. torchinfo's table when it is installed (the ``summary``
extra); without it, onecycle's own, built with forward hooks."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch

from .core.checks import check_bool
from .core.data import call_model, split_batch, to_device

__all__ = ['ModelSummary', 'summary']


def _shape(o) -> str:
    "Output shapes: [16, 2] for a tensor; tuples and dicts (a Hugging Face output) show each tensor's."
    if isinstance(o, torch.Tensor): return str(list(o.shape))
    if isinstance(o, dict):
        return '{' + ', '.join(f'{k}: {_shape(v)}' for k, v in o.items() if _shape(v) != '-') + '}'
    if isinstance(o, (list, tuple)):
        parts = [s for s in (_shape(v) for v in o) if s != '-']
        return ', '.join(parts) if parts else '-'
    return '-'


def _trainable(params):
    "True, False, 'partly', or None for a layer without parameters."
    if not params: return None
    flags = {p.requires_grad for p in params}
    return flags.pop() if len(flags) == 1 else 'partly'


def _count(params) -> tuple[int, int]:
    "(all, trainable) elements of `params`."
    params = list(params)
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


@dataclass
class ModelSummary:
    """The layers a forward pass ran, in call order: ``rows`` of dicts with ``name``, ``type``,
    ``output_shape``, ``params`` (the layer's own, counted at its first call only) and ``trainable``
    (True, False or 'partly'); then ``total_params``, ``trainable_params`` and ``frozen_params`` over the
    whole model (layers the pass never ran included). ``str()`` is the table."""
    rows: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    frozen_params: int = 0
    input_shapes: str = ''
    footer: list = field(default_factory=list)

    def __str__(self):
        head = ('Layer (type)', 'Output shape', 'Params', 'Trainable')
        yes = {True: 'yes', False: 'no (frozen)', 'partly': 'partly', None: ''}
        body = [(f'{r["name"]} ({r["type"]})', r['output_shape'], f'{r["params"]:,}' if r['params'] else '',
                 yes[r['trainable']]) for r in self.rows]
        w = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
        line = lambda x: '  '.join(v.ljust(w[i]) if i != 2 else v.rjust(w[i]) for i, v in enumerate(x)).rstrip()
        rule = '=' * len(line(tuple('-' * n for n in w)))
        out = [f'Input: {self.input_shapes}', rule, line(head), rule, *map(line, body), rule,
               f'Total params: {self.total_params:,}', f'Trainable params: {self.trainable_params:,}',
               f'Frozen params: {self.frozen_params:,}', *self.footer]
        return '\n'.join(out)

    __repr__ = __str__


def _first_batch(learn):
    for dl in (learn.dls.train, learn.dls.valid):
        if dl is not None:
            for b in dl: return b
    raise ValueError('the learner has no batch to run the model on (both loaders are None or empty): pass batch=')


def summary(learn, batch=None, use_torchinfo=None):
    """The model's layers, their output shapes and parameter counts, trainable and frozen, from one forward
    pass (in eval mode, without gradients; the model's mode is put back) on `batch` (as a loader gives it;
    by default the first training batch).

    With torchinfo installed (``pip install onecycle[summary]``) this is ``torchinfo.summary``'s table
    (its ``ModelStatistics``); otherwise, or with ``use_torchinfo=False``, onecycle's own
    :class:`ModelSummary`, built with forward hooks. ``use_torchinfo=True`` requires torchinfo.
    Print the result, or let a notebook show it."""
    if use_torchinfo is not None: check_bool('use_torchinfo', use_torchinfo)
    has = importlib.util.find_spec('torchinfo') is not None
    if use_torchinfo and not has:
        raise ImportError('use_torchinfo=True needs torchinfo: pip install torchinfo (or onecycle[summary])')
    b = to_device(_first_batch(learn) if batch is None else batch, learn.device)
    xb, _ = split_batch(b, learn.n_inp)
    model = learn.model
    if has and use_torchinfo is not False: return _torchinfo(model, xb, learn.device)
    return _own(learn, model, xb)


def _torchinfo(model, xb, device):
    import torchinfo
    was_training = model.training
    data = xb[0] if len(xb) == 1 and isinstance(xb[0], dict) else list(xb)
    try:
        return torchinfo.summary(model, input_data=data, device=device, verbose=0, mode='eval',
                                 col_names=('output_size', 'num_params', 'trainable'),
                                 row_settings=('var_names',))
    finally: model.train(was_training)


def _own(learn, model, xb) -> ModelSummary:
    rows, seen, hooks = [], set(), []

    def hook(name):
        def record(module, args, output):
            own = list(module.parameters(recurse=False))
            first = id(module) not in seen
            seen.add(id(module))
            n, n_train = _count(own) if first else (0, 0)
            trainable = _trainable(own)
            rows.append({'name': name, 'type': type(module).__name__, 'output_shape': _shape(output),
                         'params': n, 'trainable': trainable})
        return record

    for name, m in model.named_modules():
        # the layers that do the work: leaves, and containers with parameters of their own
        if name and (not any(True for _ in m.children()) or any(True for _ in m.parameters(recurse=False))):
            hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(): out = call_model(model, xb)
    finally:
        model.train(was_training)
        for h in hooks: h.remove()
    total, trainable = _count(model.parameters())
    n_groups = len(learn.opt.param_groups)
    footer = [f'Output: {_shape(out)}',
              f'Optimizer: {type(learn.opt).__name__}, {n_groups} param group{"s" * (n_groups != 1)}; '
              f'loss: {_loss_name(learn.loss_func)}']
    return ModelSummary(rows, total, trainable, total - trainable, _shape(xb), footer)


def _loss_name(f) -> str:
    if f is None: return "the model's own (loss_func=None)"
    return getattr(f, '__name__', None) or type(f).__name__
