"""The range test's figure: loss, and loss change, against the lr, for one run or several."""
from __future__ import annotations

import math


__all__ = ['plot_range_tests']


_MARKERS = {'fit': '*', 'minimum': 'v', 'steep': 'o', 'valley': 's', 'max_bound': '^', 'edge': 'D', 'spike': 'P'}
# how the figure names the suggestions and Smith's min-bound ranges
_NAMES = {'fit': 'for the fit', 'minimum': 'loss minimum', 'steep': 'steepest fall', 'valley': 'valley',
          'max_bound': 'max bound', 'edge': 'floor edge', 'spike': 'before first spike'}
_BANDS = {'cyclical_min': 'CLR base lr (max/4 to max/3)', 'one_cycle_min': '1cycle lowest lr (max/20 to max/10)'}


def _in_use(r):
    "The name of the suggestion the result hands out (``r.suggestion``), or None."
    names = [k for k, v in r.suggestions.items() if v == r.suggestion]
    return next((n for n in ('fit', 'max_bound') if n in names), names[0] if names else None)


def _finite_range(values):
    finite = [v for v in values if math.isfinite(v)]
    return (min(finite), max(finite)) if finite else None


def plot_range_tests(results, labels=None, skip_start=0, skip_end=0, ax=None, show_suggestions=True,
                     delta=True, loss=True):
    """Range-test curves on one figure: smoothed loss against lr (log axis) and the loss change
    d loss / d log10(lr) against lr, each run in its own colour. One run: its raw loss too, the
    suggestion in use (``result.suggestion``) as a bold line with a marker on the curve, the other
    suggestions as thin grey lines named at the top, Smith's min-bound ranges lightly shaded.
    A result with a ``replicate`` (lr_find's second sweep, on another data order) shows its curve dashed; the
    suggestions are the two sweeps' geometric means. Several runs: the suggestions as markers on each curve.
    `ax` is one Axes or a list of one per panel."""
    import matplotlib.pyplot as plt
    if not loss and not delta: raise ValueError('nothing to plot: loss and delta are both False')
    results = list(results)
    labels = list(labels) if labels is not None else [r.label or f'run {i}' for i, r in enumerate(results)]
    panels = [p for p, on in (('loss', loss), ('delta', delta)) if on]
    if ax is None:
        fig, axs = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
        axs = list(axs[0])
    else:
        axs = list(ax) if isinstance(ax, (list, tuple)) else [ax]
        panels = panels[:len(axs)]
        fig = axs[0].figure
    single = len(results) == 1
    lows, highs = [], []
    for i, (r, label) in enumerate(zip(results, labels)):
        end = len(r.lrs) - skip_end
        sl = slice(skip_start, max(end, skip_start))
        lrs, curves = r.lrs[sl], {'loss': r.smooth_losses[sl], 'delta': r.loss_change[sl]}
        rep = getattr(r, 'replicate', None) if single else None   # lr_find's second sweep, averaged in
        rsl = slice(skip_start, max(len(rep.lrs) - skip_end, skip_start)) if rep is not None else None
        color = 'C0' if single else f'C{i % 10}'
        for p, a in zip(panels, axs):
            a.plot(lrs, curves[p], color=color, zorder=2,
                   label='smoothed loss' if single and p == 'loss' else (None if single else label))
            if single and p == 'loss':
                a.plot(lrs, r.losses[sl], color=color, alpha=0.25, label=f'{r.measured} loss (raw)')
            if rep is not None:
                a.plot(rep.lrs[rsl], (rep.smooth_losses if p == 'loss' else rep.loss_change)[rsl], color='C1',
                       ls='--', lw=1, zorder=2, label='another data order (smoothed)' if p == 'loss' else None)
            if not show_suggestions: continue
            used = _in_use(r)
            named = set()   # the lrs whose receding line is drawn: rules that coincide share one line and one label
            for j, (name, lr) in enumerate(r.suggestions.items()):
                if single and name == used:
                    held = r.held
                    moved = name == 'fit' and held and held['unchecked'] != lr
                    limited = name == 'fit' and r.limit is not None and lr >= r.limit * (1 - 1e-9)
                    a.axvline(lr, color='C3', lw=2, zorder=3,
                              label=f'suggestion ({_NAMES.get(name, name)}): {lr:.1e}'
                              + (f",\n{'lowered' if lr < held['unchecked'] else 'raised'} by the hold check from "
                                 f"{held['unchecked']:.1e}" if moved else '')
                              + (f',\n{r.limit_why}' if limited and r.limit_why else '')
                              if p == panels[0] else None)
                    if moved:   # where the sweep put it, before the probes at the held peak moved it
                        a.axvline(held['unchecked'], color='C3', lw=1, ls='--', zorder=3)
                    if lrs:
                        k = min(range(len(lrs)), key=lambda q: abs(math.log(lrs[q] / lr)))
                        a.plot(lrs[k], curves[p][k], 'o', color='C3', ms=7, zorder=4)
                elif single:
                    if lr in named: continue
                    same = [n for n, v in r.suggestions.items() if n != used and v == lr]
                    named.add(lr)
                    a.axvline(lr, color='0.55', ls=':', lw=1, zorder=1)
                    a.text(lr, 0.98, f" {', '.join(_NAMES.get(n, n) for n in same)} ", rotation=90, va='top',
                           ha='right', fontsize=7, color='0.4', transform=a.get_xaxis_transform())
                elif lrs:
                    k = min(range(len(lrs)), key=lambda q: abs(math.log(lrs[q] / lr)))
                    a.plot(lrs[k], curves[p][k], _MARKERS.get(name, 'x'), color=color, ms=7, mec='k', mew=0.6)
        for rng in (_finite_range(r.smooth_losses[sl]), _finite_range(rep.smooth_losses[rsl]) if rep else None):
            if rng: lows.append(rng[0]); highs.append(rng[1])
        if single and show_suggestions and 'loss' in panels and r.bounds:
            a = axs[panels.index('loss')]
            for (name, (lo, hi)), c in zip(r.bounds.items(), ('C2', 'C1')):
                a.axvspan(lo, hi, color=c, alpha=0.1, lw=0, zorder=0,
                          label=f'{_BANDS.get(name, name.replace("_", " "))}: {lo:.1e}-{hi:.1e}')
    for p, a in zip(panels, axs):
        a.set_xscale('log'); a.set_xlabel('learning rate')
        if p == 'loss':
            what = {r.measured for r in results}
            a.set_ylabel('loss'); a.set_title('LR range test: ' + ' / '.join(f'{w} loss' for w in sorted(what)))
            if lows:   # the smoothed curves are capped at their starting level: raw spikes go off the top
                lo, hi = min(lows), max(highs)
                pad = (hi - lo) or abs(hi) or 1.
                a.set_ylim(lo - 0.05 * pad, hi + 0.1 * pad)
        else:
            a.axhline(0, color='grey', lw=0.8)
            a.set_ylabel('loss change  d loss / d log10(lr)'); a.set_title('Loss change (moving average)')
        handles, _ = a.get_legend_handles_labels()
        if not single and show_suggestions and p == panels[0]:
            from matplotlib.lines import Line2D
            handles += [Line2D([], [], ls='', marker=m, color='w', mec='k', ms=7, label=n) for n, m in _MARKERS.items()]
        if handles: a.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return fig
