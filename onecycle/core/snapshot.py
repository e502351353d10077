"""One way to run trials and put the learner back: an in-memory snapshot of everything a trial may
change, restored bitwise. The range test, its comparisons, the searches, ``tune`` and the batch-size
finder all use it, so that no trial can alter the snapshot or the start of the next trial."""
from __future__ import annotations

import contextlib
import copy

import torch

from .rng import get_rng_state, loader_generators, set_rng_state

__all__ = ['TrainingState', 'preserved']


def _to_cpu(o):
    if isinstance(o, torch.Tensor): return o.detach().to('cpu', copy=True)
    if isinstance(o, dict): return {k: _to_cpu(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return type(o)(_to_cpu(v) for v in o)
    return copy.deepcopy(o)


class TrainingState:
    """An in-memory copy of everything a trial run may change: model weights and buffers, optimizer
    state and hyper-parameters, the recorder's history and the RNG states (global, and the loaders'
    own generators). ``restore()`` puts them back bitwise; nothing is written to disk."""
    def __init__(self, learn):
        self.learn = learn
        self.model = _to_cpu(learn.model.state_dict())
        self.opt = _to_cpu(learn.opt.state_dict())
        self.recorder = learn.recorder.state_dict()
        self.rng = get_rng_state()
        # a DataLoader seeded with its own torch.Generator shuffles from it, not from the global RNG
        gens = {id(g): g for dl in (learn.dls.train, learn.dls.valid) for g in loader_generators(dl)}
        self.loader_rng = [(g, g.get_state()) for g in gens.values()]

    def restore(self):
        learn = self.learn
        learn.model.load_state_dict(self.model)
        learn.opt.load_state_dict(self.opt)
        learn.recorder.load_state_dict(self.recorder)
        set_rng_state(self.rng)
        for g, st in self.loader_rng: g.set_state(st)


@contextlib.contextmanager
def preserved(learn):
    """Everything trial runs inside this block change is put back on exit, whatever ends it: the
    weights, optimizer state and hyper-parameters, recorder, RNG states (via ``TrainingState``), the
    learner's ``wd``, its step/epoch counters and loaders. Progress bars are kept quiet meanwhile."""
    state = TrainingState(learn)
    attrs = {k: getattr(learn, k, None) for k in ('wd', 'n_epoch', 'epoch', 'step_count')}
    train_dl = learn.dls.train
    bars = [c for c in learn.cbs if type(c).__name__ == 'ProgressCallback']
    learn.remove_cbs(bars)
    try: yield state
    finally:
        learn.dls.train = train_dl
        state.restore()
        for k, v in attrs.items(): setattr(learn, k, v)
        learn.add_cbs([c for c in bars if c not in learn.cbs])
