"""One way to run trials and put the learner back: an in-memory snapshot of everything a trial may
change, restored bitwise. The range test, its comparisons, the searches, ``tune`` and the batch-size
finder all use it, so that no trial can alter the snapshot or the start of the next trial.

Tensors are copied to the CPU when the snapshot is taken and copied again, to the device they came
from, at every restore: the learner never holds a tensor of the snapshot, so whatever a trial does in
place (an optimizer step updating its momentum buffers, a BatchNorm updating its running statistics)
cannot reach the snapshot, and every restore gives bitwise the same start."""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict

import torch

from .dist import unwrap_model
from .rng import get_rng_state, loader_generators, set_rng_state

__all__ = ['TrainingState', 'preserved']

# the learner's attributes a trial may set and the snapshot puts back as they were
LEARNER_ATTRS = ('opt', 'opt_func', 'wd', 'wd_hook', 'n_epoch', 'epoch', 'step_count')
# the optimizer's own hook registries (a trial may register a step hook and be interrupted before removing it)
_OPT_HOOKS = ('_optimizer_step_pre_hooks', '_optimizer_step_post_hooks')


class _Saved:
    "A CPU copy of a tensor and the device and flags it is put back with."
    __slots__ = ('data', 'device', 'requires_grad')

    def __init__(self, t: torch.Tensor):
        self.data = t.detach().to('cpu', copy=True)
        self.device, self.requires_grad = t.device, t.requires_grad

    def fresh(self, cpu=False) -> torch.Tensor:
        "A new tensor (never the stored one), on its own device (or, with `cpu`, on the CPU)."
        t = self.data.clone() if cpu else self.data.to(self.device, copy=True)
        return t.requires_grad_() if self.requires_grad else t


def _stash(o):
    "A deep copy of `o` with every tensor stored as a CPU copy (see ``_Saved``)."
    if isinstance(o, torch.Tensor): return _Saved(o)
    if isinstance(o, dict): return {k: _stash(v) for k, v in o.items()}
    if type(o) in (list, tuple): return type(o)(_stash(v) for v in o)
    return copy.deepcopy(o)


def _fresh(o, cpu=False):
    "A deep copy of a stashed `o` with new tensors (on the CPU with `cpu`): nothing in it is shared with the snapshot."
    if isinstance(o, _Saved): return o.fresh(cpu)
    if isinstance(o, dict): return {k: _fresh(v, cpu) for k, v in o.items()}
    if type(o) in (list, tuple): return type(o)(_fresh(v, cpu) for v in o)
    return copy.deepcopy(o)


def _unique(tensors):
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen: seen.add(id(t)); out.append(t)
    return out


class TrainingState:
    """An in-memory copy of everything a trial run may change, put back bitwise by ``restore()``
    (as many times as wanted: every restore gives the same start):

    - the model (the user's module, inside any DDP wrapper): its ``state_dict`` (weights, buffers,
      extra state), its non-persistent buffers, each parameter's ``requires_grad`` flag and
      ``.grad``, each submodule's train/eval mode;
    - the optimizer: the object ``learn.opt`` itself, its param groups (every hyper-parameter), its
      per-parameter state (momentum buffers, Adam moments, step counts) and its step hooks;
    - the learner's ``opt_func``, ``wd``, ``wd_hook`` (the decoupled weight decay hook), its
      counters ``n_epoch``, ``epoch`` and ``step_count``, and its loaders (``dls``, ``dls.train``
      and ``dls.valid``);
    - the recorder's history, the fit position (``learn.position``'s fields, so that an interrupted
      fit can still be resumed after the trials) and the RNG states (python, numpy, torch, CUDA, and
      the loaders' own generators).

    Nothing is written to disk; the tensors are kept on the CPU."""
    def __init__(self, learn):
        self.learn = learn
        # the module, not learn.model: a DDP wrapper may come and go between snapshot and restore
        self.module = model = unwrap_model(learn.model)
        sd = model.state_dict()
        self.model, self.metadata = _stash(sd), copy.deepcopy(getattr(sd, '_metadata', None))
        # non-persistent buffers are not in the state dict
        self.buffers = [(k, _Saved(b)) for k, b in model.named_buffers() if k not in sd]
        self.modes = [(m, m.training) for m in model.modules()]
        opt = learn.opt
        params = _unique([*model.parameters(), *(p for pg in opt.param_groups for p in pg['params'])])
        self.params = [(p, p.requires_grad, None if p.grad is None else _Saved(p.grad)) for p in params]
        self.attrs = {k: getattr(learn, k) for k in LEARNER_ATTRS if hasattr(learn, k)}
        # a list per group may be changed in place
        if 'wd' in self.attrs: self.attrs['wd'] = copy.deepcopy(self.attrs['wd'])
        self.groups = [(pg, {k: (list(v) if k == 'params' else _stash(v)) for k, v in pg.items()})
                       for pg in opt.param_groups]
        self.opt_state = [(k, _stash(v)) for k, v in opt.state.items()]
        self.opt_hooks = [(h, dict(h)) for h in (getattr(opt, a, None) for a in _OPT_HOOKS) if isinstance(h, dict)]
        self.dls, self.loaders = learn.dls, (learn.dls.train, learn.dls.valid)
        self.recorder = learn.recorder.state_dict()
        # where an interrupted fit stands (learn.position, when the learner has one): a trial's fit would
        # replace it, and ``fit(..., resume=True)`` after the trials needs it
        pos = getattr(learn, 'position', None)
        self.position = (pos, {k: (list(v) if isinstance(v, list) else v) for k, v in vars(pos).items()
                               if k != 'learn'}) if pos is not None and hasattr(pos, '__dict__') else None
        self.rng = get_rng_state()
        # a DataLoader seeded with its own torch.Generator shuffles from it, not from the global RNG
        gens = {id(g): g for dl in self.loaders for g in loader_generators(dl)}
        self.loader_rng = [(g, g.get_state()) for g in gens.values()]

    def restore(self):
        "Put everything back as it was when the snapshot was taken, from fresh copies."
        learn = self.learn
        for k, v in self.attrs.items(): setattr(learn, k, copy.deepcopy(v) if k == 'wd' else v)
        self._restore_model()
        self._restore_opt()
        learn.dls = self.dls
        learn.dls.train, learn.dls.valid = self.loaders
        learn.recorder.load_state_dict(self.recorder)
        if self.position is not None:
            pos, fields = self.position
            pos.__dict__.update({k: (list(v) if isinstance(v, list) else v) for k, v in fields.items()})
        set_rng_state(self.rng)
        for g, st in self.loader_rng: g.set_state(st)

    def _restore_model(self):
        model = self.module
        sd = OrderedDict(_fresh(self.model, cpu=True))   # no second copy of the model on its device
        # versions, as state_dict() gives them
        if self.metadata is not None: sd._metadata = copy.deepcopy(self.metadata)
        model.load_state_dict(sd)   # copies into the module's own tensors
        for k, saved in self.buffers:
            owner, _, name = k.rpartition('.')
            m = model.get_submodule(owner)
            b = getattr(m, name, None)
            same = (b.shape, b.dtype, b.device) == (saved.data.shape, saved.data.dtype, saved.device) \
                if isinstance(b, torch.Tensor) else False
            if same:
                with torch.no_grad(): b.copy_(saved.data)
            else: setattr(m, name, saved.fresh())   # replaced by the trial: a new tensor in its place
        for m, training in self.modes: m.training = training
        for p, requires_grad, grad in self.params:
            p.requires_grad_(requires_grad)
            p.grad = None if grad is None else grad.fresh()

    def _restore_opt(self):
        opt = self.attrs['opt']
        for pg, saved in self.groups:
            pg.clear()
            pg.update({k: (list(v) if k == 'params' else _fresh(v)) for k, v in saved.items()})
        opt.param_groups[:] = [pg for pg, _ in self.groups]
        opt.state.clear()
        for k, v in self.opt_state: opt.state[k] = _fresh(v)
        for h, saved in self.opt_hooks:
            h.clear(); h.update(saved)


@contextlib.contextmanager
def preserved(learn):
    """Everything trial runs inside this block change is put back on exit, whatever ends it (an
    exception or an interrupt too): see :class:`TrainingState`, which the block yields, for what is
    kept. Progress bars are kept quiet meanwhile (``learn.progress`` is off, then as it was)."""
    state = TrainingState(learn)
    was = learn.progress
    learn.progress = False
    try: yield state
    finally:
        try: state.restore()
        finally: learn.progress = was
