"""Layer-wise adaptive learning rates (LARS, LARC, Smith's moving-average-of-differences) as callbacks
that work with any torch optimizer.

Each weight tensor ("layer") gets a local learning rate λ computed from its weights and gradient just
before the optimizer steps, turned into a factor on that step:

- ``mode='scale'`` (LARS): factor = λ, so the layer's effective lr is ``global lr * λ``;
- ``mode='clip'`` (LARC): factor = min(λ / global lr, 1), so the effective lr is ``min(λ, global lr)``:
  the schedule is a ceiling, never exceeded. Once the global lr falls below every layer's λ (the end
  of a 1cycle), every factor is 1 and training is plain SGD; ``sgd_below`` forces that switch at a
  chosen global lr.

How the factor reaches the step (``apply``):

- ``'grad'`` (default) multiplies the layer's gradient, with the Learner's decoupled weight decay folded
  in (g + wd*w, taken away from the decay hook for that layer), before the optimizer sees it. For SGD,
  with or without momentum, this is exactly the LARS update of You et al.
  (v <- m*v + λ*(g + wd*w); w <- w - lr*v). Adam-like optimizers divide the gradient by its own running
  scale, so a factor that changes slowly mostly cancels: with Adam 'grad' changes little.
- ``'update'`` lets the optimizer step, then multiplies the layer's actual change by the factor
  (w <- w_old + factor * (w_new - w_old)), decay included. Whatever the optimizer (Adam too), the
  factor is then a true per-layer lr multiplier. For plain SGD it equals 'grad'; with momentum the
  buffer keeps unscaled gradients, so it differs from the LARS paper. Costs one copy of the weights.

Biases and normalization parameters are left alone by default (``include_bias_norm``). The
effective lr of every layer at every step is recorded (``lrs``, ``factors``) and ``plot`` draws it.
An optimizer's own ``weight_decay`` (as opposed to ``Learner(wd=...)``) stays the optimizer's business.
"""
from __future__ import annotations

import torch

from ..core.callback import Callback
from ..core.checks import check_choice, check_positive, check_range
from ..core.hyper import WD_KEY, is_no_decay_param

__all__ = ['LayerwiseLR', 'LARS', 'LARC', 'SmithLayerLR']


class LayerwiseLR(Callback):
    """Base class: subclasses give ``local_lr(i, w, g, wd)``, the local lr (0-dim tensor) of layer `i`
    from its weights `w`, gradient `g` and decoupled weight decay `wd`. See the module docstring for
    `mode` and `apply`. Runs after gradient unscaling and clipping (order 5)."""
    order = 5

    def __init__(self, mode='scale', apply='grad', include_bias_norm=False, sgd_below=None, eps=1e-8):
        check_choice('mode', mode, ('scale', 'clip'))
        check_choice('apply', apply, ('grad', 'update'))
        check_positive('sgd_below', sgd_below, allow_none=True)
        check_positive('eps', eps, allow_zero=True)
        if sgd_below is not None and mode != 'clip':
            raise ValueError("sgd_below needs mode='clip': in 'scale' mode the global lr is a multiplier, "
                             'not an lr that a plain SGD step could use')
        self.mode, self.apply, self.include_bias_norm = mode, apply, include_bias_norm
        self.sgd_below, self.eps = sgd_below, eps
        self.layer_names, self._factors, self._glrs, self._pending = [], [], [], []
        self._hook_exempt, self._took_from_hook, self._step = None, set(), None

    # --- subclasses ------------------------------------------------------------------------------
    def local_lr(self, i: int, w: torch.Tensor, g: torch.Tensor, wd: float) -> torch.Tensor:
        raise NotImplementedError

    def reset_state(self):
        "Forget per-layer state (called at the start of every fit)."

    # --- events ----------------------------------------------------------------------------------
    def before_fit(self):
        learn = self.learn
        names = {id(p): n for n, p in learn.model.named_parameters()}
        skip = set() if self.include_bias_norm else is_no_decay_param(learn.model)
        hook = getattr(learn, 'wd_hook', None)
        self._hook_exempt = hook.exempt if hook is not None else None
        # (param, param group, name, wd folded into its gradient) for every layer we adapt
        self.layers = []
        for pg in learn.opt.param_groups:
            for p in pg['params']:
                if id(p) in skip: continue
                decays = hook is not None and id(p) not in hook.exempt
                self.layers.append((p, pg, names.get(id(p), f'param{len(self.layers)}'), decays))
        if not self.layers:
            raise ValueError(f'{type(self).__name__}: no parameter to adapt (all are biases or normalization '
                             'parameters); pass include_bias_norm=True to adapt them')
        # In 'grad' mode the decay of adapted layers goes into their gradient, scaled with it.
        self._took_from_hook = set()
        if self.apply == 'grad' and hook is not None:
            self._took_from_hook = {id(p) for p, _, _, d in self.layers if d}
            hook.exempt |= self._took_from_hook
        if not getattr(learn, 'keep_history', False):
            self.layer_names = [n for _, _, n, _ in self.layers]
            self._factors, self._glrs, self._pending = [], [], []
        self.reset_state()
        self._step = None

    def after_fit(self):
        if self._hook_exempt is not None: self._hook_exempt -= self._took_from_hook
        self._took_from_hook, self._step = set(), None

    @torch.no_grad()
    def before_step(self):
        factors, glrs, olds = [], [], []
        for i, (p, pg, _, decays) in enumerate(self.layers):
            glr = float(pg['lr'])
            glrs.append(glr)
            if p.grad is None:   # frozen or unused this step: nothing to scale
                factors.append(torch.ones((), device=p.device)); olds.append(None); continue
            wd = float(pg.get(WD_KEY, 0.)) if decays else 0.
            w, g = p.detach(), p.grad
            f = self._factor(glr, self.local_lr(i, w, g, wd))
            factors.append(f)
            if self.apply == 'grad':
                if wd: g.add_(w, alpha=wd)
                g.mul_(f)
                olds.append(None)
            else:
                olds.append(w.clone())
        self._step = (factors, glrs, olds)

    def _factor(self, glr, local):
        if self.mode == 'scale': f = local
        elif self.sgd_below is not None and glr < self.sgd_below: f = torch.ones_like(local)
        else: f = torch.clamp(local / glr if glr > 0 else torch.full_like(local, float('inf')), max=1.)
        return torch.where(torch.isfinite(f), f, torch.ones_like(f)).to(torch.float32)

    @torch.no_grad()
    def after_step(self):
        if self._step is None: return
        factors, glrs, olds = self._step
        self._step = None
        if self.apply == 'update':
            for (p, _, _, _), f, old in zip(self.layers, factors, olds):
                if old is not None: p.sub_(old).mul_(f).add_(old)
        self._pending.append(torch.stack([f.to(factors[0].device) for f in factors]))
        self._glrs.append(glrs)

    # --- history ---------------------------------------------------------------------------------
    def _flush(self):
        if self._pending:   # one device-to-host transfer for everything since the last read
            self._factors += torch.stack(self._pending).float().cpu().tolist()
            self._pending = []

    @property
    def factors(self) -> dict[str, list[float]]:
        "Per layer name, the factor applied at every optimizer step of the last fit."
        self._flush()
        return {n: [row[j] for row in self._factors] for j, n in enumerate(self.layer_names)}

    @property
    def lrs(self) -> dict[str, list[float]]:
        "Per layer name, the effective learning rate (global lr * factor) at every optimizer step."
        self._flush()
        return {n: [row[j] * g[j] for row, g in zip(self._factors, self._glrs)] for j, n in enumerate(self.layer_names)}

    def plot(self, what='lr', layers=None, ax=None):
        "Effective lr (or factor, ``what='factor'``) per layer against the optimizer step; returns the Figure."
        import matplotlib.pyplot as plt
        check_choice('what', what, ('lr', 'factor'))
        data = self.lrs if what == 'lr' else self.factors
        if not data or not next(iter(data.values())):
            raise ValueError(f'{type(self).__name__}: nothing recorded yet (has a fit run with this callback?)')
        if layers is not None:
            unknown = [n for n in layers if n not in data]
            if unknown: raise ValueError(f'unknown layers {unknown}; recorded: {list(data)}')
            data = {n: data[n] for n in layers}
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
        for n, vs in data.items(): ax.plot(vs, label=n)
        if what == 'lr' and self._glrs:
            ax.plot([max(g) for g in self._glrs], 'k--', lw=1, label='global lr (max group)')
        ax.set_yscale('log'); ax.set_xlabel('optimizer step')
        ax.set_ylabel('effective lr' if what == 'lr' else 'factor on the step')
        ax.set_title(f'{type(self).__name__}: layer-wise {"learning rates" if what == "lr" else "factors"}')
        ax.legend(fontsize=7)
        return fig

    def __repr__(self):
        return f'{type(self).__name__}(mode={self.mode!r}, apply={self.apply!r})'


class LARS(LayerwiseLR):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg, 2017): each layer's local lr is

        λ = eta * ||w|| / (||g|| + wd * ||w|| + eps)

    (weight decay in the denominator) and multiplies the global lr (``mode='scale'``), so the
    schedule (1cycle...) shapes every layer while λ evens out the step size relative to the weights.
    Layers with a zero weight or gradient norm step unscaled. `eta` is the trust coefficient."""
    def __init__(self, eta=1e-3, mode='scale', apply='grad', include_bias_norm=False, sgd_below=None, eps=1e-8):
        self.eta = check_positive('eta', eta)
        super().__init__(mode, apply, include_bias_norm, sgd_below, eps)

    def local_lr(self, i, w, g, wd):
        wn, gn = torch.linalg.vector_norm(w).float(), torch.linalg.vector_norm(g).float()
        lam = self.eta * wn / (gn + wd * wn + self.eps)
        ok = (wn > 0) & (gn > 0) & torch.isfinite(gn)
        return torch.where(ok, lam, torch.full_like(lam, float('nan')))   # nan -> factor 1


class LARC(LARS):
    """Layer-wise Adaptive Rate Control (Ginsburg et al.; NVIDIA's LARC, clip mode): the LARS local lr
    λ = eta * ||w|| / (||g|| + wd * ||w||) caps the global lr, effective lr = min(λ, global lr), i.e.
    factor min(λ / global lr, 1). When the global lr gets small every factor is 1 and this is plain
    SGD; `sgd_below` makes that switch explicit: at global lrs below it the step is never scaled."""
    def __init__(self, eta=0.02, sgd_below=None, apply='grad', include_bias_norm=False, eps=1e-8):
        super().__init__(eta, 'clip', apply, include_bias_norm, sgd_below, eps)


class SmithLayerLR(LayerwiseLR):
    """Leslie Smith's layer-wise lr (fast.ai forum, "Cyclical Layer Learning Rates"): the local lr of a
    layer is

        λ = eta * ||MA(Δw)|| / (||MA(Δg)|| + eps)

    where Δw and Δg are the changes of the layer's weights and (loss) gradient from one optimizer step
    to the next and MA an exponential moving average with factor `beta` (from zero; a debiasing term
    would cancel in the ratio). The ratio is a secant estimate of the inverse curvature, like a
    Barzilai-Borwein step. The first step has no difference yet and is not scaled.

    ``mode='clip'`` by default: the global schedule is the ceiling and λ lowers the lr of layers that
    are sharper than it allows. ('scale' multiplies the two lrs; with noisy gradients |Δw| grows with
    the lr used, so that loop can run away or collapse.) Steps with non-finite gradients are not scaled
    and leave the averages alone."""
    def __init__(self, beta=0.9, eta=1., mode='clip', apply='grad', include_bias_norm=False, sgd_below=None, eps=1e-12):
        self.beta = check_range('beta', beta, 0, 1, hi_open=True)
        self.eta = check_positive('eta', eta)
        super().__init__(mode, apply, include_bias_norm, sgd_below, eps)

    def reset_state(self):
        self.state = {}

    def local_lr(self, i, w, g, wd):
        ok = torch.isfinite(g).all()
        st = self.state.get(i)
        if st is None:   # first step: remember where we are
            self.state[i] = {'w': w.clone(), 'g': torch.where(ok, g, torch.zeros_like(g)),
                             'dw': torch.zeros_like(w), 'dg': torch.zeros_like(g),
                             'n': ok.long()}
            return torch.full((), float('nan'), device=w.device)
        b = self.beta
        upd = ok & (st['n'] > 0)
        st['dw'] = torch.where(upd, b * st['dw'] + (1 - b) * (w - st['w']), st['dw'])
        st['dg'] = torch.where(upd, b * st['dg'] + (1 - b) * (g - st['g']), st['dg'])
        st['w'] = torch.where(ok, w, st['w'])
        st['g'] = torch.where(ok, g, st['g'])
        st['n'] = st['n'] + ok.long()
        dwn, dgn = torch.linalg.vector_norm(st['dw']).float(), torch.linalg.vector_norm(st['dg']).float()
        lam = self.eta * dwn / (dgn + self.eps)
        return torch.where(upd & (dwn > 0) & (dgn > 0), lam, torch.full_like(lam, float('nan')))
