"""Small matplotlib helpers shared by the plots; figures are returned, never shown."""
from __future__ import annotations

__all__ = ['plot_hypers']


def plot_hypers(hps: dict, group=None, title='Schedule'):
    """One panel per hyper-parameter: value against optimizer step, one line per param group.

    `hps` maps a name to a list (one entry per step) of per-group lists of values.
    """
    import matplotlib.pyplot as plt
    keys = [k for k, v in hps.items() if v]
    if not keys: raise ValueError('nothing to plot: no hyper-parameter was recorded (has a fit run?)')
    ncols = min(len(keys), 4)   # wrap many panels into rows of four
    nrows = -(-len(keys) // ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axs.flat[len(keys):]: ax.set_visible(False)
    for ax, k in zip(axs.flat, keys):
        rows = hps[k]
        n_groups = len(rows[0])
        for g in range(n_groups) if group is None else [group]:
            ax.plot([r[g] for r in rows], label=f'group {g}')
        ax.set_xlabel('optimizer step'); ax.set_ylabel(k); ax.set_title(k)
        if n_groups > 1 and group is None: ax.legend()
    fig.suptitle(title); fig.tight_layout()
    return fig
