"""tune's stage lines and its figure's scales."""
import math

import pytest

from onecycle.tuning.search import SearchResult, Trial
from onecycle.tuning.tune_report import plot_tune, range_test_line, search_line


def _trial(label, steps, losses, diverged=False):
    return Trial(label, steps=list(steps), valid_losses=list(losses), diverged=diverged, n_steps=steps[-1])


def test_search_line_says_what_was_tried_chosen_and_spent():
    s = SearchResult('lr', [0.01, 0.02, 0.04], [_trial('a', [0, 50], [2., .5]), _trial('b', [0, 50], [2., .4]),
                                                 _trial('c', [0, 20], [2., 9.], diverged=True)],
                     0.02, 120, 1.)
    assert search_line(s) == ('lr: tried 1.0e-02, 2.0e-02, 4.0e-02 (diverged); chose 2.0e-02; '
                              '120 steps')
    m = SearchResult('mom', [(0.95, 0.85), 0.9], [_trial('a', [0, 9], [1, .5]), _trial('b', [0, 9], [1, .6])],
                     (0.95, 0.85), 18, 1.)
    assert search_line(m) == 'momentum: tried (0.95, 0.85), 0.9; chose (0.95, 0.85); 18 steps'


def test_range_test_line(make_learner):
    res = make_learner().lr_find(num_it=20, stop_div=False, hold_check=False)
    line = range_test_line(res)
    assert line.startswith('range test: tried lr 1.0e-07 to 1.0e+01; max bound ')
    assert f'suggestion for the fit {res.suggestion:.1e}' in line
    assert line.endswith('; 20 steps') and 'stopped early' not in line


def _wd_search():
    pre = _trial('pre', range(0, 1001, 100), [2.3 - 0.2 * i for i in range(11)])
    branches = [_trial(f'wd={w}', range(0, 101, 20), [0.3 - 0.01 * i * (1 + k) for i in range(6)])
                for k, w in enumerate((1e-2, 1e-3, 1e-4))]
    return SearchResult('wd', [1e-2, 1e-3, 1e-4], branches, 1e-3, 1300, 1.,
                        {'mid': 1e-3, 'snapshot_step': 1000, 'plateau_trial': pre})


def test_tune_plot_scales_hold_every_curve_and_the_branches_fill_the_wd_panel():
    from types import SimpleNamespace
    s = _wd_search()
    lr = SearchResult('lr', [0.1, 0.2], [_trial('a', range(0, 41, 10), [2.3, 1., .5, .3, .2]),
                                          _trial('b', range(0, 41, 10), [2.3, .8, .3, .1, .05])], 0.2, 80, 1.)
    fig = plot_tune(SimpleNamespace(lr_find=None, searches=[lr, s]))
    a_lr, a_wd = fig.axes
    lo, hi = a_lr.get_ylim()
    assert a_lr.get_yscale() == 'log' and lo <= 0.05 and hi >= 2.3         # first points on the scale
    x0, x1 = a_wd.get_xlim()
    assert 900 <= x0 < 1000 and 1100 <= x1 < 1110                           # the branches, not 0..1100
    lo, hi = a_wd.get_ylim()
    assert lo <= min(v for t in s.trials for v in t.valid_losses) and hi < 1.  # not stretched by the plateau run
    assert math.isfinite(lo) and lo > 0
    import matplotlib.pyplot as plt
    plt.close(fig)


@pytest.mark.parametrize('bad', [float('nan'), 0.])
def test_tune_plot_with_unplottable_losses(bad):
    from types import SimpleNamespace
    s = SearchResult('mom', [0.9, 0.95], [_trial('a', [0, 5], [bad, bad]), _trial('b', [0, 5], [1., .5])], 0.95, 10, 1.)
    fig = plot_tune(SimpleNamespace(lr_find=None, searches=[s]))
    lo, hi = fig.axes[0].get_ylim()
    assert 0 < lo <= 0.5 and hi >= 1


@pytest.mark.parametrize('fields, label', [
    (dict(max_lr=0.1), None),                                                    # the sweep's own suggestion
    (dict(max_lr=0.05, held={'unchecked': 0.1}, held_lr=0.05), 'from the hold check, 5.0e-02'),
    (dict(max_lr=0.07, held={'unchecked': 0.1}, held_lr=0.05), 'from the hold check, 5.0e-02, then the trials'),
    (dict(max_lr=0.2 * math.sqrt(2), suggestion=0.2), 'from both sweeps, 2.0e-01, then the trials'),
    (dict(max_lr=0.1, held={'unchecked': 0.2}, held_lr=0.1, suggestion=0.1), None),   # back where the panel marks
])
def test_tune_plot_marks_tunes_lr_and_what_moved_it_off_the_sweeps_suggestion(make_learner, fields, label):
    """The range test's panel marks the first sweep's suggestion; tune's max_lr, where it lies elsewhere, is marked
    too, with what moved it there (a second sweep averaged in, the hold check, the trials)."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    sweep = make_learner().lr_find(num_it=30, stop_div=False, hold_check=False)
    sweep.suggestion = 0.1
    result = SimpleNamespace(lr_find=sweep, searches=[], held={}, held_lr=None, suggestion=0.1)
    result.__dict__.update(fields)
    result.swept_suggestion = result.held['unchecked'] if result.held else result.suggestion   # as TuneResult's
    fig = plot_tune(result)
    tuned = [t.get_text() for t in fig.axes[0].get_legend().get_texts() if t.get_text().startswith("tune's")]
    assert tuned == ([] if label is None else [f"tune's max_lr: {result.max_lr:.1e},\n{label}"])
    plt.close(fig)
