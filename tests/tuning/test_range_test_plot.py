"""The range test's figure: the suggestion in use stands out, the others recede, names do not clash."""
import math

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_rgb

from onecycle import LRFinderResult
from onecycle.tuning.suggest import lr_bounds, smooth_sweep


def _result(suggest='max_bound'):
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    losses = [2.3 - 1.5 / (1 + math.exp(-(math.log10(l) + 3) * 3)) + (max(0, math.log10(l) + 1.5)) ** 2
              for l in lrs]
    sugg = {'minimum': 1e-2, 'steep': 1e-3, 'valley': 3e-4, 'max_bound': 2e-2}
    return LRFinderResult(lrs, losses, smooth_sweep(losses), sugg, sugg[suggest], bounds=lr_bounds(2e-2))


def _vlines(ax):
    return [l for l in ax.get_lines() if len(set(l.get_xdata())) == 1 and len(l.get_xdata()) == 2]


@pytest.mark.parametrize('suggest', ['max_bound', 'valley'])
def test_the_suggestion_in_use_stands_out_and_the_others_recede(suggest):
    r = _result(suggest)
    fig = r.plot()
    for ax in fig.axes:
        lines = _vlines(ax)
        assert len(lines) == 4
        bold = [l for l in lines if l.get_linewidth() >= 2]
        assert len(bold) == 1 and bold[0].get_xdata()[0] == r.suggestion
        for l in lines:
            if l is bold[0]: continue
            rgb = to_rgb(l.get_color())
            assert rgb[0] == rgb[1] == rgb[2] and l.get_linewidth() <= 1 and l.get_linestyle() == ':'   # grey, thin
    loss_ax = fig.axes[0]
    labels = loss_ax.get_legend().get_texts()
    text = [t.get_text() for t in labels]
    assert sum('suggestion' in t for t in text) == 1 and any(f'{r.suggestion:.1e}' in t for t in text)
    names = {t.get_text().strip() for t in loss_ax.texts}                      # the others named at the top
    assert len(names) == 3 and 'loss minimum' in '|'.join(names | set(text))
    assert not any(t.startswith('minimum') or t.startswith('one cycle min') for t in text)   # no look-alikes
    assert any('1cycle lowest lr' in t for t in text) and any('CLR base lr' in t for t in text)
    plt.close(fig)


def test_several_runs_keep_their_markers():
    from onecycle import plot_range_tests
    fig = plot_range_tests([_result(), _result('valley')], labels=['a', 'b'])
    assert not fig.axes[0].texts and all(l.get_linewidth() < 2 for l in _vlines(fig.axes[0]))
    plt.close(fig)


@pytest.mark.parametrize('unchecked, moved', [(2e-2, 'lowered'), (1e-2, None), (5e-3, 'raised')])
def test_a_suggestion_the_hold_check_moved_shows_where_the_sweep_put_it(unchecked, moved):
    r = _result('max_bound')
    r.suggestions['fit'] = r.suggestion = 1e-2   # 'fit' is the one in use (as 'minimum', 1e-2 too, is not)
    r.held = {'lrs': [unchecked, unchecked / 2, 2 * unchecked], 'ends': [0.2, 0.3, 0.21], 'spiked': [False] * 3,
              'steps': 300, 'probe_steps': 100, 'unchecked': unchecked}
    fig = r.plot()
    for ax in fig.axes:
        red = [l for l in _vlines(ax) if to_rgb(l.get_color()) == to_rgb('C3')]
        assert [l.get_xdata()[0] for l in red] == ([1e-2, unchecked] if moved else [1e-2])
        assert all(l.get_linestyle() == '--' for l in red[1:])
    text = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    label = [t for t in text if 'suggestion' in t]
    assert len(label) == 1 and ('by the hold check from' in label[0]) == bool(moved)
    if moved: assert f'{moved} by the hold check from {unchecked:.1e}' in label[0]
    plt.close(fig)


@pytest.mark.parametrize('why', ["the weights' typical size (Adam's steps are about the lr)",
                                 'the largest lr the sweep applied (the optimizer caps its own step)'])
def test_the_legend_says_which_limit_holds_the_suggestion_and_only_when_it_binds(why):
    "An Adam-like limit is the weights' size; Adafactor's the largest lr its sweep applied: the legend names the one."
    import dataclasses
    r = _result('max_bound')
    r = dataclasses.replace(r, suggestions={**r.suggestions, 'fit': r.suggestion}, limit=r.suggestion, limit_why=why)
    fig = r.plot()
    label = next(t.get_text() for t in fig.axes[0].get_legend().get_texts() if t.get_text().startswith('suggestion'))
    assert label.endswith(why)
    plt.close(fig)
    fig = dataclasses.replace(r, limit=10 * r.suggestion).plot()   # a limit far above: nothing said of it
    label = next(t.get_text() for t in fig.axes[0].get_legend().get_texts() if t.get_text().startswith('suggestion'))
    assert 'typical size' not in label and 'caps' not in label
    plt.close(fig)
