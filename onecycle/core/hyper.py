"""One vocabulary for optimizer hyper-parameters, whatever the torch optimizer calls them.

Schedules speak of ``lr``, ``mom``, ``wd``, ``beta2`` and ``eps``. SGD and RMSprop keep momentum in
``momentum``, Adam-like optimizers in ``betas[0]``; ``wd`` is the decoupled weight decay this
library applies itself (p <- p - lr*wd*p) so that it means the same for every optimizer.
Any other name is read and written as the param-group key of that name.
"""
from __future__ import annotations

import functools
import inspect
import math

import torch

from .checks import check_choice, check_positive
from .dist import collective_device, is_distributed, sum_over_ranks

__all__ = ['get_hyper', 'set_hyper', 'hyper_getter', 'hyper_setter', 'has_hyper', 'DecoupledWeightDecay',
           'is_no_decay_param', 'is_normalized', 'has_attention', 'is_adaptive', 'caps_own_step', 'weight_scale',
           'lr_range', 'scale_lr', 'has_weight_decay', 'fit_wd', 'fallback_wd', 'untouched_weight_decay',
           'DEFAULT_WD', 'ADAPTIVE_PLAIN_WD', 'has_convolution', 'has_recurrence', 'steps_with_gradient',
           'keeps_running_rms', 'sums_squared_gradients', 'divides_by_running_max', 'is_regression_loss']

WD_KEY = 'wd'   # our key in each param group; torch ignores keys it does not know and saves them


def _mom_key(pg, required=False):
    if 'momentum' in pg: return 'momentum', None
    if 'betas' in pg: return 'betas', 0
    if required: raise KeyError(f"this optimizer has no momentum (param group keys: {sorted(pg)})")
    return None, None


def has_hyper(pg: dict, name: str) -> bool:
    if name == 'mom': return _mom_key(pg)[0] is not None
    if name == 'beta2': return 'betas' in pg
    if name == WD_KEY: return True
    return name in pg


def get_hyper(pg: dict, name: str) -> float:
    "Value of hyper-parameter `name` in param group `pg` (see module docstring for the names)."
    return hyper_getter(pg, name)(pg)


def set_hyper(pg: dict, name: str, value: float) -> None:
    "Set hyper-parameter `name` of param group `pg` to `value`."
    hyper_setter(pg, name)(pg, value)


def hyper_getter(pg: dict, name: str):
    """``get(pg) -> value`` for `name`, specialised once to this optimizer's key layout (as `pg` shows
    it), so that reading it at every step costs a dict lookup rather than a search of the keys."""
    if name == 'mom':
        key, idx = _mom_key(pg, required=True)
        return (lambda g: g[key]) if idx is None else (lambda g: g[key][idx])
    if name == 'beta2': return lambda g: g['betas'][1]
    if name == WD_KEY: return lambda g: g.get(WD_KEY, 0.)
    return lambda g: g[name]


def hyper_setter(pg: dict, name: str):
    "``set(pg, value)`` for `name`, specialised like hyper_getter; same effect as set_hyper."
    if name == 'mom':
        key, idx = _mom_key(pg, required=True)
        if idx is None: return lambda g, v: g.__setitem__(key, float(v))
        return lambda g, v: g.__setitem__(key, (float(v), *g[key][1:]))
    if name == 'beta2': return lambda g, v: g.__setitem__('betas', (g['betas'][0], float(v)))
    if name == 'lr' and isinstance(pg.get('lr'), torch.Tensor): return lambda g, v: g['lr'].fill_(float(v))
    return lambda g, v: g.__setitem__(name, float(v))


def hyper_state(opt) -> list[dict]:
    "Every param group's settings (all keys but 'params'), to put back with restore_hyper_state."
    return [{k: v for k, v in pg.items() if k != 'params'} for pg in opt.param_groups]


def restore_hyper_state(opt, state: list[dict]) -> None:
    "Put `opt`'s param-group settings back to `state`, dropping keys added since."
    for pg, saved in zip(opt.param_groups, state):
        for k in [k for k in pg if k != 'params' and k not in saved]: del pg[k]
        pg.update(saved)


def is_adaptive(opt) -> bool:
    "True for Adam-like optimizers (they keep ``betas``): each step is scaled per parameter, about lr in size."
    return opt is not None and all('betas' in pg for pg in opt.param_groups)


# The decoupled weight decay the fit_* one-liners use when neither the call, the learner nor the optimizer sets
# one: that of fastai's default optimizer (its Adam) and of torch's AdamW. PyTorch's SGD and Adam default to none:
# on eighteen SGD problems of bench/recommend.py and bench/suggest_unseen.py (against their max_lr x wd grids) the
# one-liner without it lost 2.4-25 points more on four (an LSTM and a GRU whose long fits broke at its lr, two
# CNNs); with it, it lost 1.0 and 1.8 on two MNIST-1D nets and at most 0.5 on the twelve others. Decay keeps the
# weights small, and with them the lr a long fit survives.
DEFAULT_WD = 1e-2
# Adam-like optimizers on plain models (no normalization layer, no attention, no convolution) take ten times that:
# Smith's shallow-net value in Adam's units, tune's default there too (``tuning.search.default_wds``). On the max_lr x
# wd grids of bench/recommend.py and bench/suggest_unseen.py, 0.1 widened the lrs such a net's long fit survives on 8
# of the 11 such nets there (by 2-61 points at the top rungs, where the one-liner's suggestion sits: MLPs collapsed
# there at 0.01, GRUs and LSTMs lost 2-9 points; the other three within 0.8); on normalized nets and transformers it
# narrowed them (a transformer at 0.064: -5.2), and on plain CNNs it did not hold (a dilated 1-D CNN lost 1-2 points
# at every rung from S/4 up, the MNIST-1D CNN 6.9 at the top one), so there 0.01 stays. One-liners with 0.1 in place
# of 0.01 at the same S: +9.4 points summed over 21 such nets of both benches at batches of 32 and more (the largest
# loss 0.32), +2.1 over six below 32, +2.6 over five made after the rule (a GRU under NAdam -1.3); CNNs lost up to 1.1
# at 32 and more, 4.4 and 6.7 below.
ADAPTIVE_PLAIN_WD = 1e-1


def steps_with_gradient(opt) -> bool:
    """True for optimizers whose step is the lr times the (momentum-averaged) gradient, not divided by a running
    measure of its size: torch's SGD, with or without momentum or Nesterov, and its kin. Their param groups keep
    neither ``betas`` nor ``eps``, which every optimizer that divides by such a measure keeps against a division by
    zero (Adam's kin, RMSprop, Adagrad, Adadelta, Adafactor). Their step grows with the gradient, and so with the
    inputs' scale."""
    return opt is not None and not any('betas' in pg or 'eps' in pg for pg in opt.param_groups)


def keeps_running_rms(opt) -> bool:
    """True for RMSprop and its kin: each step is the gradient over the root of a running average of its square
    (decay ``alpha``, no bias correction), without Adam's momentum average of the gradient (no ``betas``). Every
    step then moves each weight by about the lr, noise and all."""
    return opt is not None and all('alpha' in pg and 'eps' in pg and 'betas' not in pg for pg in opt.param_groups)


def sums_squared_gradients(opt) -> bool:
    """True for Adagrad and its kin: each step is the gradient over the root of the sum of all its squares so far
    (param groups with ``initial_accumulator_value``), so the first step moves every weight by about the lr and later
    ones by less and less, about the lr over the root of the steps taken."""
    return opt is not None and all('initial_accumulator_value' in pg for pg in opt.param_groups)


def divides_by_running_max(opt) -> bool:
    """True for torch's Adamax: Adam's kin (it keeps ``betas``) that divides each step by a running maximum of the
    gradient's size (its infinity norm, decayed by beta2 per step) instead of the root of a running mean square. The
    largest of a few hundred noisy gradients lies well above their root mean square, so a step moves a weight by a
    fraction of the lr. Its param groups keep the same keys as Adam's, so the class tells it apart."""
    return isinstance(opt, torch.optim.Adamax)


def caps_own_step(opt) -> bool:
    """True for optimizers that cap their own step whatever the lr: torch's Adafactor (it keeps ``beta2_decay``)
    takes min(lr, 1/sqrt(step)) as its relative step, so at step t an lr above 1/sqrt(t) acts as 1/sqrt(t)."""
    return opt is not None and all('beta2_decay' in pg for pg in opt.param_groups)


def has_weight_decay(opt) -> bool:
    "True when some param group of `opt` decays its weights: the optimizer's own `weight_decay`, or ours."
    return any(pg.get('weight_decay', 0) or pg.get(WD_KEY, 0) for pg in opt.param_groups)


def untouched_weight_decay(opt) -> bool:
    """True when `opt`'s own ``weight_decay`` is, in every param group, the value its class defaults to (torch's
    AdamW: 0.01): nobody chose it, so a one-liner may choose in its place."""
    try: default = inspect.signature(type(opt).__init__).parameters['weight_decay'].default
    except (KeyError, TypeError, ValueError): return False   # no such argument, or no signature to read
    return default is not inspect.Parameter.empty and all(pg.get('weight_decay') == default for pg in opt.param_groups)


def fallback_wd(model: torch.nn.Module, opt) -> float:
    """The decoupled weight decay a one-liner fits with when nobody set one: ``ADAPTIVE_PLAIN_WD`` for an
    Adam-like `opt` on a `model` without normalization layers, attention or convolutions (MLPs, recurrent
    nets, embeddings); else ``DEFAULT_WD``."""
    plain = not is_normalized(model) and not has_attention(model) and not has_convolution(model)
    return ADAPTIVE_PLAIN_WD if is_adaptive(opt) and plain else DEFAULT_WD


def fit_wd(learn, wd=None):
    """The weight decay a one-liner (fit_one_cycle, the other fit_*, tune's trials) fits `learn` with:
    `wd` when given; None (keep what is set) when the learner (``Learner(wd=...)``, ``set_wd``) or a
    `weight_decay` someone gave the optimizer decays the weights; else ``fallback_wd`` (which replaces an
    optimizer's untouched own decay, AdamW's 0.01, only where it differs from it)."""
    if wd is not None or getattr(learn, 'wd', None) is not None: return wd
    groups = learn.opt.param_groups
    if any(pg.get(WD_KEY, 0) for pg in groups): return None   # ours, set by hand (``set_hyper('wd', ...)``)
    default = fallback_wd(learn.model, learn.opt)
    own = {pg.get('weight_decay', 0) for pg in groups}
    if own == {0} or untouched_weight_decay(learn.opt) and own != {default}: return default
    return None


def opt_params(opt, with_grad=False) -> list:
    "The parameters of all of `opt`'s param groups, in order; with `with_grad`, only those with a gradient."
    return [p for pg in opt.param_groups for p in pg['params'] if not with_grad or p.grad is not None]


NORM_TYPES = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.LocalResponseNorm)


WEIGHT_LAYER_TYPES = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)


def is_normalized(model: torch.nn.Module) -> bool:
    """True when `model` has a normalization layer (batch, layer, group... norm) for every two weight
    layers (convolutions, linear layers) or more, as BatchNorm CNNs and pre-norm residual nets do.
    Their weights are mostly scale-invariant: a weight that grows under a large lr shrinks its own
    effective step, so a long SGD fit steadies itself the way Adam's per-parameter scaling does."""
    weights = sum(isinstance(m, WEIGHT_LAYER_TYPES) for m in model.modules())
    norms = sum(isinstance(m, NORM_TYPES) for m in model.modules())
    return weights > 0 and 2 * norms >= weights


def has_convolution(model: torch.nn.Module) -> bool:
    "True when `model` has a convolution (1-, 2- or 3-D, transposed ones too)."
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())


def has_attention(model: torch.nn.Module) -> bool:
    """True when `model` has an attention layer: ``nn.MultiheadAttention`` (inside PyTorch's transformer layers)
    or a module whose class name says 'Attention' (Hugging Face's and timm's blocks). Attention logits grow
    with the product of two weight matrices, which a long run at a high lr inflates step after step whatever
    the optimizer: Adam's per-parameter scaling does not hold a transformer's fit at the range test's edge."""
    return any(isinstance(m, torch.nn.MultiheadAttention) or 'Attention' in type(m).__name__
               for m in model.modules())


def has_recurrence(model: torch.nn.Module) -> bool:
    """True when `model` has a recurrent layer (``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` or one of their cells), which
    BatchNorm does not suit."""
    return any(isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase)) for m in model.modules())


def has_dropout(model: torch.nn.Module) -> bool:
    """True when `model` has a dropout layer that drops something (``nn.Dropout`` and its 1-3-D and alpha kinds,
    p > 0): its training batches' losses are noisy draws of masks as well as of samples."""
    return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


# the losses of a regression, as functions (torch.nn.functional's, or functools.partial of one) or modules
REGRESSION_LOSS_FUNCTIONS = (torch.nn.functional.mse_loss, torch.nn.functional.l1_loss,
                             torch.nn.functional.smooth_l1_loss, torch.nn.functional.huber_loss)
REGRESSION_LOSS_TYPES = (torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.SmoothL1Loss, torch.nn.HuberLoss)


def is_regression_loss(loss_func) -> bool:
    """True when `loss_func` is PyTorch's mean squared, absolute, smooth L1 or Huber loss (the function, a
    ``functools.partial`` of it, or the module): a regression's. Its loss under SGD falls and rises with the noise
    of the steps more than a classifier's does, which the range test's rules read differently (see
    :func:`~onecycle.tuning.suggest.exposure_exponent`). A loss written by hand is not recognized."""
    while isinstance(loss_func, functools.partial): loss_func = loss_func.func
    return isinstance(loss_func, REGRESSION_LOSS_TYPES) or any(loss_func is f for f in REGRESSION_LOSS_FUNCTIONS)


def weight_scale(model: torch.nn.Module) -> float | None:
    """The typical size of `model`'s weights: the median over its trainable weight tensors (two dimensions or
    more: matrices, convolution kernels, embeddings; not biases or norm scales) of each one's root mean
    square, tensors that are all zero left out. An Adam-like step moves every weight by about the lr, whatever
    its gradient's scale, so this is the scale an Adam lr is measured against. None when there is no such
    tensor. Sharded (FSDP2) tensors count whole: every rank gets the same value (a collective under torchrun)."""
    sq, n = [], []
    for p in model.parameters():
        if not p.requires_grad or p.dim() < 2: continue
        local = p.to_local() if hasattr(p, 'to_local') else p   # a DTensor's shard on this rank
        sq.append(local.detach().abs().float().pow(2).sum().cpu()); n.append(float(local.numel()))   # |z| if complex
    if not sq: return None
    both, _ = sum_over_ranks(torch.cat([torch.stack(sq).double(), torch.tensor(n, dtype=torch.float64)]), 0,
                             device=collective_device() if is_distributed() else None)
    both = both.cpu()
    sq, n = both[:len(sq)], both[len(sq):]
    rms = sorted(math.sqrt(s / c) for s, c in zip(sq.tolist(), n.tolist()) if c > 0 and s > 0)
    if not rms: return None
    mid = len(rms) // 2
    return rms[mid] if len(rms) % 2 else math.sqrt(rms[mid - 1] * rms[mid])


def is_no_decay_param(model: torch.nn.Module) -> set[int]:
    "ids of the parameters conventionally exempt from weight decay: biases and normalization weights."
    ids = set()
    for m in model.modules():
        for n, p in m.named_parameters(recurse=False):
            if isinstance(m, NORM_TYPES) or n == 'bias' or n.endswith('_bias'): ids.add(id(p))
    return ids


class DecoupledWeightDecay:
    """Applies p <- p * (1 - lr*wd) to each param group's parameters just before the optimizer steps.

    It runs as a step pre-hook of the torch optimizer, so a step skipped by a GradScaler (inf/NaN
    gradients) decays nothing either. Parameters without a gradient (frozen, unused) are left alone,
    and so are those in `exempt` (ids), e.g. biases and normalization weights.
    """
    def __init__(self, opt: torch.optim.Optimizer, exempt: set[int] = frozenset()):
        self.exempt = set(exempt)
        self.handle = opt.register_step_pre_hook(self)

    @torch.no_grad()   # pre-hooks run outside the optimizer's own no_grad
    def __call__(self, opt, args, kwargs):
        # Fused optimizers skip inf/NaN steps on the device: a GradScaler calls their step anyway,
        # with `found_inf` (1. to skip) set on them, so the decay is scaled by 1 - found_inf.
        found_inf = getattr(opt, 'found_inf', None)
        for pg in opt.param_groups:
            wd = pg.get(WD_KEY, 0.)
            if not wd: continue
            ps = [p for p in pg['params'] if p.grad is not None and id(p) not in self.exempt]
            if not ps: continue
            decay = float(pg['lr']) * wd
            if isinstance(found_inf, torch.Tensor):
                torch._foreach_mul_(ps, 1. - decay * (1. - found_inf.to(ps[0].device)))
            else: torch._foreach_mul_(ps, 1. - decay)

    def remove(self):
        self.handle.remove()


def lr_range(lr, n_groups: int) -> list[float]:
    """Expand `lr` to one value per param group.

    A number applies to all groups; a sequence gives one per group; ``slice(hi)`` gives ``hi`` to the
    last group and ``hi/10`` to the others; ``slice(lo, hi)`` spreads geometrically from lo to hi.
    """
    if isinstance(lr, slice):
        lo, hi = lr.start, lr.stop
        if hi is None: raise ValueError(f'lr slice needs a stop (the top learning rate), got {lr}')
        if lo is None: vals = [hi / 10] * (n_groups - 1) + [hi]
        elif n_groups == 1: vals = [hi]
        else:
            step = (math.log(hi) - math.log(lo)) / (n_groups - 1)
            vals = [math.exp(math.log(lo) + i * step) for i in range(n_groups)]
    elif isinstance(lr, (list, tuple)):
        if len(lr) != n_groups:
            raise ValueError(f'got {len(lr)} learning rates for {n_groups} param groups; give one per group')
        vals = [float(v) for v in lr]
    else:
        vals = [float(lr)] * n_groups
    return vals


def scale_lr(lr, batch_size, base_batch_size, rule='linear'):
    """A learning rate that suits `base_batch_size`, rescaled for `batch_size`: ``lr * k`` with
    ``k = batch_size / base_batch_size`` ('linear', Goyal et al. 2017: it keeps the noise scale
    lr*N/B fixed) or ``sqrt(k)`` ('sqrt', which suits Adam-like optimizers better). `lr` may be a
    number, a sequence (one per param group) or a slice."""
    check_positive('batch_size', batch_size); check_positive('base_batch_size', base_batch_size)
    check_choice('rule', rule, ('linear', 'sqrt'))
    k = batch_size / base_batch_size
    if rule == 'sqrt': k = math.sqrt(k)
    if isinstance(lr, slice):
        return slice(None if lr.start is None else check_positive('lr', lr.start) * k,
                     check_positive('lr', lr.stop) * k)
    if isinstance(lr, (list, tuple)): return type(lr)(check_positive('lr', v) * k for v in lr)
    return check_positive('lr', lr) * k
