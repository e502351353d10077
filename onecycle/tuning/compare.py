"""Range tests side by side: several sweeps (SGD against Adam, one per weight decay...) from the same
weights on one figure, and the plots of a range test (loss, and loss change, against the lr)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.checks import check_callable, check_choice, check_positive, check_range
from ..core.hyper import has_hyper
from ..core.data import check_loader
from ..core.snapshot import TrainingState
from .range_test import DEFAULT_NUM_IT, SUGGESTIONS, LRFinder, LRFinderResult, lr_find
from .range_test_plot import plot_range_tests

__all__ = ['compare_lr_finds', 'LRComparison', 'plot_range_tests']

_FINDER_KEYS = ('start_lr', 'end_lr', 'num_it', 'stop_div', 'div_threshold', 'mode', 'beta', 'valid_every',
                'valid_batches')
_LEARNER_KEYS = ('opt_func', 'wd', 'mom')
_SETTING_KEYS = _FINDER_KEYS + _LEARNER_KEYS + ('suggest', 'label')

def _name_of(f) -> str:
    f = getattr(f, 'func', f)   # functools.partial
    return getattr(f, '__name__', type(f).__name__)


def _label(setting: dict, i: int) -> str:
    if 'label' in setting: return str(setting['label'])
    parts = [_name_of(setting['opt_func'])] if 'opt_func' in setting else []
    parts += [f'{k}={setting[k]:g}' for k in ('wd', 'mom') if k in setting]
    parts += [f'{k}={setting[k]}' for k in _FINDER_KEYS if k in setting]
    return ', '.join(parts) or f'run {i}'


def _check_setting(i: int, setting, learn):
    "Everything that could make run `i` fail, checked before any run starts."
    if not isinstance(setting, dict): raise TypeError(f'settings[{i}] must be a dict, got {type(setting).__name__}')
    bad = sorted(set(setting) - set(_SETTING_KEYS))
    if bad: raise ValueError(f'settings[{i}] has unknown key(s) {bad}; allowed: {", ".join(_SETTING_KEYS)}')
    if 'opt_func' in setting: check_callable(f'settings[{i}]["opt_func"]', setting['opt_func'])
    if 'wd' in setting: check_positive(f'settings[{i}]["wd"]', setting['wd'], allow_zero=True)
    if 'mom' in setting: check_range(f'settings[{i}]["mom"]', setting['mom'], 0, 1, hi_open=True)
    if 'suggest' in setting: check_choice(f'settings[{i}]["suggest"]', setting["suggest"], SUGGESTIONS)
    finder = LRFinder(**{k: setting[k] for k in _FINDER_KEYS if k in setting})   # checks the sweep's arguments
    if 'mom' in setting:   # an optimizer without momentum (Adagrad...) cannot take one
        opt_func = setting.get('opt_func', learn.opt_func)
        pg = opt_func([{'params': [p for g in learn.param_groups() for p in g]}], lr=1e-3).param_groups[0]
        if not has_hyper(pg, 'mom'):
            raise ValueError(f'settings[{i}]["mom"]: the optimizer {_name_of(opt_func)} has no momentum to set')
    if finder.valid_every is not None: check_loader(learn.dls.valid, 'dls.valid')


@dataclass
class LRComparison:
    "Range tests run from the same weights: one result per setting, in order, and their labels."
    results: list
    labels: list
    settings: list = field(default_factory=list)

    def __len__(self): return len(self.results)
    def __getitem__(self, i) -> LRFinderResult: return self.results[i]

    def summary(self) -> str:
        "A table: one row per run, its suggestions and the lowest smoothed loss it reached."
        names = list(SUGGESTIONS)
        w = max(8, *(len(l) for l in self.labels))
        rows = [f'{"run":<{w}}  ' + '  '.join(f'{n:>9}' for n in names) + '  min loss']
        for label, r in zip(self.labels, self.results):
            rows.append(f'{label:<{w}}  ' + '  '.join(f'{r.suggestions[n]:9.2e}' for n in names)
                        + f'  {min(r.smooth_losses):8.4f}')
        return '\n'.join(rows)

    def plot(self, skip_start=0, skip_end=0, show_suggestions=True, delta=True):
        "Every run on one figure: loss against lr and the loss change against lr; returns the Figure."
        return plot_range_tests(self.results, self.labels, skip_start=skip_start, skip_end=skip_end,
                                show_suggestions=show_suggestions, delta=delta)


def compare_lr_finds(learn, settings, **common) -> LRComparison:
    """One LR range test per entry of `settings`, all from the learner's current weights and RNG
    state, each with a fresh optimizer, so the curves differ only by what the settings change.

    A setting is a dict of: ``opt_func`` (e.g. ``torch.optim.SGD`` or a ``functools.partial``),
    ``wd`` (decoupled weight decay), ``mom`` (a constant momentum; without it a run sweeps at the optimizer's
    own, or 0.9 where that is 0, as :func:`lr_find` does), any :class:`LRFinder` argument
    (``start_lr``, ``end_lr``, ``num_it``, ``mode``, ``valid_every``...), ``suggest`` and ``label``.
    `common` holds defaults for every run. Afterwards the learner has its own weights, optimizer
    (object and state), weight decay, recorder history and RNG states back.

        cmp = compare_lr_finds(learn, [dict(opt_func=SGD), dict(opt_func=Adam)], num_it=200)
        cmp.plot(); print(cmp.summary())
    """
    if not isinstance(settings, (list, tuple)) or not settings:
        raise TypeError(f'settings must be a non-empty list of dicts, got {settings!r}')
    allowed = [k for k in _SETTING_KEYS if k != 'label']
    bad = sorted(set(common) - set(allowed))
    if bad: raise TypeError(f'compare_lr_finds got unexpected keyword argument(s) {bad}; allowed: {", ".join(allowed)}')
    for i, s in enumerate(settings):
        if not isinstance(s, dict): raise TypeError(f'settings[{i}] must be a dict, got {type(s).__name__}')
    labels = [_label(s, i) for i, s in enumerate(settings)]   # named by what differs between runs
    settings = [{**common, **s} for s in settings]
    for i, s in enumerate(settings): _check_setting(i, s, learn)
    check_loader(learn.dls.train, 'dls.train')

    lr = [float(pg['lr']) for pg in learn.opt.param_groups]
    saved = TrainingState(learn)   # also the optimizer object, opt_func, wd and its hook that create_opt replaces
    results = []
    try:
        for i, s in enumerate(settings):
            saved.restore()   # the same weights, optimizer and RNG state for every run
            learn.opt_func = s.get('opt_func', learn.opt_func)
            learn.create_opt(lr, s.get('wd', learn.wd))
            # one sweep length for every run (lr_find alone may sweep again, longer, where one learnt too little)
            # and the sweep alone: lr_find's hold probes check one suggestion, they are not part of the curve
            res = lr_find(learn, hold_check=False, **{'num_it': DEFAULT_NUM_IT,
                                    **{k: v for k, v in s.items() if k in _FINDER_KEYS or k in ('suggest', 'mom')}})
            res.label = labels[i]
            results.append(res)
    finally: saved.restore()
    return LRComparison(results, labels, settings)
