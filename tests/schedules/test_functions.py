"""Schedules are pure functions of progress: check them against their closed forms."""
import math
import pickle

import pytest

from onecycle.schedules.functions import (Constant, Cosine, Exponential, Linear, Phases, combine, one_cycle,
                               progress_of_step)

PCTS = [0., 0.1, 0.25, 0.5, 0.7, 0.9, 1.]


def test_constant():
    assert all(Constant(0.3)(p) == 0.3 for p in PCTS)


@pytest.mark.parametrize('start,end', [(1., 3.), (5., -1.), (0.2, 0.2)])
def test_linear(start, end):
    for p in PCTS:
        assert Linear(start, end)(p) == pytest.approx(start + p * (end - start), rel=1e-12, abs=1e-12)
    assert Linear(start, end)(0) == start and Linear(start, end)(1) == pytest.approx(end)


@pytest.mark.parametrize('start,end', [(1., 0.), (0.85, 0.95), (1e-4, 1e-2)])
def test_cosine(start, end):
    f = Cosine(start, end)
    for p in PCTS:
        assert f(p) == pytest.approx(end + (start - end) * (1 + math.cos(math.pi * p)) / 2, rel=1e-12)
    assert f(0) == pytest.approx(start) and f(1) == pytest.approx(end)
    assert f(0.5) == pytest.approx((start + end) / 2)
    # monotone between the ends
    vals = f.values(50)
    assert vals == sorted(vals, reverse=start > end)


def test_exponential():
    f = Exponential(1e-7, 10.)
    for p in PCTS:
        assert f(p) == pytest.approx(1e-7 * (1e8) ** p, rel=1e-12)
    assert f(0.5) == pytest.approx(math.sqrt(1e-7 * 10.))   # the geometric mean


def test_phases_rescale_each_phase_and_boundary_goes_to_earlier_phase():
    f = Phases([Linear(0., 1.), Linear(10., 20.)], [0.25])
    assert f(0.) == 0. and f(0.125) == pytest.approx(0.5)
    assert f(0.25) == pytest.approx(1.)          # the boundary belongs to the first phase
    assert f(0.25 + 1e-9) == pytest.approx(10., abs=1e-6)
    assert f(0.625) == pytest.approx(15.) and f(1.) == pytest.approx(20.)


def test_combine_is_phases_with_cumulative_ends():
    scheds = [Constant(1.), Linear(1., 2.), Cosine(2., 0.)]
    f = combine([0.2, 0.3, 0.5], scheds)
    assert f == Phases(scheds, [0.2, 0.5])
    assert f(0.1) == 1. and f(0.35) == pytest.approx(1.5) and f(0.75) == pytest.approx(1.)
    assert f(1.) == pytest.approx(0.)


@pytest.mark.parametrize('strategy', ['cos', 'linear'])
def test_one_cycle_closed_form(strategy):
    start, peak, end, pct = 0.04, 1., 4e-6, 0.3
    f = one_cycle(start, peak, end, pct_start=pct, anneal_strategy=strategy)
    ann = (lambda a, b, t: b + (a - b) * (1 + math.cos(math.pi * t)) / 2) if strategy == 'cos' else \
          (lambda a, b, t: a + (b - a) * t)
    for p in PCTS:
        want = ann(start, peak, p / pct) if p <= pct else ann(peak, end, (p - pct) / (1 - pct))
        assert f(p) == pytest.approx(want, rel=1e-12)
    assert f(0) == pytest.approx(start) and f(pct) == pytest.approx(peak) and f(1) == pytest.approx(end)


def test_one_cycle_three_phase():
    f = one_cycle(0.1, 1., 0.001, pct_start=0.25, three_phase=True)
    assert f(0.25) == pytest.approx(1.) and f(0.5) == pytest.approx(0.1) and f(1.) == pytest.approx(0.001)
    assert f(0.125) == pytest.approx(0.55) and f(0.375) == pytest.approx(0.55)


def test_one_cycle_with_total_steps_peaks_on_torchs_step():
    # OneCycleLR's first phase ends at step pct_start*total - 1
    total, pct = 100, 0.3
    f = one_cycle(0.04, 1., 4e-6, pct_start=pct, total_steps=total)
    vals = [f(progress_of_step(i, total)) for i in range(total)]
    assert max(range(total), key=vals.__getitem__) == 29
    assert vals[29] == pytest.approx(1.) and vals[0] == pytest.approx(0.04) and vals[-1] == pytest.approx(4e-6)


def test_progress_of_step():
    assert progress_of_step(0, 10) == 0. and progress_of_step(9, 10) == 1.
    assert progress_of_step(3, 7) == pytest.approx(0.5)
    assert progress_of_step(0, 1) == 0. and progress_of_step(20, 10) == 1.


def test_schedules_pickle_compare_and_print():
    f = one_cycle(0.1, 1., 0.01)
    g = pickle.loads(pickle.dumps(f))
    assert g == f and g(0.4) == f(0.4)
    assert Linear(1, 2) != Linear(1, 3) and Linear(1, 2) != Cosine(1, 2)
    assert 'Linear' in repr(Linear(1, 2)) and 'start=1' in repr(Linear(1, 2))
    assert len(Cosine(1., 0.).values(7)) == 7


@pytest.mark.parametrize('make,exc,word', [
    (lambda: Constant('a'), TypeError, 'value'),
    (lambda: Linear(0., float('nan')), ValueError, 'end'),
    (lambda: Cosine(None, 1.), TypeError, 'start'),
    (lambda: Exponential(0., 1.), ValueError, 'start'),
    (lambda: Exponential(1., -1.), ValueError, 'end'),
    (lambda: Phases([], []), ValueError, 'scheds'),
    (lambda: Phases([Constant(1.), Constant(2.)], []), ValueError, 'ends'),
    (lambda: Phases([Constant(1.), Constant(2.)], [1.5]), ValueError, 'ends'),
    (lambda: Phases([Constant(1.), Constant(2.), Constant(3.)], [0.6, 0.3]), ValueError, 'ends'),
    (lambda: Phases([Constant(1.), 3.], [0.5]), TypeError, 'callable'),
    (lambda: combine([0.5, 0.6], [Constant(1.), Constant(2.)]), ValueError, 'pcts'),
    (lambda: combine([0.5], [Constant(1.), Constant(2.)]), ValueError, 'pcts'),
    (lambda: combine([1.5, -0.5], [Constant(1.), Constant(2.)]), ValueError, 'pcts'),
    (lambda: one_cycle(0.1, 1., 0.01, anneal_strategy='step'), ValueError, 'anneal_strategy'),
    (lambda: one_cycle(0.1, 1., 0.01, pct_start=0.6, three_phase=True), ValueError, 'pct_start'),
])
def test_bad_arguments_raise_naming_the_parameter(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


@pytest.mark.parametrize('three_phase', [False, True])
@pytest.mark.parametrize('anneal', ['cos', 'linear'])
def test_one_cycle_matches_torch_on_very_short_runs(three_phase, anneal):
    # pct_start * total_steps < 1: torch starts part-way down its second phase; so must we.
    import warnings
    import torch
    from onecycle.schedules.functions import one_cycle, progress_of_step
    compared = 0
    for total in range(2, 12):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1., total_steps=total, pct_start=0.25,
                                                            three_phase=three_phase, anneal_strategy=anneal)
                ref = []
                for _ in range(total):
                    ref.append(opt.param_groups[0]['lr']); opt.step(); sched.step()
        except ZeroDivisionError:   # torch itself fails when a phase boundary falls exactly on step 0
            continue
        compared += 1
        f = one_cycle(1 / 25, 1., 1 / 25 / 1e4, 0.25, anneal, three_phase, total_steps=total)
        ours = [f(progress_of_step(i, total)) for i in range(total)]
        assert ours == pytest.approx(ref, rel=1e-9), total
    assert compared >= 6
