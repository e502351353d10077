"""Discriminative learning rates and fine-tuning: layer groups, freezing, and the `fine_tune` one-liner.

A pretrained body needs smaller steps than a freshly initialised head, so parameters are split into
layer groups (one optimizer param group each, body first, head last) and a learning rate given as
``slice(lo, hi)`` is spread geometrically from the first group (lo) to the last (hi); see
:func:`onecycle.hyper.lr_range`. Freezing groups sets ``requires_grad=False`` on their parameters:
they get no gradient, so no torch optimizer moves them (momentum and Adam state included) and the
decoupled weight decay skips them too. Normalization layers stay trainable by default, since their
statistics and affine weights must adapt to the new data.

Splitters are small picklable classes called as ``splitter(model) -> list of parameter lists``;
pass one as ``Learner(splitter=...)``.
"""
from __future__ import annotations


from torch import nn

from ..core.checks import check_int
from ..core.hyper import NORM_TYPES

__all__ = ['split_by_children', 'split_by_modules', 'split_head', 'norm_param_ids', 'freeze_to', 'freeze',
           'unfreeze', 'frozen_groups']


def _trainable_children(model):
    kids = [m for m in model.children() if any(True for _ in m.parameters())]
    own = list(model.parameters(recurse=False))
    return kids, own


def _params_of(modules):
    seen, out = set(), []
    for m in modules:
        for p in (m.parameters() if isinstance(m, nn.Module) else [m]):
            if id(p) not in seen: seen.add(id(p)); out.append(p)
    return out


class split_by_children:
    """Split the model's direct children (those with parameters) into `n_groups` contiguous layer
    groups, in definition order. Earlier groups take the extra children when they do not divide
    evenly, so the last group (the head) is the smallest. Parameters registered on the model itself
    go to the last group."""
    def __init__(self, n_groups: int = 2):
        self.n_groups = check_int('n_groups', n_groups, min_value=1)

    def __call__(self, model):
        kids, own = _trainable_children(model)
        if len(kids) < self.n_groups:
            raise ValueError(f'split_by_children: n_groups={self.n_groups} but {type(model).__name__} has only '
                             f'{len(kids)} children with parameters')
        q, r = divmod(len(kids), self.n_groups)
        groups, i = [], 0
        for g in range(self.n_groups):
            n = q + (1 if g < r else 0)
            groups.append(_params_of(kids[i:i + n])); i += n
        groups[-1] += own
        return groups

    def __repr__(self):
        return f'split_by_children(n_groups={self.n_groups})'


class split_head:
    """Two layer groups: the body (all children but the last `n_head`) and the head (the last
    `n_head` children with parameters). The usual splitter for fine-tuning."""
    def __init__(self, n_head: int = 1):
        self.n_head = check_int('n_head', n_head, min_value=1)

    def __call__(self, model):
        kids, own = _trainable_children(model)
        if len(kids) <= self.n_head:
            raise ValueError(f'split_head: n_head={self.n_head} needs more than {self.n_head} children with '
                             f'parameters, {type(model).__name__} has {len(kids)}')
        return [_params_of(kids[:-self.n_head]), _params_of(kids[-self.n_head:]) + own]

    def __repr__(self):
        return f'split_head(n_head={self.n_head})'


class split_by_modules:
    """One layer group per argument, in the order given. Each argument names a submodule
    (``'conv1'``, ``'encoder.layer.3'``), is a module, or is a list of those (merged into one group).
    Every parameter of the model must land in some group; leftovers raise a ValueError naming them,
    since a parameter outside the optimizer would silently never train.

        Learner(model, dls, loss, splitter=split_by_modules(['conv1', 'conv2'], 'conv3', 'linear'))
    """
    def __init__(self, *groups):
        if not groups: raise ValueError('split_by_modules needs at least one group (a module name, a module or a list)')
        for g in groups:
            for m in (g if isinstance(g, (list, tuple)) else [g]):
                if not isinstance(m, (str, nn.Module)):
                    raise TypeError(f'split_by_modules: each group is a module name, a module or a list of them, '
                                    f'got {type(m).__name__} {m!r}')
        self.groups = groups

    def _resolve(self, model, m):
        if isinstance(m, nn.Module): return m
        try: return model.get_submodule(m)
        except AttributeError:
            names = [n for n, _ in model.named_children()]
            raise ValueError(f'split_by_modules: {type(model).__name__} has no submodule {m!r} '
                             f'(its children: {names})') from None

    def __call__(self, model):
        out, seen = [], set()
        for g in self.groups:
            ps = [p for p in _params_of([self._resolve(model, m) for m in (g if isinstance(g, (list, tuple)) else [g])])
                  if id(p) not in seen]
            if not ps:
                raise ValueError(f'split_by_modules: group {g!r} has no parameters not already in an earlier group')
            seen.update(id(p) for p in ps); out.append(ps)
        left = [n for n, p in model.named_parameters() if id(p) not in seen]
        if left: raise ValueError(f'split_by_modules: parameters in no group (they would never train): {left}')
        return out

    def __repr__(self):
        return f"split_by_modules({', '.join(map(repr, self.groups))})"


def norm_param_ids(model: nn.Module) -> set[int]:
    "ids of the parameters of normalization layers (BatchNorm, GroupNorm, LayerNorm, ...)."
    return {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}


def freeze_to(learn, n: int, train_norm: bool = True):
    """Freeze the first `n` layer groups (param groups) and unfreeze the rest; negative `n` counts from
    the end, so ``freeze_to(learn, -1)`` freezes all but the head. Frozen parameters get
    ``requires_grad=False`` and lose any gradient they held; with `train_norm` the parameters of
    normalization layers stay trainable everywhere."""
    G = len(learn.opt.param_groups)
    check_int('n', n)
    if not -G <= n <= G: raise ValueError(f'n must be in [-{G}, {G}] for a learner with {G} param groups, got {n}')
    n = n % G if n < 0 else n
    keep = norm_param_ids(learn.model) if train_norm else set()
    plan = [(p, i >= n or id(p) in keep) for i, pg in enumerate(learn.opt.param_groups) for p in pg['params']]
    if not any(trainable for _, trainable in plan):
        raise ValueError(f'freeze_to(n={n}) would leave no trainable parameter (the learner has {G} param groups '
                         'and no normalization layer stays trainable)')
    for p, trainable in plan:
        p.requires_grad_(trainable)
        if not trainable: p.grad = None


def freeze(learn, train_norm: bool = True):
    """Freeze every layer group but the last (the head). Needs at least two param groups: build the
    Learner with a splitter, e.g. ``splitter=split_head()``."""
    if len(learn.opt.param_groups) < 2:
        raise ValueError('freeze needs at least two param groups (body and head) but the learner has one: '
                         'give the Learner a splitter, e.g. Learner(..., splitter=split_head())')
    freeze_to(learn, -1, train_norm)


def unfreeze(learn):
    "Make every parameter in the optimizer trainable again."
    freeze_to(learn, 0)


def frozen_groups(learn) -> list[bool]:
    "Per param group: True when none of its parameters (normalization layers aside) require a gradient."
    keep = norm_param_ids(learn.model)
    out = []
    for pg in learn.opt.param_groups:
        ps = [p for p in pg['params'] if id(p) not in keep] or pg['params']
        out.append(not any(p.requires_grad for p in ps))
    return out


