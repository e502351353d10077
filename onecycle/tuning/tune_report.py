"""What ``tune`` says while it runs (one line per stage) and its figure (the range test and each search)."""
from __future__ import annotations

import math

from ..callbacks.progress import fmt_lr
from .search import format_candidate

__all__ = ['range_test_line', 'search_line', 'skipped_line', 'plot_tune']

_NAMES = {'lr': 'lr', 'lr held': 'lr held at its peak', 'lr long': 'lr in longer trials', 'bs': 'batch size',
          'mom': 'momentum', 'wd': 'weight decay'}


def range_test_line(r) -> str:
    "The range test's stage: lr range covered, early stop, the max bound chosen, steps spent."
    steps = r.cost.get('train_steps', len(r.train_lrs))
    lrs = r.train_lrs or r.lrs
    stop = ' (stopped early: the loss diverged)' if r.stopped_early else ''
    return (f'range test: tried lr {fmt_lr(lrs[0])} to {fmt_lr(lrs[-1])}{stop}; max bound '
            f'{fmt_lr(r.suggestions["max_bound"])}, suggestion for the fit {fmt_lr(r.suggestion)}; {steps} steps')


def _cand(name, c):
    return fmt_lr(c) if name in ('lr', 'lr held', 'lr long') and isinstance(c, float) else format_candidate(c)


def search_line(s) -> str:
    "A search's stage: the candidates tried (diverged ones marked), the one chosen, steps spent."
    tried = ', '.join(_cand(s.name, c) + (' (diverged)' if t.diverged else '') for c, t in zip(s.candidates, s.trials))
    pre = s.extra.get('plateau_trial')
    if pre is not None:
        tried = f'{pre.n_steps} steps at {format_candidate(s.extra["mid"])} to a plateau, then {tried}'
    chose = _cand(s.name, s.best)
    if 'refined_by' in s.extra: chose += f' (backed off from {_cand(s.name, s.extra["rung"])})'
    elif 'rung' in s.extra: chose += ' (refined between rungs)'
    return f'{_NAMES.get(s.name, s.name)}: tried {tried}; chose {chose}; {s.steps} steps'


def skipped_line(what) -> str:
    return f'{what}: skipped'


def _fix_scales(ax, s):
    """A search panel readable at a glance: a log loss axis that holds every curve from its first point
    (trials start far above where they end); for a search from a snapshot, the branches after it fill
    the panel, with the end of the run up to the snapshot before the dotted line."""
    pts = [(st, v) for t in s.trials for st, v in zip(t.steps, t.valid_losses)]
    snap, pre = s.extra.get('snapshot_step'), s.extra.get('plateau_trial')
    if snap:
        pts = [(snap + st, v) for st, v in pts]
        end = max((st for st, _ in pts), default=snap)
        lo = snap - 0.15 * (end - snap)
        pts += [(st, v) for st, v in zip(pre.steps, pre.valid_losses) if st >= lo] if pre is not None else []
        ax.set_xlim(lo, end + 0.03 * (end - snap))
        ax.set_xlabel(f'optimizer step (the plateau run: steps 0-{snap})')
    vals = [v for _, v in pts if math.isfinite(v) and v > 0]
    if vals:
        from matplotlib.ticker import FuncFormatter
        ax.set_yscale('log')
        ax.set_ylim(min(vals) / 1.08, max(vals) * 1.08)
        plain = FuncFormatter(lambda v, _: f'{v:.3g}')   # 0.8, not 8 x 10^-1
        ax.yaxis.set_major_formatter(plain); ax.yaxis.set_minor_formatter(plain)


def plot_tune(result):
    "The range test and each search's validation curves, one panel each; returns the Figure."
    import matplotlib.pyplot as plt
    panels = ([result.lr_find] if result.lr_find is not None else []) + result.searches
    fig, axs = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.9), squeeze=False)
    for ax, p in zip(axs[0], panels):
        p.plot(ax=ax)   # one Axes: the range test draws its loss panel only
        if p is not result.lr_find: _fix_scales(ax, p)
        else: _mark_tuned_lr(ax, result)
    fig.tight_layout()
    return fig


def _mark_tuned_lr(ax, result):
    """tune's max_lr on the range test's panel, which marks the first sweep's suggestion, where it is not that: the lr
    the fit will use, and what moved it there (the second sweep averaged in, the hold check, the trials)."""
    lr, first, held_lr = result.max_lr, result.lr_find.suggestion, result.held_lr
    if not (math.isfinite(lr) and lr > 0) or math.isclose(lr, first, rel_tol=1e-6): return
    sweeps = result.swept_suggestion
    steps = []
    if not math.isclose(sweeps, first, rel_tol=1e-6): steps.append(f'both sweeps, {fmt_lr(sweeps)}')
    if held_lr is not None and not math.isclose(held_lr, sweeps, rel_tol=1e-6):
        steps.append(f'the hold check, {fmt_lr(held_lr)}')
    if not math.isclose(lr, sweeps if held_lr is None else held_lr, rel_tol=1e-6): steps.append('the trials')
    ax.axvline(lr, color='C2', lw=2, zorder=3, label=f"tune's max_lr: {fmt_lr(lr)},\nfrom " + ', then '.join(steps))
    ax.legend(fontsize=8)
