"""Suggestions read from range-test curves: each on a synthetic curve whose answer is known."""
import math
import random

import pytest

from onecycle.core.recorder import smooth_ema
from onecycle.tuning.suggest import (SPIKE_NOISE_UNITS, batch_noise, default_window, loss_slopes, lr_bounds,
                                     moving_average, pick_held, smooth_sweep, smooth_zero_lag, smoothed_slopes,
                                     suggest_edge, suggest_for_fit, suggest_max_bound, suggest_minimum,
                                     suggest_plateau_edge, suggest_spike, suggest_steep, suggest_valley)

XS = [-6 + 0.05 * i for i in range(121)]   # log10(lr) from 1e-6 to 1, 20 points a decade
LRS = [10 ** x for x in XS]


def _log(lr): return math.log10(lr)


def _fall_flat_rise(x):
    "Falls 0.3 a decade from 1e-5 to 1e-2, creeps down 0.001 a decade to 10**-1.5, then rises steeply."
    if x <= -5: return 2.0
    if x <= -2: return 2.0 - 0.3 * (x + 5)
    if x <= -1.5: return 1.1 - 0.001 * (x + 2)
    return 1.1 - 0.0005 + 4 * (x + 1.5) ** 2


def _sigmoid_drop(x):
    "A smooth drop centred on 1e-3 (steepest there), a minimum at 1e-1, then a rise."
    if x <= -1: return 2 - math.tanh((x + 3) / 0.5)
    return 2 - math.tanh(2 / 0.5) + 5 * (x + 1) ** 2


def test_minimum_is_the_lowest_loss_over_ten():
    losses = [(x + 2) ** 2 + 1 for x in XS]   # lowest at 1e-2
    assert suggest_minimum(LRS, losses) == pytest.approx(1e-3)
    assert suggest_minimum(LRS, losses, div=4) == pytest.approx(1e-2 / 4)
    # NaN/inf after divergence are ignored
    assert suggest_minimum(LRS, losses[:90] + [float('nan')] * 31) == pytest.approx(1e-3)


def test_steep_is_where_the_loss_falls_fastest_before_the_minimum():
    losses = [_sigmoid_drop(x) for x in XS]
    for window in (1, 5, 9):
        assert _log(suggest_steep(LRS, losses, window=window)) == pytest.approx(-3, abs=0.051)
    # the rise after the minimum is steeper than any fall, and still ignored
    assert min(loss_slopes(LRS, losses)) > -5 and max(loss_slopes(LRS, losses)) > 5


def test_max_bound_is_the_largest_lr_at_which_the_loss_still_falls():
    losses = [_fall_flat_rise(x) for x in XS]
    assert _log(suggest_max_bound(LRS, losses, window=1)) == pytest.approx(-2, abs=1e-9)
    # smoothing the slopes blurs the knee by at most half a window
    w = default_window(len(LRS))
    assert -2 <= _log(suggest_max_bound(LRS, losses)) <= -2 + 0.05 * (w // 2)
    # and it is not the minimum: the lowest loss is at 10**-1.5, on the flat stretch
    assert _log(suggest_minimum(LRS, losses) * 10) == pytest.approx(-1.5, abs=1e-9)


def test_max_bound_on_a_noisy_sweep_through_smooth_sweep():
    rnd = random.Random(0)
    raw = [_fall_flat_rise(x) + rnd.gauss(0, 0.03) for x in XS]
    raw[-10:] = [50., float('inf'), float('nan')] + [80.] * 7   # the blow-up at the end
    smooth = smooth_sweep(raw)
    assert abs(_log(suggest_max_bound(LRS, smooth)) + 2) <= 0.25
    assert -2.2 <= _log(suggest_minimum(LRS, smooth) * 10) <= -1.4   # the bottom is the flat stretch, not the blow-up


def test_max_bound_when_the_loss_never_falls():
    assert suggest_max_bound(LRS, [1 + 0.01 * i for i in range(len(LRS))]) == LRS[0]


def test_valley_is_two_thirds_down_the_longest_fall():
    # rising slightly up to index 20, falling strictly from 20 to 80, then rising
    losses = [0.5 + 0.025 * i for i in range(21)] + [1.0 - 0.8 * (i - 20) / 60 for i in range(21, 81)] \
        + [0.2 + 0.1 * (i - 80) for i in range(81, 121)]
    assert suggest_valley(LRS, losses) == LRS[20 + 40]


def test_bounds_follow_smith():
    b = lr_bounds(0.12)
    assert b['cyclical_min'] == pytest.approx((0.03, 0.04))
    assert b['one_cycle_min'] == pytest.approx((0.006, 0.012))
    with pytest.raises(ValueError, match='max_lr'): lr_bounds(0.)
    with pytest.raises(ValueError, match='max_lr'): lr_bounds(float('nan'))


def test_zero_lag_smoothing_does_not_trail_the_curve():
    step = [1.] * 50 + [0.] * 50
    one_way = smooth_ema(step, 0.9)
    both_ways = smooth_zero_lag(step, 0.9)
    crossing = lambda ys: next(i for i, y in enumerate(ys) if y < 0.5)
    assert crossing(one_way) >= 55          # a one-sided EMA drops late
    assert crossing(both_ways) in (49, 50)  # forwards-backwards keeps the drop where it was
    assert both_ways[49] == pytest.approx(1 - both_ways[50], abs=0.02)   # symmetric about the step


def test_smooth_sweep_caps_the_blow_up():
    raw = [1.0 + 0.01 * (i % 3) for i in range(100)]
    raw[60] = 1000.
    raw[99] = float('nan')
    s = smooth_sweep(raw)
    assert len(s) == 100 and all(math.isfinite(v) for v in s)
    assert max(s) <= 1.02 + 1e-9   # the spike is capped at the starting level, so it leaks nowhere
    assert smooth_sweep([3., 2., 1.], beta=0.) == [3., 2., 1.]


def test_moving_average_is_centred():
    ramp = [float(i) for i in range(10)]
    assert moving_average(ramp, 5) == pytest.approx(ramp)   # symmetric windows keep a ramp in place
    assert moving_average([0, 0, 3, 0, 0], 3) == pytest.approx([0, 1, 1, 1, 0])
    assert smoothed_slopes([1e-3, 1e-2, 1e-1], [3., 2., 1.], window=1) == pytest.approx([-1, -1, -1])


@pytest.mark.parametrize('f', [suggest_steep, suggest_valley, suggest_max_bound])
def test_bad_curves_are_clear_errors(f):
    with pytest.raises(ValueError, match='length'): f([1e-3, 1e-2, 1e-1], [1., 2.])
    with pytest.raises(ValueError, match='at least 3'): f([1e-3, 1e-2], [1., 2.])
    with pytest.raises(ValueError, match='> 0'): f([0., 1e-2, 1e-1], [1., 2., 3.])
    with pytest.raises(ValueError, match='NaN'): f([1e-3, 1e-2, 1e-1], [float('nan')] * 3)
    with pytest.raises(ValueError, match='window'): moving_average([1., 2.], 0)
    with pytest.raises(ValueError, match='frac'): suggest_max_bound(LRS, [1.] * len(LRS), frac=1.5)


# --- the suggestion for a fit of a given length --------------------------------------------------
def _sweep(n, lo=1e-6, hi=1.):
    "An exponential sweep of n steps on the fall-flat-rise curve (the same curve whatever n)."
    lrs = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    return lrs, [_fall_flat_rise(_log(l)) for l in lrs]


def test_one_cycle_exposure_counts_the_steps_near_the_peak():
    from onecycle.schedules.functions import one_cycle
    from onecycle.tuning.suggest import one_cycle_exposure
    f = one_cycle(0.04, 1., 1e-5)
    expect = sum(f(i / 9999) > 1 / math.e for i in range(10000)) / 10000
    assert one_cycle_exposure(1000) == pytest.approx(1000 * expect, rel=0.01)
    assert 0.5 < expect < 0.7
    assert one_cycle_exposure(1000, pct_start=0.5) != one_cycle_exposure(1000)
    with pytest.raises(ValueError, match='fit_steps'): one_cycle_exposure(0)


def test_edge_is_where_the_loss_leaves_its_floor():
    "Lowest at 10**-1.5; the loss then rises 4 (x + 1.5)**2, above the floor by 10% of its 0.9 drop at -1.35."
    losses = [_fall_flat_rise(x) for x in XS]
    drop = losses[0] - min(losses)
    assert drop == pytest.approx(0.9, abs=0.001)
    assert _log(suggest_edge(LRS, losses)) == pytest.approx(-1.5 + math.sqrt(0.1 * drop / 4), abs=0.051)
    assert _log(suggest_edge(LRS, losses, band=0.4)) == pytest.approx(-1.5 + math.sqrt(0.4 * drop / 4), abs=0.051)
    assert suggest_edge(LRS, losses, band=0) == pytest.approx(suggest_minimum(LRS, losses) * 10)   # the lowest point
    assert suggest_max_bound(LRS, losses) < suggest_edge(LRS, losses)
    # a sweep stopped by divergence: NaN and inf are not on the floor, nor past it
    assert suggest_edge(LRS[:82], losses[:80] + [float('nan'), float('inf')]) == LRS[79]
    # the loss never falls: the smallest lr, as for the max bound
    assert suggest_edge(LRS, [1 + 0.01 * i for i in range(len(LRS))]) == LRS[0]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match='band'): suggest_edge(LRS, losses, band=bad)


def test_one_lucky_batch_moves_the_max_bound_across_a_flat_floor_but_not_the_edge():
    """A noisy sweep that falls from 1e-5 to 1e-3, runs flat to 1e-1 and then rises, with one batch far below
    the others somewhere on the floor (as one data order may give): wherever that batch lands, Smith's max
    bound follows the lowest point up to it, and the edge stays where the loss turns up."""
    def curve(x): return 2.0 - 0.45 * (min(x, -3) + 5) if x <= -1 else 1.1 + 3 * (x + 1) ** 2
    bounds, edges = [], []
    for dip in (-2.9, -2.0, -1.2):   # log10 lr of the lucky batch: early, mid and late on the floor
        rnd = random.Random(1)
        losses = [curve(x) + rnd.gauss(0, 0.03) - (0.4 if abs(x - dip) < 0.01 else 0.) for x in XS]
        smooth = smooth_sweep(losses)
        bounds.append(_log(suggest_max_bound(LRS, smooth)))
        edges.append(_log(suggest_edge(LRS, smooth)))
    assert max(bounds) - min(bounds) > 0.9    # about a factor 10 between the dip's positions
    assert max(edges) - min(edges) <= 0.1     # a quarter of a factor 2
    assert all(-1.1 < e < -0.8 for e in edges)   # the rise starts at 1e-1


def _plateau_then_rise(x, rnd, sd=0.05):
    "Flat at 2.3 (batch noise `sd`) up to 10**-1.5, where it rises 3 (x + 1.5)**2: a net that never learnt."
    return 2.3 + rnd.gauss(0, sd) + (3 * (x + 1.5) ** 2 if x > -1.5 else 0.)


def test_plateau_edge_is_where_a_sweep_that_never_learnt_turns_up_whatever_its_noise():
    """On a sweep that stays on its plateau, the lowest smoothed point is wherever lucky batches fell, and the edge
    read from it goes with it; where the loss leaves the plateau for good is the one thing the curve shows."""
    edges, plateau = [], []
    for seed in range(8):
        rnd = random.Random(seed)
        losses = [_plateau_then_rise(x, rnd) for x in XS]
        smooth = smooth_sweep(losses)
        edges.append(_log(suggest_edge(LRS, smooth)))
        plateau.append(_log(suggest_plateau_edge(LRS, losses, smooth)))
    assert max(edges) - min(edges) > 1.5          # noise reads: more than a factor 30 apart
    assert min(edges) < -3                        # some far down the plateau
    assert all(-1.8 <= p <= -1.3 for p in plateau), plateau   # within a factor 2 of the rise at 10**-1.5
    assert suggest_plateau_edge(LRS, losses) == suggest_plateau_edge(LRS, losses, smooth_sweep(losses))


def _blow_up_then_chance(x, rnd, bump, sd=0.05):
    """Flat at 2.3 up to 10**-2.5, then `bump` above it to 10**-2 (a net blown up past its edge, or, with a small
    bump, a flat curve wandering or a rise that came back), then back at 2.3 (collapsed to chance, or on its plateau
    again) until it rises for good at 10**-1 as _plateau_then_rise does at 10**-1.5."""
    return 2.3 + rnd.gauss(0, sd) + (bump if -2.5 < x <= -2 else 3 * (x + 1) ** 2 if x > -1 else 0.)


def test_plateau_edge_is_before_a_rise_that_blew_up_even_where_the_loss_came_back():
    """ShuffleNetV2 under SGD: the loss rose to 5-14x the plateau's level at 0.03, fell back to the level (the net at
    chance) and rose again near 2, where the plateau edge was read, its fit at chance. A rise in which a batch's loss
    reached PLATEAU_BREAK times the level, or NaN, ends the plateau; one that stayed below does not, however many
    noises up (MobileNetV2's early rises reached 1.27x; its fits do best above them)."""
    from onecycle.tuning.suggest import PLATEAU_BREAK
    reads = {}
    for bump in (3., float('nan'), 0.6, 0.05):
        for seed in range(8):
            rnd = random.Random(seed)
            reads.setdefault(bump if bump == bump else 'nan', []).append(
                _log(suggest_plateau_edge(LRS, [_blow_up_then_chance(x, rnd, bump) for x in XS])))
    assert (2.3 + 3) / 2.3 > PLATEAU_BREAK > (2.3 + 0.6 + 3 * 0.05) / 2.3
    for blown in (reads[3.], reads['nan']):   # before the blow-up at 10**-2.5, not near 10**-1
        assert all(-3 <= b <= -2.45 for b in blown), blown
    for came_back in (reads[0.6], reads[0.05]):   # 12 or 1 noise up for a while: still the plateau
        assert all(-1.7 <= w <= -0.3 for w in came_back), came_back


def test_plateau_edge_is_none_for_a_sweep_that_learnt_or_never_rose():
    rnd = random.Random(0)
    assert suggest_plateau_edge(LRS, [_fall_flat_rise(x) + rnd.gauss(0, 0.02) for x in XS]) is None   # it fell 0.9
    assert suggest_plateau_edge(LRS, [2.3 + rnd.gauss(0, 0.05) for _ in XS]) is None   # flat to the end
    with pytest.raises(ValueError, match='length'):
        suggest_plateau_edge(LRS, [2.3] * len(LRS), [2.3] * 3)


def test_plateau_anchor_is_the_plateau_edge_where_it_lies_above_the_sweeps_edge():
    "What suggest_for_fit anchors a flat sweep at, and what the range test's warning names, is one reading."
    from onecycle.tuning.suggest import plateau_anchor
    for seed in range(4):
        rnd = random.Random(seed)
        losses = [_plateau_then_rise(x, rnd) for x in XS]
        smooth = smooth_sweep(losses)
        rise = suggest_plateau_edge(LRS, losses, smooth)
        assert rise > suggest_edge(LRS, smooth)
        assert plateau_anchor(LRS, losses, smooth) == rise
        assert suggest_for_fit(LRS, smooth, 100, exponent=0., raw_losses=losses, plateau=1.) == pytest.approx(rise)
    learnt = [_fall_flat_rise(x) for x in XS]   # a floor: no plateau edge, nothing anchored
    assert plateau_anchor(LRS, learnt, smooth_sweep(learnt)) is None


def test_a_plateau_sweep_anchors_the_fit_where_it_turns_up_only_when_asked():
    """suggest_for_fit(plateau=share) (the range test's choice for SGD on a sweep that learnt too little) anchors
    a sweep with no floor at that share of its plateau edge, lowered for the fit's length as the edge is,
    neither rescaled for the sweep's length (a net that never learnt was not sharpened by it) nor held by spikes
    (its batches top the start by noise); without it, or without raw losses, it reads the edge, as before."""
    for seed in range(4):
        rnd = random.Random(seed)
        losses = [_plateau_then_rise(x, rnd) for x in XS]
        smooth = smooth_sweep(losses)
        rise = suggest_plateau_edge(LRS, losses, smooth)
        kw = dict(fit_steps=100, lift=0.5, raw_losses=losses)
        assert suggest_for_fit(LRS, smooth, plateau=1., exponent=0., **kw) == pytest.approx(rise)
        long_fit = suggest_for_fit(LRS, smooth, plateau=1., exponent=0.2, **{**kw, 'fit_steps': 5000})
        assert long_fit < rise / 1.5   # lowered for a long fit's time near its peak
        assert suggest_for_fit(LRS, smooth, plateau=1., exponent=0., limit=1e-3, **kw) == 1e-3
        assert suggest_for_fit(LRS, smooth, plateau=0.5, exponent=0., **kw) == pytest.approx(rise / 2)   # a share
        with pytest.raises(ValueError, match='plateau'): suggest_for_fit(LRS, smooth, plateau=1.5, **kw)
        plain = suggest_for_fit(LRS, smooth, exponent=0., **kw)
        assert plain < rise   # read from the noise: a spike caps it at a quarter of a noise edge
        assert suggest_for_fit(LRS, smooth, fit_steps=100, exponent=0., plateau=1.) == \
            suggest_for_fit(LRS, smooth, fit_steps=100, exponent=0.)
    learnt = [_fall_flat_rise(x) for x in XS]   # a sweep with a floor: plateau changes nothing
    assert suggest_for_fit(LRS, smooth_sweep(learnt), 100, raw_losses=learnt, plateau=1.) == \
        suggest_for_fit(LRS, smooth_sweep(learnt), 100, raw_losses=learnt)


def test_suggest_for_fit_lowers_the_edge_with_the_fit_length():
    from onecycle.tuning.suggest import (EXPOSURE_EXPONENT, REFERENCE_EXPOSURE, SWEEP_EXPONENT, suggest_for_fit,
                                         sweep_exposure)
    lrs, losses = _sweep(100, 1e-7, 10.)   # the default sweep: no rescaling for its length
    m = suggest_edge(lrs, losses)
    k = sweep_exposure(lrs, m)
    assert k == pytest.approx(REFERENCE_EXPOSURE, rel=0.01)   # steps per factor e, not a rounded count
    assert sweep_exposure([1e-3, 1e-2], 1e-2) == 1 and sweep_exposure([1e-3], 1e-2) == 1
    r = (k / REFERENCE_EXPOSURE) ** SWEEP_EXPONENT
    short, mid, long = (suggest_for_fit(lrs, losses, n) for n in (5, 500, 50000))
    assert short == pytest.approx(min(m, m * r))   # a fit no longer near its peak than the sweep: the edge
    assert m > mid > long >= 0.1 * m * r           # longer fits sit further below it, never below min_factor
    assert mid == pytest.approx(m * r * (REFERENCE_EXPOSURE / (500 * 0.59)) ** EXPOSURE_EXPONENT, rel=0.05)
    assert suggest_for_fit(lrs, losses, 10 ** 9) == pytest.approx(0.1 * m * r)
    with pytest.raises(ValueError, match='exponent'): suggest_for_fit(lrs, losses, 500, exponent=-1)


def test_an_adam_like_optimizer_keeps_the_edge_whatever_the_fit_length():
    "Adam divides its steps by a running gradient scale: the sweep's edge holds for a long fit; SGD's does not."
    from onecycle.tuning.suggest import exposure_exponent, suggest_for_fit
    assert exposure_exponent(True) == 0 and 0 < exposure_exponent(False) < 1
    lrs, losses = _sweep(100, 1e-7, 10.)
    m = suggest_edge(lrs, losses)
    adam = [suggest_for_fit(lrs, losses, n, exponent=exposure_exponent(True)) for n in (5, 500, 50000)]
    sgd = [suggest_for_fit(lrs, losses, n, exponent=exposure_exponent(False)) for n in (5, 500, 50000)]
    assert adam == pytest.approx([adam[0]] * 3) and adam[0] == pytest.approx(m, rel=0.02)
    assert sgd[0] == pytest.approx(adam[0]) and sgd[2] < sgd[1] < adam[1]


def test_a_model_with_attention_is_lowered_for_the_fit_length_whatever_the_optimizer():
    "Attention logits grow with a long peak under Adam and on a LayerNorm'd model too: SGD's exponent for both."
    from onecycle.tuning.suggest import EXPOSURE_EXPONENT, exposure_exponent
    assert exposure_exponent(True, attention=True) == EXPOSURE_EXPONENT
    assert exposure_exponent(False, normalized=True, attention=True) == EXPOSURE_EXPONENT
    assert exposure_exponent(True, normalized=True) == exposure_exponent(False, normalized=True) == 0


def test_an_adam_like_fit_is_never_suggested_above_the_weights_typical_size():
    "An Adam step moves each weight by about the lr: the suggestion stops at the weights' scale, SGD's does not."
    from onecycle.tuning.suggest import ADAPTIVE_STEP_LIMIT, exposure_exponent, step_limit, suggest_for_fit
    assert step_limit(True, 0.05) == pytest.approx(ADAPTIVE_STEP_LIMIT * 0.05) and ADAPTIVE_STEP_LIMIT == 1
    assert step_limit(False, 0.05) is None and step_limit(True, None) is None
    assert step_limit(True, 0.05, running_max=True) == pytest.approx(0.1)          # Adamax: twice the scale
    assert step_limit(False, 0.05, running_max=True) is None
    lrs, losses = _sweep(100, 1e-7, 10.)
    free = suggest_for_fit(lrs, losses, 500, exponent=exposure_exponent(True), raw_losses=losses)
    assert suggest_for_fit(lrs, losses, 500, exponent=exposure_exponent(True), raw_losses=losses,
                           limit=free / 3) == pytest.approx(free / 3)          # binds: exactly the limit
    for above in (free, 2 * free):                                             # a limit at or above it: no change
        assert suggest_for_fit(lrs, losses, 500, exponent=exposure_exponent(True), raw_losses=losses,
                               limit=above) == pytest.approx(free)
    assert suggest_for_fit(lrs, losses, 500, limit=free / 10) == pytest.approx(free / 10)   # without raw losses too
    for bad in (0, -1., float('nan'), 'big'):
        with pytest.raises((TypeError, ValueError), match='limit'): suggest_for_fit(lrs, losses, 500, limit=bad)


def test_suggest_for_fit_puts_a_longer_sweep_back_on_the_default_scale():
    "Three times the steps near the edge E: E is taken to be 3 ** 0.4 too low, and lifted (never above E itself)."
    from onecycle.tuning.suggest import SWEEP_EXPONENT, suggest_for_fit, sweep_exposure
    assert SWEEP_EXPONENT == 0.4
    lrs, losses = _sweep(100, 1e-7, 10.)
    lrs3, losses3 = _sweep(300, 1e-7, 10.)
    m, m3 = suggest_edge(lrs, losses), suggest_edge(lrs3, losses3)
    ratio = (sweep_exposure(lrs3, m3) / sweep_exposure(lrs, m)) ** 0.4
    assert 1.4 < ratio < 1.7
    a, b = suggest_for_fit(lrs, losses, 2000), suggest_for_fit(lrs3, losses3, 2000)
    assert b / a == pytest.approx(ratio * m3 / m, rel=0.05) and b <= m3
    # an Adam-like optimizer keeps E, on the default sweep's scale: the longer sweep's own E is lifted above it
    a0, b0 = (suggest_for_fit(x, y, 2000, exponent=0) for x, y in ((lrs, losses), (lrs3, losses3)))
    assert b0 / a0 == pytest.approx(ratio * m3 / m, rel=0.05) and b0 > m3 and a0 == pytest.approx(m, rel=0.02)
    # measured on a validation curve: the exposure comes from the training steps' lrs
    e3 = suggest_edge(lrs3[::3], losses3[::3])
    assert suggest_for_fit(lrs3[::3], losses3[::3], 2000, sweep_lrs=lrs3) == pytest.approx(min(e3, b * e3 / m3),
                                                                                           rel=0.1)


# --- the first spike ------------------------------------------------------------------------------
def _spiky_sweep(spike_at, height, seed=0, noise=0.02):
    """A recurrent net's sweep: falls from 2.3 (1e-4 to 1e-2), runs on down to a lower floor at 1e-1, rises
    past it; one step at log10 lr `spike_at` jumps `height` above the start. Raw losses, with batch noise."""
    def curve(x):
        if x <= -4: return 2.3
        if x <= -1: return 2.3 - 0.2 * (x + 4)
        return 1.7 + 3 * (x + 1) ** 2
    rnd = random.Random(seed)
    return [min(curve(x), 2.3) + rnd.gauss(0, noise) + (2.3 + height - curve(x) if abs(x - spike_at) < 0.01 else 0.)
            for x in XS]


def test_spike_is_the_lr_before_a_step_jumps_above_the_start():
    "One step at 10**-1.7 returns to above the untrained loss: the spike rule stops there, the edge does not."
    losses = _spiky_sweep(-1.7, 0.3)
    smooth = smooth_sweep(losses)
    assert _log(suggest_spike(LRS, losses, smooth)) == pytest.approx(-1.75, abs=1e-6)   # the step before it
    assert suggest_spike(LRS, losses) == suggest_spike(LRS, losses, smooth)            # smooth_sweep by default
    assert _log(suggest_edge(LRS, smooth)) > -1.2    # the smoothed curve runs on down past the spike
    # NaN and inf are spikes too
    nan = _spiky_sweep(-9, 0) [:90] + [float('nan')] + _spiky_sweep(-9, 0)[91:]
    assert suggest_spike(LRS, nan) == LRS[89]


def test_a_lasting_spike_needs_that_many_steps_in_a_row_above_the_start():
    """With lasting=2 (the hold check's probes on nets with dropout) one batch above the start is not a spike; two
    in a row are, read before the first of them; a NaN counts at once. lasting=1 is the rule as it was."""
    one = _spiky_sweep(-1.7, 0.3)
    i = next(j for j, x in enumerate(XS) if x >= -1.7 - 1e-9)
    two = one[:i + 1] + [one[i]] + one[i + 2:]   # the spike's step and the next one both above the start
    blow_up = suggest_spike(LRS, one, lasting=2)
    assert suggest_spike(LRS, one, lasting=1) == suggest_spike(LRS, one) == LRS[i - 1]
    assert blow_up > 10 ** -1.2                     # the lone batch passed over: the sweep's blow-up at its end
    assert suggest_spike(LRS, two, lasting=2) == LRS[i - 1]
    nan = one[:i] + [float('nan')] + one[i + 1:]
    assert suggest_spike(LRS, nan, lasting=2) == LRS[i - 1]
    for bad in (0, 1.5, None):
        with pytest.raises((TypeError, ValueError), match='lasting'): suggest_spike(LRS, one, lasting=bad)


def test_a_spike_early_in_the_descent_is_batch_noise_not_instability():
    """Before the smoothed loss is a third of the way down, the loss is still near the start and one noisy
    batch can top it: not counted. Without a spike, the rule stops where the sweep blows up at its end, past
    the edge; a sweep that never climbs back above its start has no spike at all (its largest lr)."""
    calm = _spiky_sweep(-9, 0)
    blow_up = suggest_spike(LRS, calm)
    assert suggest_edge(LRS, smooth_sweep(calm)) < blow_up < LRS[-1]
    early = _spiky_sweep(-3.8, 0.05)    # 1 % of the way down
    assert suggest_spike(LRS, early) == blow_up
    # counted when asked to (on a noiseless curve: with noise, a flat start tops its own first points)
    assert suggest_spike(LRS, _spiky_sweep(-3.8, 0.05, noise=0), after=0) == pytest.approx(10 ** -3.85)
    assert suggest_spike(LRS, [min(l, 2.2) for l in calm]) == LRS[-1]
    # the loss never falls: the smallest lr, as for the edge and the max bound
    assert suggest_spike(LRS, [1 + 0.01 * i for i in range(len(LRS))]) == LRS[0]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match='after'): suggest_spike(LRS, early, after=bad)
    with pytest.raises(ValueError, match='smooth'): suggest_spike(LRS, early, smooth=early[:-1])
    nan_start = [float('nan')] * 6 + early[6:]   # given a smooth curve of its own, it still says what is wrong
    with pytest.raises(ValueError, match='starts with NaN'): suggest_spike(LRS, nan_start, smooth=early)


def test_suggest_for_fit_never_passes_the_first_spike_nor_falls_more_than_4x_for_it():
    """Given the raw losses, the fit suggestion is capped at the spike, not lowered from it: an Adam-like
    optimizer (exponent 0) gets the spike itself when it lies within a factor 4 below the edge, and a quarter
    of the edge when it lies further down (one step can be an optimizer's transient); SGD's lowered edge stays
    where it was when it is below the cap already."""
    from onecycle.tuning.suggest import SPIKE_TRUST, suggest_for_fit
    calm = _spiky_sweep(-9, 0)
    edge = suggest_edge(LRS, smooth_sweep(calm))
    rescale = suggest_for_fit(LRS, smooth_sweep(calm), 600, exponent=0) / edge   # this sweep is not the default's
    near = _spiky_sweep(-1.2, 0.3)   # a spike at 10**-1.2, within 4x of the edge
    smooth = smooth_sweep(near)
    spike = suggest_spike(LRS, near, smooth)
    assert suggest_edge(LRS, smooth) == edge and edge / SPIKE_TRUST < spike < edge
    adam = suggest_for_fit(LRS, smooth, 600, exponent=0, raw_losses=near)
    assert adam == pytest.approx(spike * rescale) and adam < suggest_for_fit(LRS, smooth, 600, exponent=0)
    far = _spiky_sweep(-2.3, 0.3)    # a spike 10x below the edge: trusted for a factor 4 only
    smooth_far = smooth_sweep(far)
    assert suggest_spike(LRS, far, smooth_far) < suggest_edge(LRS, smooth_far) / 8
    assert suggest_for_fit(LRS, smooth_far, 600, exponent=0, raw_losses=far) == \
        pytest.approx(suggest_edge(LRS, smooth_far) / SPIKE_TRUST * rescale)
    sgd = suggest_for_fit(LRS, smooth, 60000, exponent=0.4)
    assert sgd < adam and suggest_for_fit(LRS, smooth, 60000, exponent=0.4, raw_losses=near) == sgd
    # no spike: the same suggestion as without the raw losses
    assert suggest_for_fit(LRS, smooth_sweep(calm), 600, exponent=0, raw_losses=calm) == \
        suggest_for_fit(LRS, smooth_sweep(calm), 600, exponent=0)


# --- the spike lift (SGD-like optimizers) ---------------------------------------------------------
def _floor_then(rise_per_decade, blow_up_at=9.):
    """Falls from 2.3 to 1.3 between 1e-5 and 1e-2, then climbs `rise_per_decade` a decade (gently, as the
    noise of the steps grows with the lr; steeply, as training turns unstable) until every step from
    10**blow_up_at on is above the start. Raw losses, noiseless."""
    def curve(x):
        if x <= -5: return 2.3
        if x <= -2: return 2.3 - (x + 5) / 3
        return min(1.3 + rise_per_decade * (x + 2), 2.2)
    return [curve(x) if x < blow_up_at else 3.0 for x in XS]


def test_a_spike_far_past_the_edge_lifts_an_sgd_fit_towards_it_and_a_near_one_barely():
    """A gentle rise past the edge E that spikes far beyond it is step noise, not instability: an SGD-like
    fit's anchor moves from E to sqrt(E * P). A steep rise spikes soon after E and moves it little; an
    Adam-like optimizer (lift 0) keeps E; the lift never exceeds 4x, nor the suggestion the spike."""
    from onecycle.tuning.suggest import MAX_SPIKE_LIFT, SPIKE_LIFT, spike_lift, suggest_for_fit
    assert spike_lift(False) == SPIKE_LIFT == 0.5 and spike_lift(True) == 0 and MAX_SPIKE_LIFT == 4
    lifts = {}
    for name, raw in (('gentle', _floor_then(0.1, blow_up_at=-0.2)), ('steep', _floor_then(1., blow_up_at=-1.5)),
                      ('never', _floor_then(0.2))):
        smooth = smooth_sweep(raw)
        edge, spike = suggest_edge(LRS, smooth), suggest_spike(LRS, raw, smooth)
        assert spike > edge
        plain = suggest_for_fit(LRS, smooth, 600, raw_losses=raw)     # lift 0: as before the lift
        lifted = suggest_for_fit(LRS, smooth, 600, raw_losses=raw, lift=spike_lift(False))
        assert suggest_for_fit(LRS, smooth, 600, raw_losses=raw, lift=spike_lift(True)) == plain
        assert lifted / plain == pytest.approx(min((spike / edge) ** 0.5, 4.))
        assert lifted < spike                                            # never past the first spike
        # without the raw losses there is no spike to lift towards
        assert suggest_for_fit(LRS, smooth, 600, lift=0.5) == suggest_for_fit(LRS, smooth, 600)
        lifts[name] = lifted / plain
    assert lifts['gentle'] > 1.9 and lifts['steep'] < 1.6
    assert lifts['never'] == 4.          # no spike at all: the sweep's last lr, 30x past E, capped
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match='lift'): suggest_for_fit(LRS, smooth_sweep(_floor_then(0.1)), 600,
                                                                      lift=bad)


# --- pick_held: the largest lr whose held probe did not end far above the probes below it -----------------------
def test_pick_held_takes_the_largest_lr_whose_probe_ended_within_the_ratio_of_those_below():
    # a doubling costs a healthy net's held probe up to about 2x in end loss (noise grows with the lr): held
    assert pick_held([0.8, 0.4], [0.48, 0.17]) == 0.8
    assert pick_held([0.4, 0.8], [0.17, 0.48]) == 0.8   # the order of the probes does not matter
    # a collapse ends tens of times above: the half is taken
    assert pick_held([0.86, 0.43], [1.72, 0.131]) == 0.43
    # the ratio's edge itself holds; a hair above does not
    assert pick_held([1.0, 0.5], [3.0, 1.0]) == 1.0 and pick_held([1.0, 0.5], [3.0001, 1.0]) == 0.5
    assert pick_held([1.0, 0.5], [2.0, 1.0], ratio=1.5) == 0.5


def test_shortened_ratio_scales_the_excess_over_one_and_refuses_a_fraction_outside_0_1():
    from onecycle.tuning.suggest import shortened_ratio
    assert shortened_ratio(3., 1.) == 3. and shortened_ratio(3., 0.5) == pytest.approx(2.)
    assert shortened_ratio(3., 0.64) == pytest.approx(2.28) and 1 < shortened_ratio(3., 1e-3) < 1.01
    for bad in (0., -0.5, 1.5):
        with pytest.raises(ValueError, match='fraction'): shortened_ratio(3., bad)


def test_pick_held_compares_each_lr_with_the_best_probe_below_it_not_only_its_neighbour():
    # S and S/2 both collapsed (S/2 spiked, so a third probe ran): each is within 3x of its neighbour, but
    # S/2 ended 4.8x above S/4, and S far more: S/4
    assert pick_held([0.6, 0.3, 0.15], [2.33, 0.71, 0.148]) == 0.15
    # S held against both lower probes: S
    assert pick_held([0.6, 0.3, 0.15], [0.5, 0.31, 0.33]) == 0.6


def test_pick_held_never_takes_a_diverged_probe_and_falls_back_to_the_smallest_lr():
    inf = math.inf
    assert pick_held([1.0, 0.5], [inf, 0.4]) == 0.5
    assert pick_held([1.0, 0.5, 0.25], [inf, inf, inf]) == 0.25
    assert pick_held([1.0, 0.5, 0.25], [0.3, inf, inf]) == 1.0   # finite above probes that all diverged: held
    assert pick_held([0.5], [inf]) == 0.5


def test_pick_held_reads_no_ratio_from_losses_that_reach_zero_or_below():
    # a Gaussian NLL ending at -1.2 and -2.5: 'within 3x' means nothing there; the largest finite probe stands
    assert pick_held([1.0, 0.5], [-1.2, -2.5]) == 1.0
    assert pick_held([1.0, 0.5, 0.25], [math.inf, -2.5, 0.4]) == 0.5
    assert pick_held([1.0, 0.5], [0.0, 0.3]) == 1.0


def test_pick_held_rejects_a_probe_back_where_it_started_when_one_below_learnt():
    # a 10-class task the probes barely get into: S ended at 2.33, above its start 2.30 (chance is ln 10), 1.3x
    # above S/2's 1.74, which the ratio alone accepts; it learnt nothing, S/2 did: S/2
    assert pick_held([0.2, 0.1, 0.05], [2.33, 1.737, 1.649]) == 0.2
    assert pick_held([0.2, 0.1, 0.05], [2.33, 1.737, 1.649], starts=[2.30, 2.30, 2.30]) == 0.1
    assert pick_held([0.05, 0.2, 0.1], [1.649, 2.33, 1.737], starts=[2.30, 2.30, 2.30]) == 0.1   # any order
    # S/2 learnt nothing either: S/4
    assert pick_held([0.2, 0.1, 0.05], [2.33, 2.31, 1.649], starts=[2.30, 2.30, 2.30]) == 0.05
    # no probe learnt (a plateau every lr sits on): nothing to tell them apart by, the ratio decides
    assert pick_held([0.2, 0.1], [2.33, 2.31], starts=[2.30, 2.30]) == 0.2
    # one below that learnt nothing changes nothing
    assert pick_held([0.2, 0.1], [1.0, 2.4], starts=[2.30, 2.30]) == 0.2
    # a Gaussian NLL starting at 0.5: S ended at 0.6, above where it started, S/2 at -1.0: S/2
    assert pick_held([1.0, 0.5], [0.6, -1.0], starts=[0.5, 0.5]) == 0.5


def test_pick_held_rejects_a_probe_that_learnt_next_to_nothing_where_one_below_learnt():
    from onecycle.tuning.suggest import HOLD_DROP
    # a plain CNN on 16x16 digits under SGD, on its plateau: the probes at 0.71 and 0.36 fell 0.007 and 0.011 from
    # 2.30, the one at 0.18 fell 0.28; every end is within 3x of the lowest, and each learnt something, yet the two
    # above barely left the plateau the gentler one left (its fit at 0.71 scored 9.4%, at 0.178 59.6%): 0.18
    starts, ends = [2.3035, 2.3035, 2.3035], [2.2966, 2.2930, 2.0225]
    assert pick_held([0.71, 0.36, 0.18], ends) == 0.71
    assert pick_held([0.71, 0.36, 0.18], ends, starts=starts) == 0.18
    # half the fall below it holds; a hair less does not
    assert HOLD_DROP == 0.5
    assert pick_held([0.2, 0.1], [2.0, 1.5], starts=[2.5, 2.5]) == 0.2      # 0.5 of 1.0: exactly half
    assert pick_held([0.2, 0.1], [2.0001, 1.5], starts=[2.5, 2.5]) == 0.1
    # an MNIST-1D CNN at batch 32 (tune, seed 0): S ended 1.3x above S/2, within the ratio, but fell 0.32 where S/2
    # fell 0.69; its fit at S 48.9%, at S/2 89.1%
    assert pick_held([0.27, 0.134], [1.99, 1.62], starts=[2.31, 2.31]) == 0.134
    # compared with the largest fall below, not the neighbour's: S/2 barely fell, S/4 fell far
    assert pick_held([0.4, 0.2, 0.1], [1.9, 2.25, 0.5], starts=[2.3, 2.3, 2.3]) == 0.1
    # (each probe's fall and the largest fall below it, in the order given; what held_line reports)
    from onecycle.tuning.suggest import held_falls
    falls = held_falls([0.4, 0.2, 0.1], [1.9, 2.25, 0.5], [2.3, 2.3, 2.3])
    assert [f for f, _ in falls] == pytest.approx([0.4, 0.05, 1.8]) and [b for _, b in falls] == pytest.approx(
        [1.8, 1.8, 0.])
    assert held_falls([1.0, 0.5], [math.inf, 1.0], [2.3, 2.3])[0] == (-math.inf, pytest.approx(1.3))
    # healthy nets: a larger lr's probe falls about as far (the ratio reads them as before)
    assert pick_held([0.8, 0.4], [0.48, 0.17], starts=[2.3, 2.3]) == 0.8
    # spirals at a batch of 16, where the drop rule costs nothing: 0.10 of 0.40 is under half: S/2 (both fits 99.5%+)
    assert pick_held([0.1475, 0.0737], [0.60, 0.30], starts=[0.697, 0.697]) == 0.0737


@pytest.mark.parametrize('kwargs, exc, word', [
    (dict(lrs=[1.0, 0.5], ends=[1.0]), ValueError, 'differ in length'),
    (dict(lrs=[], ends=[]), ValueError, 'no probes'),
    (dict(lrs=[1.0, 0.0], ends=[1.0, 1.0]), ValueError, '> 0'),
    (dict(lrs=[1.0, 0.5], ends=[1.0, 1.0], ratio=0.5), ValueError, 'ratio'),
    (dict(lrs=[1.0, 0.5], ends=[1.0, 1.0], ratio='3'), TypeError, 'ratio'),
    (dict(lrs=[1.0, 0.5], ends=[1.0, 1.0], starts=[2.0]), ValueError, 'starts'),
])
def test_pick_held_refuses_bad_input(kwargs, exc, word):
    with pytest.raises(exc, match=word): pick_held(**kwargs)


def test_geometric_mean_is_the_middle_of_two_lrs_by_ratio_and_skips_a_missing_one():
    from onecycle.tuning.suggest import geometric_mean
    assert geometric_mean(0.01, 0.04) == pytest.approx(0.02)
    assert geometric_mean(0.04, 0.01) == geometric_mean(0.01, 0.04)
    # either one alone where the other is missing, not finite or not positive
    for missing in (None, float('nan'), float('inf'), 0., -0.1):
        assert geometric_mean(0.03, missing) == 0.03 and geometric_mean(missing, 0.03) == 0.03
    assert math.isnan(geometric_mean(float('nan'), float('nan')))


def test_input_scale_factor_lowers_only_an_adam_like_plain_mlp_on_inputs_far_above_unit_scale():
    """Above INPUT_RMS_LIMIT the factor is the limit over the inputs' root mean square (0-255 pixels, rms 128: 1/8),
    for an Adam-like optimizer on a plain MLP; at or below it, for SGD, any other net, or without float inputs, 1."""
    from onecycle.tuning.suggest import INPUT_RMS_LIMIT, input_scale_factor
    assert input_scale_factor(128., True, True) == pytest.approx(INPUT_RMS_LIMIT / 128) == pytest.approx(1 / 8)
    assert input_scale_factor(2 * INPUT_RMS_LIMIT, True, True) == pytest.approx(0.5)
    for rms, adaptive, plain in ((INPUT_RMS_LIMIT, True, True), (0.5, True, True), (128., False, True),
                                 (128., True, False), (None, True, True), (math.nan, True, True)):
        assert input_scale_factor(rms, adaptive, plain) == 1.


def test_sgd_input_limit_holds_lr_times_the_inputs_mean_square():
    """For an optimizer that steps with the gradient (SGD) on a plain MLP with inputs above INPUT_RMS_LIMIT the limit
    is SGD_INPUT_LIMIT over their mean square (0-255 pixels, rms 128: 16 / 128^2 ~ 0.001; a table at rms 32: 1/64);
    inputs four times as large, a limit sixteen times as low. None at or below INPUT_RMS_LIMIT, for optimizers that
    divide by the gradient's size, other nets, or without float inputs."""
    from onecycle.tuning.suggest import INPUT_RMS_LIMIT, SGD_INPUT_LIMIT, sgd_input_limit
    assert sgd_input_limit(128., True, True) == pytest.approx(SGD_INPUT_LIMIT / 128 ** 2) == pytest.approx(1 / 1024)
    assert sgd_input_limit(32., True, True) == pytest.approx(1 / 64)
    assert sgd_input_limit(32., True, True) / sgd_input_limit(128., True, True) == pytest.approx(16.)
    for rms, with_gradient, plain in ((INPUT_RMS_LIMIT, True, True), (0.5, True, True), (128., False, True),
                                      (128., True, False), (None, True, True), (math.nan, True, True)):
        assert sgd_input_limit(rms, with_gradient, plain) is None


def test_rmsprop_and_adagrad_input_limits_are_a_tenth_and_8x_adams_on_inputs_far_above_unit_scale():
    """On a plain net with inputs above INPUT_RMS_LIMIT: RMSPROP_STEP_FRACTION (RMSprop) or ADAGRAD_STEP_MULTIPLE
    (Adagrad) times the weights' typical size x INPUT_RMS_LIMIT / rms (weights of 0.05 at rms 160: 0.1 x 0.05 x 0.1 =
    5e-4, 8 x 0.05 x 0.1 = 0.04); None at or below the limit, for other optimizers or nets, without a weight scale or
    float inputs."""
    from onecycle.tuning.suggest import (ADAGRAD_STEP_MULTIPLE, INPUT_RMS_LIMIT, RMSPROP_STEP_FRACTION,
                                         divided_step_input_limit, divided_step_multiple)
    assert divided_step_multiple(True, False) == RMSPROP_STEP_FRACTION == 0.1
    assert divided_step_multiple(False, True) == ADAGRAD_STEP_MULTIPLE == 8
    assert divided_step_multiple(False, False) is None
    assert divided_step_input_limit(160., RMSPROP_STEP_FRACTION, True, 0.05) == pytest.approx(5e-4)
    assert divided_step_input_limit(160., ADAGRAD_STEP_MULTIPLE, True, 0.05) == pytest.approx(0.04)
    for rms, multiple, plain, scale in ((INPUT_RMS_LIMIT, 0.1, True, 0.05), (160., None, True, 0.05),
                                        (160., 0.1, False, 0.05), (160., 8., True, None), (None, 8., True, 0.05)):
        assert divided_step_input_limit(rms, multiple, plain, scale) is None


def test_without_the_spike_cap_a_spike_below_the_edge_caps_nothing_and_one_above_still_lifts():
    from onecycle.tuning.suggest import suggest_edge, suggest_for_fit
    calm = _spiky_sweep(9, 0., noise=0)         # never tops its start
    early = _spiky_sweep(-2.5, 0.3, noise=0)     # one step above the start, far below the edge (near 1e-1)
    smooth = smooth_sweep(early)
    edge = suggest_edge(LRS, smooth)
    capped = suggest_for_fit(LRS, smooth, 500, raw_losses=early, exponent=0)
    uncapped = suggest_for_fit(LRS, smooth, 500, raw_losses=early, exponent=0, spike_cap=False)
    unread = suggest_for_fit(LRS, smooth, 500, exponent=0)   # the edge (on the default sweep's scale), no spike read
    assert unread >= edge and capped == pytest.approx(unread / 4) and uncapped == unread
    assert suggest_for_fit(LRS, smooth_sweep(calm), 500, raw_losses=calm, exponent=0, lift=0.5, spike_cap=False) \
        == suggest_for_fit(LRS, smooth_sweep(calm), 500, raw_losses=calm, exponent=0, lift=0.5)


def test_a_lone_batch_above_the_start_caps_nothing_where_a_spike_takes_two_steps():
    """spike_steps=2 (the range test's on a net with dropout, whose batches draw masks too): one step above the start
    far below the edge no longer caps the suggestion at a quarter of it; two in a row still do. A wide 1-D CNN with
    dropout (SGD, batch 32) read its sweeps' spikes at a third of the edge, and its fits did best at 2-3x S."""
    from onecycle.tuning.suggest import suggest_for_fit
    early = _spiky_sweep(-2.5, 0.3, noise=0)     # one step above the start, far below the edge (near 1e-1)
    i = next(j for j, x in enumerate(XS) if x >= -2.5 - 1e-9)
    twice = early[:i + 1] + [early[i]] + early[i + 2:]
    smooth = smooth_sweep(early)
    unread = suggest_for_fit(LRS, smooth, 500, exponent=0)
    one = suggest_for_fit(LRS, smooth, 500, raw_losses=early, exponent=0)
    assert one == pytest.approx(unread / 4)
    assert suggest_for_fit(LRS, smooth, 500, raw_losses=early, exponent=0, spike_steps=2) == unread
    assert suggest_for_fit(LRS, smooth_sweep(twice), 500, raw_losses=twice, exponent=0, spike_steps=2) == \
        pytest.approx(suggest_for_fit(LRS, smooth_sweep(twice), 500, exponent=0) / 4)
    for bad in (0, 2.5, None):
        with pytest.raises((TypeError, ValueError), match='spike_steps'):
            suggest_for_fit(LRS, smooth, 500, raw_losses=early, spike_steps=bad)


def test_an_sgd_regression_keeps_its_edge_but_attention_keeps_sgds_exponent():
    from onecycle.tuning.suggest import EXPOSURE_EXPONENT, exposure_exponent
    assert exposure_exponent(False, regression=True) == 0 < exposure_exponent(False)
    assert exposure_exponent(False, attention=True, regression=True) == EXPOSURE_EXPONENT


def _noisy_table_sweep(seed, first=0.95):
    """A sweep whose batches are noisy (a binary table with noisy labels, bench/suggest_unseen.py's table-tabnet-sgd):
    a plateau at 0.84 with a batch-to-batch sd of 0.07 up to 1e-3 (its first batch lost `first`), a fall to 0.6 at
    2e-2, then a rise that passes the start at about 0.3."""
    rnd = random.Random(seed)
    def curve(x):
        if x <= -3: return 0.84
        if x <= -1.7: return 0.84 - 0.24 * (x + 3) / 1.3
        return 0.6 + 0.6 * (x + 1.7) ** 2
    return [first] + [curve(x) + rnd.gauss(0, 0.07) for x in XS[1:]]


def test_a_spike_is_read_from_where_the_plateau_sat_not_from_a_high_first_batch():
    """The smoothed curve starts at the first batch's loss: where it was high and batches are noisy, a third of the way
    down lies within the plateau's noise, and the first batch after it that tops the start was read as a spike while
    the lr did nothing yet (table-tabnet-sgd seed 0: a spike at 4e-6, S capped at a quarter of the edge). Measured from
    the median of the sweep's first steps, the spike never comes earlier, and sits on the plateau on a third as many
    noise draws (a dip of the smoothed curve by noise alone can still reach a third of the way down)."""
    on_plateau = {False: 0, True: 0}
    for seed in range(100):
        raw = _noisy_table_sweep(seed)
        smooth = smooth_sweep(raw)
        first, from_head = suggest_spike(LRS, raw, smooth), suggest_spike(LRS, raw, smooth, from_head=True)
        assert from_head >= first, seed
        on_plateau[False] += first < 1e-3
        on_plateau[True] += from_head < 1e-3
        if seed < 20:   # a first batch at the plateau's level: the two readings agree
            calm = _noisy_table_sweep(seed, first=0.84)
            assert suggest_spike(LRS, calm, from_head=True) == suggest_spike(LRS, calm), seed
    assert on_plateau[False] >= 20 and on_plateau[True] <= on_plateau[False] / 2, on_plateau
    with pytest.raises(TypeError, match='from_head'): suggest_spike(LRS, raw, from_head='yes')


def test_the_fit_suggestion_is_not_capped_by_a_spike_read_from_a_high_first_batch(monkeypatch):
    "suggest_for_fit reads spikes as the range test does (SPIKE_FROM_HEAD): no cap at a quarter of the edge here."
    import onecycle.tuning.suggest as suggest
    seed = next(s for s in range(20) if suggest_spike(LRS, _noisy_table_sweep(s)) < 1e-3
                < suggest_spike(LRS, _noisy_table_sweep(s), from_head=True))
    raw = _noisy_table_sweep(seed)
    smooth = smooth_sweep(raw)
    lr = suggest_for_fit(LRS, smooth, 1000, raw_losses=raw, exponent=0)   # (SGD on a normalized net)
    monkeypatch.setattr(suggest, 'SPIKE_FROM_HEAD', False)
    monkeypatch.setattr(suggest, 'SPIKE_NOISE_UNITS', 0.)
    capped = suggest_for_fit(LRS, smooth, 1000, raw_losses=raw, exponent=0)
    assert lr / capped == pytest.approx(4., rel=0.3)   # the cap, SPIKE_TRUST (4x) below the edge, is gone


def test_batch_noise_is_the_sd_of_the_batches_whatever_the_trend():
    "The batches' own noise, read from successive differences: a falling trend and one outlier leave it near the sd."
    rnd = random.Random(0)
    losses = [2 - 0.01 * i + rnd.gauss(0, 0.05) for i in range(200)]
    assert batch_noise(losses) == pytest.approx(0.05, rel=0.15)
    assert batch_noise(losses[:100] + [50.] + losses[100:]) == pytest.approx(0.05, rel=0.15)
    assert batch_noise(losses[:50] + [float('nan')] + losses[50:]) == pytest.approx(batch_noise(losses), rel=0.05)
    assert batch_noise([1., 2., 1., 2., 1.]) == 0   # too few to tell
    assert batch_noise([0.7] * 20) == 0


def _high_head_sweep(seed):
    """A noisy sweep whose first steps happened to sit high (bench/suggest_unseen.py's table-tabnet-adam-bs32 seed 1,
    tune's second data order: five batches near 0.89 on a plateau at 0.78 with an sd of 0.06): the plateau, a fall to
    0.6 at 2e-3, a rise past the start from 0.1."""
    rnd = random.Random(seed)
    def curve(x):
        if x <= -4: return 0.78
        if x <= -2.7: return 0.78 - 0.18 * (x + 4) / 1.3
        return 0.6 + 0.25 * (x + 2.7) ** 2
    return [0.89 + rnd.gauss(0, 0.02) for _ in XS[:5]] + [curve(x) + rnd.gauss(0, 0.06) for x in XS[5:]]


def test_a_spike_needs_a_way_down_past_the_batches_noise():
    """A dip of the smoothed curve by noise alone is not a descent: where batches are noisy, a third of the way down
    from a head that sat high lies within the plateau's noise, and the next batch above the start read as a spike
    while the lr did nothing yet (S then capped at a quarter of the edge). With the way down also SPIKE_NOISE_UNITS of
    the batches' noise, such spikes are rare, never earlier; on a calm sweep the reading is the same."""
    on_plateau = {0: 0, SPIKE_NOISE_UNITS: 0}
    for seed in range(100):
        for raw in (_high_head_sweep(seed), _noisy_table_sweep(seed)):
            smooth = smooth_sweep(raw)
            spikes = {u: suggest_spike(LRS, raw, smooth, from_head=True, noise_units=u) for u in on_plateau}
            assert spikes[SPIKE_NOISE_UNITS] >= spikes[0], seed
            for u, s in spikes.items(): on_plateau[u] += s < 1e-3
    assert on_plateau[0] >= 30 and on_plateau[SPIKE_NOISE_UNITS] <= 4, on_plateau
    calm = [_fall_flat_rise(x) for x in XS]
    assert suggest_spike(LRS, calm, from_head=True, noise_units=SPIKE_NOISE_UNITS) == suggest_spike(LRS, calm)
    with pytest.raises(ValueError, match='noise_units'): suggest_spike(LRS, calm, noise_units=-1)
    with pytest.raises(TypeError, match='noise_units'): suggest_spike(LRS, calm, noise_units='2')


def test_a_descent_within_the_noise_still_reads_its_spike(monkeypatch):
    """The noise threshold is held to SPIKE_NOISE_CAP of the way down: a sweep that falls by less than its batches'
    noise and then blows up reads its spike where it blew up, not at the sweep's end (which would lift S up to 4x).
    A sweep that fell by less than SPIKE_NOISE_MIN_FALL of its start (a plateau net, whose other rules read its
    plateau) is read as without the threshold."""
    import onecycle.tuning.suggest as suggest
    def sweep(fall, sd, seed):
        rnd = random.Random(seed)
        return [0.8 + rnd.gauss(0, sd) if x <= -3 else 0.8 - fall * min(x + 3, 1) + rnd.gauss(0, sd) if x <= -1
                else 0.8 - fall + 3 * (x + 1) ** 2 for x in XS]
    moved = 0
    for seed in range(10):
        raw = sweep(0.15, 0.1, seed)   # 3 sds of noise are twice the fall
        assert 1e-3 < suggest_spike(LRS, raw, from_head=True, noise_units=SPIKE_NOISE_UNITS) < 10 ** -0.5, seed
        flat = sweep(0.04, 0.02, seed)   # a fall of 5%, 3 sds of noise above a third of it
        with monkeypatch.context() as m:
            m.setattr(suggest, 'SPIKE_NOISE_MIN_FALL', 0.)
            moved += suggest_spike(LRS, flat, from_head=True, noise_units=SPIKE_NOISE_UNITS) \
                != suggest_spike(LRS, flat, from_head=True)
        assert suggest_spike(LRS, flat, from_head=True, noise_units=SPIKE_NOISE_UNITS) \
            == suggest_spike(LRS, flat, from_head=True), seed
    assert moved >= 3   # (without the guard the threshold would have moved them)


def test_the_fit_suggestion_is_not_capped_by_a_spike_within_the_noise(monkeypatch):
    "suggest_for_fit reads spikes as the range test does (SPIKE_NOISE_UNITS): a dip within the noise caps nothing."
    import onecycle.tuning.suggest as suggest
    seed = next(s for s in range(20) if suggest_spike(LRS, _high_head_sweep(s), from_head=True) < 1e-3)
    raw = _high_head_sweep(seed)
    smooth = smooth_sweep(raw)
    lr = suggest_for_fit(LRS, smooth, 1000, raw_losses=raw, exponent=0)
    monkeypatch.setattr(suggest, 'SPIKE_NOISE_UNITS', 0.)
    capped = suggest_for_fit(LRS, smooth, 1000, raw_losses=raw, exponent=0)
    assert lr / capped == pytest.approx(4., rel=0.3)
