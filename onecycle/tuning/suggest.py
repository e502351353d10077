"""Reading a learning-rate range test: suggestions computed from (lr, loss) curves.

Each function takes the learning rates and the (already smoothed) losses of a sweep and returns
one learning rate. They are pure so that they can be tested on synthetic curves with a known answer.
"""
from __future__ import annotations

import math
import statistics

from ..core.checks import check_bool, check_fraction, check_int, check_positive, check_range
from ..core.recorder import smooth_ema
from ..schedules.functions import one_cycle

__all__ = ['suggest_minimum', 'suggest_steep', 'suggest_valley', 'suggest_max_bound', 'suggest_edge', 'suggest_spike',
           'range_test_spike', 'suggest_plateau_edge', 'plateau_anchor',
           'suggest_for_fit', 'pick_held', 'held_falls', 'HOLD_RATIO', 'HOLD_DROP', 'step_limit', 'ADAPTIVE_STEP_LIMIT',
           'RUNNING_MAX_STEP_LIMIT',
           'exposure_exponent', 'spike_lift', 'sweep_exposure', 'one_cycle_exposure', 'lr_bounds', 'batch_noise',
           'loss_slopes', 'smoothed_slopes', 'moving_average', 'smooth_zero_lag', 'start_level', 'smooth_sweep',
           'default_window', 'geometric_mean', 'applied_lr_limit', 'INPUT_RMS_LIMIT', 'far_above_unit_scale',
           'input_scale_factor',
           'SGD_INPUT_LIMIT', 'sgd_input_limit', 'RMSPROP_STEP_FRACTION', 'ADAGRAD_STEP_MULTIPLE',
           'divided_step_multiple', 'divided_step_input_limit']


def _check(lrs, losses, min_points=3):
    if len(lrs) != len(losses): raise ValueError(f'lrs and losses differ in length ({len(lrs)} and {len(losses)})')
    if len(lrs) < min_points: raise ValueError(f'need at least {min_points} points of the sweep, got {len(lrs)}')
    if any(l <= 0 for l in lrs): raise ValueError('learning rates must be > 0')


def _finite(lrs, losses):
    pts = [(a, b) for a, b in zip(lrs, losses) if math.isfinite(b)]
    if not pts: raise ValueError('every loss of the sweep is NaN or infinite: nothing to suggest from')
    return [a for a, _ in pts], [b for _, b in pts]


def default_window(n_points: int) -> int:
    "Moving-average width for the loss change of an `n_points` sweep: about 5% of it, odd, at least 1."
    w = max(1, round(n_points / 20))
    return w if w % 2 else w + 1


def moving_average(values, window: int) -> list[float]:
    """Centred moving average over `window` points (odd), narrowing at the ends so that the output
    has the input's length and does not trail it: a feature stays at the lr where it happened."""
    if window < 1: raise ValueError(f'window must be >= 1, got {window}')
    half, n = window // 2, len(values)
    out = []
    for i in range(n):
        h = min(half, i, n - 1 - i)   # symmetric, so the average stays centred at i
        seg = values[i - h:i + h + 1]
        out.append(sum(seg) / len(seg))
    return out


def smooth_zero_lag(values, beta=0.9) -> list[float]:
    """A debiased exponential moving average run forwards and then backwards. One pass trails the
    curve by about beta/(1-beta) points, which in a range test moves every feature to a larger lr;
    the second pass, in reverse, cancels that shift."""
    check_range('beta', beta, 0, 1, hi_open=True)
    fwd = smooth_ema(values, beta)
    return smooth_ema(fwd[::-1], beta)[::-1]


def _head(losses) -> list:
    "The finite losses of a sweep's first 5% of points (at least 3), before its lr did anything."
    head = [l for l in losses[:max(3, len(losses) // 20)] if math.isfinite(l)]
    if not head: raise ValueError('the sweep starts with NaN/inf losses: lower start_lr')
    return head


def start_level(losses) -> float:
    "Where a sweep started: the worst finite loss of its first 5% of points (at least 3)."
    return max(_head(losses))


def _head_median(losses) -> float:
    "The typical loss of a sweep's first steps (their median): where its plateau sat, whatever one batch lost."
    return statistics.median(_head(losses))


def batch_noise(losses) -> float:
    """The batch-to-batch noise of a sweep's losses, as a standard deviation, from the median of its successive
    differences (robust to the trend, which moves each step little, and to the odd outlier); 0 from fewer than six
    losses."""
    finite = [l for l in losses if math.isfinite(l)]
    if len(finite) < 6: return 0.
    # |a - b| of two independent N(0, s^2) draws has median 0.6745 * sqrt(2) * s
    return statistics.median(abs(a - b) for a, b in zip(finite, finite[1:])) / (0.6745 * math.sqrt(2))


def smooth_sweep(losses, beta=None) -> list[float]:
    """The curve the suggestions read. Losses above the starting level (:func:`start_level`), NaN
    and inf are capped at that level first: once training has diverged the size of the blow-up says
    nothing, and uncapped it would leak into its neighbours. Then a zero-lag debiased EMA; `beta`
    defaults to a time constant of 2.5% of the sweep (0.6 for 100 points)."""
    n = len(losses)
    if n == 0: raise ValueError('no losses to smooth')
    cap = start_level(losses)
    capped = [min(l, cap) if math.isfinite(l) else cap for l in losses]
    if beta is None: beta = 1 - 1 / max(1., n / 40)
    return smooth_zero_lag(capped, beta)


def suggest_minimum(lrs, losses, div=10.) -> float:
    "The learning rate of the lowest loss, divided by `div` (10): safely below where the loss turns up."
    _check(lrs, losses, 1)
    lrs, losses = _finite(lrs, losses)
    i = min(range(len(losses)), key=losses.__getitem__)
    return lrs[i] / div


def loss_slopes(lrs, losses) -> list[float]:
    "d loss / d log10(lr) by central differences (one-sided at the ends)."
    x = [math.log10(l) for l in lrs]
    n = len(x)
    out = []
    for i in range(n):
        a, b = max(i - 1, 0), min(i + 1, n - 1)
        out.append((losses[b] - losses[a]) / (x[b] - x[a]) if x[b] != x[a] else 0.)
    return out


def smoothed_slopes(lrs, losses, window=None) -> list[float]:
    """The loss change: d loss / d log10(lr), moving-average smoothed over `window` points (5% of the
    sweep by default). Negative where the loss falls; its minimum is the steepest descent."""
    window = default_window(len(lrs)) if window is None else window
    return moving_average(loss_slopes(lrs, losses), window)


def _descent(lrs, losses, window):
    "The finite points, the index of the lowest loss, and the smoothed slopes up to it."
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    if len(lrs) < 3: raise ValueError(f'need at least 3 finite losses, got {len(lrs)}')
    stop = min(range(len(losses)), key=losses.__getitem__)
    g = smoothed_slopes(lrs, losses, window)
    return lrs, losses, stop, g


def suggest_steep(lrs, losses, window=None) -> float:
    """The learning rate where the loss falls fastest against log(lr) (the minimum of the smoothed
    loss change), looked for only before the lowest loss."""
    lrs, losses, stop, g = _descent(lrs, losses, window)
    stop = max(stop, min(2, len(g) - 1))
    return lrs[min(range(stop + 1), key=g.__getitem__)]


def suggest_max_bound(lrs, losses, window=None, frac=0.1) -> float:
    """Smith's maximum bound: the largest learning rate at which the loss still falls, i.e. the last
    point before the lowest loss where the smoothed slope d loss / d log10(lr) is still at least
    `frac` of the steepest descent. Past it the loss is flat or rising: the lr no longer helps.
    When the loss never falls, the smallest learning rate is returned."""
    check_fraction('frac', frac)
    lrs, losses, stop, g = _descent(lrs, losses, window)
    steepest = min(g[:stop + 1])
    if steepest >= 0: return lrs[0]
    return lrs[max(i for i in range(stop + 1) if g[i] <= frac * steepest)]


# how far above its lowest point the loss may sit and still count as on the floor, as a fraction of its drop
EDGE_BAND = 0.1


def suggest_edge(lrs, losses, band=EDGE_BAND) -> float:
    """The far edge of the loss floor: from the lowest loss on, the largest learning rate before the
    loss rises above that lowest point by more than `band` (10%) of its drop from the start. A sweep
    that has stopped falling at the max bound often runs flat for a while before it turns up; this is
    where it turns up, i.e. where a few steps at each lr start to become unstable. Unlike the lowest
    point (which one lucky batch can place anywhere on a flat floor) it moves little with the data
    order. When the loss never falls, the smallest learning rate is returned."""
    check_range('band', band, 0, 1)
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    low = min(range(len(losses)), key=losses.__getitem__)
    drop = losses[0] - losses[low]
    if drop <= 0: return lrs[0]
    top, j = losses[low] + band * drop, low
    while j + 1 < len(losses) and losses[j + 1] <= top: j += 1
    return lrs[j]


# how many times its batches' noise a sweep's smoothed loss may come below its plateau and still be on it (see
# suggest_plateau_edge): on sweeps that fell by less than a tenth, plain CNNs on 16x16 digits that never learnt came
# 0.2-0.5 noises below, a MobileNetV2's 0.8-1.8, encoders on a plateau 1.0-3.0, and sweeps that did learn something
# 4-27 (a lookup encoder's, a tagger's, LeNet's); three took in a patch encoder's seed that lost 24 points for it
# (see range_test's note on plateaus).
PLATEAU_NOISE = 2.
# the least share of a sweep's points over which its loss must stay above the plateau for a rise to count: a flat
# curve's last few smoothed points can wander above it by chance
PLATEAU_RISE = 0.05
# how many times the plateau's level a batch's loss must reach, inside such a rise, for the rise to end the plateau
# even where the loss came back to the level later: a net blown up past its edge falls back to predicting at chance,
# which is the level of a plateau it never left (ShuffleNetV2 under SGD: its loss 5-14x the level at 0.03-0.04, back
# at the plateau from about 0.5 to 2, its plateau edge read at 1.5-2.7 and its fit at chance). Of the rises of the
# benches' SGD sweeps that did not last to the end, those two reached 4.9x and 13.7x; the other 31 at most 1.27x
# (MobileNetV2's, from 0.002, below the lrs where its full fits do best)
PLATEAU_BREAK = 2.


def suggest_plateau_edge(lrs, losses, smooth=None, noise=PLATEAU_NOISE) -> float | None:
    """Where a sweep that never left its plateau turns up: the last learning rate before its smoothed
    loss rose for good (to its end, over at least PLATEAU_RISE of its points) above the plateau's level
    (its median over the sweep's first half) by half the noise of its batches (a robust standard
    deviation of the raw `losses` about the smoothed curve over the first half), or before an earlier
    rise as long in which a batch's loss blew up to PLATEAU_BREAK (2) times the level or was not finite
    (after it the loss came back to the level only because the net had collapsed to chance). A sweep whose smoothed
    loss never came further below the plateau than `noise` times that has no floor: its lowest point is
    wherever a run of lucky batches fell, and :func:`suggest_edge`, which reads from there, lands
    anywhere on the plateau (a MobileNetV2 under SGD read 3e-4 where its loss rose at 0.02-0.03). None
    where the sweep did fall further, or never rose. `smooth` is the curve the other rules read
    (``smooth_sweep(losses)`` by default)."""
    check_positive('noise', noise)
    _check(lrs, losses)
    smooth = smooth_sweep(losses) if smooth is None else smooth
    if len(smooth) != len(losses): raise ValueError('smooth and losses differ in length')
    half = max(3, len(smooth) // 2)
    level = statistics.median(smooth[:half])
    resid = [l - s for l, s in zip(losses[:half], smooth[:half]) if math.isfinite(l)]
    if not resid: return None
    centre = statistics.median(resid)
    sd = 1.4826 * statistics.median(abs(r - centre) for r in resid)   # the normal's sd from the median deviation
    if level - min(smooth) > noise * sd: return None
    above, need = [s > level + sd / 2 for s in smooth], max(1, PLATEAU_RISE * len(smooth))
    j = len(smooth) - 1
    while j >= 0 and above[j]: j -= 1
    if len(smooth) - 1 - j < need: return None
    # an earlier rise that lasted and blew up (PLATEAU_BREAK), once the curve had come down to the plateau: where
    # the loss came back after it, the net had collapsed to chance, not stayed on its plateau
    i, top = (above.index(False) if j >= 0 else 0), PLATEAU_BREAK * level if level > 0 else math.inf
    while i < j:
        if not above[i]: i += 1; continue
        k = above.index(False, i)
        if k - i >= need and any(not (math.isfinite(loss) and loss <= top) for loss in losses[i:k]): return lrs[i - 1]
        i = k
    return lrs[max(j, 0)]


# how far down its descent the smoothed loss must be before a step above the starting level counts as a spike:
# early in a sweep the loss has barely moved and one noisy batch can top the start. On the 39 sweeps of
# bench/recommend.py's 13 problems, a tenth stopped two sweeps (a transformer's, an MLP's) at their very start;
# from a fifth to nearly a half the rule found the same spikes (a GRU's); a third is in the middle of that.
SPIKE_AFTER = 1 / 3
# ... measured from where the sweep's plateau sat (the lower of the smoothed curve's first point and the median of its
# first steps' losses), not from the first batch's loss alone: the smoothed curve starts at that one batch, and where
# batches are noisy (small batches, noisy labels) a high first batch puts a third of the way down within the noise of
# the plateau, so that a later noisy batch above the start reads as a spike long before the lr did anything, and the
# spike cap (SPIKE_TRUST) pulls S 4x below the edge. A tabular model under SGD (bench/suggest_unseen.py's
# table-tabnet-sgd, seed 0: batch losses with an sd of 0.07 on a plateau at 0.84, its first batch 0.95) read a spike
# at 4e-6 and S = 0.018, its other seeds 0.054-0.072; read from the median, the spike is at 0.29, past the edge, and
# S 0.069 (fit 80.6 -> 82.8%). Of the 1071 sweeps of both benches' 357 problems (three seeds each, torchvision's nets
# left out; forty-sixth session) it moved 33 spikes, each later, on 33 seeds; the one-liner there +52.6 points summed,
# 13 up, 4 down, 16 the same (a pre-norm encoder of 16x16 patches under SGD 26.8 -> 55.6%, an encoder finding the last
# largest of 20 tokens 73.9 -> 90.3%, a 10x-scaled blobs MLP 81.0 -> 85.6%; a wide encoder of the last largest token
# 99.3 -> 90.1%, position tasks landing far apart at nearby lrs). tune's settings the same on the first seventeen and
# on all 39 seeds of bench/recommend.py (its own sweeps did not move).
SPIKE_FROM_HEAD = True
# ... and, on a sweep that fell at least SPIKE_NOISE_MIN_FALL of where it started, once the way down has also passed
# SPIKE_NOISE_UNITS times its batches' own noise (:func:`batch_noise`), at most SPIKE_NOISE_CAP of the way to the lowest
# point (so that a sweep whose whole descent lies within its noise still reads a spike past its floor). The median of
# five first steps is itself noisy: where they happened to sit high, a dip of the smoothed curve by noise alone reached
# a third of the way down and the next batch above the start read as a spike on the plateau (tune's second sweep on
# a tabular net under Adam at batch 32, bench/suggest_unseen.py's table-tabnet-adam-bs32: five first batches near
# 0.88 on a plateau at 0.78, sd 0.06, a spike at 3.9e-5 and S capped at a quarter of the edge; simulated, on the
# plateau in 65 of 200 draws, 2 with the threshold). Not on a sweep that fell less (a plateau net, whose tiny descent
# sits within a few sds of its noise and whose plateau rules read it): there it moved spikes that held 16x16 CNNs under
# SGD at batches of 32-128 off an lr they collapse at (four seeds 85.6-91.2% -> chance), and it delayed a real spike
# on an encoder whose sweep fell 11% (100 -> 72.5%). Measured on the one-liner (forty-seventh session; lr_find + fit,
# the 1071 sweeps of both benches read offline, the seeds whose spike moved refitted): 23 seeds moved, +43.2 points
# summed, 9 up, 5 down (an MLP on 50x-scaled circles under Adagrad 56.2 -> 92.1%, a 20x-scaled MNIST-1D MLP +4.8;
# an MLP on make_classification at batch 8 -2.1); held out, seeds 3-5 of those 14 problems and the 6 tabular ones,
# +0.2 over 60 seeds (5 up, 4 down, the largest -2.8 and +1.9); seeds 3-5 of 50 other problems drawn at random, 5 of
# 150 seeds moved, +5.8 (4 up, 1 down). tune: the same settings on bench/recommend.py's 39 seeds and 15 of the 18
# tabular ones; the tabular Adam net's three +3.0 (82.1 -> 83.1%, its grid's best cell 83.1%); held out, seeds 3-5 of
# the three tabular nets under Adam and AdamW, 4 of 9 changed, -2.9 (tune's later picks moving with its S; a wash).
SPIKE_NOISE_UNITS = 3.
SPIKE_NOISE_CAP = 2 / 3
SPIKE_NOISE_MIN_FALL = 0.15


# how far below the edge E a spike may pull the fit suggestion. On the sweeps of bench/recommend.py's problems and
# of bench/suggest_unseen.py's (recurrent nets, a deep plain MLP, a transformer...), the spikes that marked a real
# instability sat 1.7-9x below E, and full fits did about as well at E/4 as at the spike; the one transient among
# them (the range-test notebook's MLP, an Adam bump at E/8) cost 3-5 points at the spike and none at E/4.
SPIKE_TRUST = 4.


def suggest_spike(lrs, losses, smooth=None, after=SPIKE_AFTER, lasting=1, from_head=False, noise_units=0.) -> float:
    """The last learning rate before the sweep's first spike: a step whose own (unsmoothed) loss
    jumped above the level the sweep started from, once the smoothed loss had come `after` (a third)
    of the way down to its lowest point. A step that undoes all the training so far is unstable at
    its lr, however quickly the next steps recover; the smoothed curve, and the edge read from it,
    can hide such a spike under a lower floor further on (a recurrent net's sweep spiked at a third
    of its edge; its long fits lost 6-11 points at the edge and none at the spike). `losses` are the
    raw losses, `smooth` the curve the other rules read (``smooth_sweep(losses)`` by default). With
    `lasting` above 1, a spike is that many steps in a row above the start (a loss that is not finite
    counts at once). No spike: the largest lr of the sweep. A loss that never falls: the smallest.
    With `from_head` (the range test's reading of a sweep, SPIKE_FROM_HEAD) the way down is measured from the
    median loss of the sweep's first steps where that lies below the smoothed curve's first point (and above its
    lowest). With `noise_units`, on a sweep that fell at least ``SPIKE_NOISE_MIN_FALL`` of where it started, the way
    down must also pass that many times the batches' own noise (:func:`batch_noise`, read up to the lowest point), but
    never more than ``SPIKE_NOISE_CAP`` of it: a dip of the smoothed curve by noise alone is not a descent."""
    check_range('after', after, 0, 1)
    check_int('lasting', lasting, min_value=1)
    check_bool('from_head', from_head)
    check_range('noise_units', noise_units, 0, 100)
    _check(lrs, losses)
    smooth = smooth_sweep(losses) if smooth is None else smooth
    if len(smooth) != len(losses): raise ValueError('smooth and losses differ in length')
    start = start_level(losses)   # the level smooth_sweep caps at
    low = min(range(len(smooth)), key=smooth.__getitem__)
    top, head = smooth[0], _head_median(losses) if from_head else math.inf
    if smooth[low] < head < top: top = head
    drop = top - smooth[low]
    if drop <= 0: return lrs[0]
    need = after * drop
    if noise_units and drop >= SPIKE_NOISE_MIN_FALL * top:
        need = max(need, min(noise_units * batch_noise(losses[:low + 1]), SPIKE_NOISE_CAP * drop))
    going, run = False, 0
    for j, (loss, sm) in enumerate(zip(losses, smooth)):
        going = going or top - sm >= need
        if going and not math.isfinite(loss): return lrs[max(j - run - 1, 0)]
        run = run + 1 if going and loss > start else 0
        if run >= lasting: return lrs[max(j - run, 0)]
    return lrs[-1]


def range_test_spike(lrs, losses, smooth, lasting=1) -> float:
    """The spike as a range test reads its sweep, for its 'spike' suggestion and the cap on its 'fit' one: the way
    down measured from the head's median (SPIKE_FROM_HEAD) and past the batches' own noise (SPIKE_NOISE_UNITS). Hold
    probes read theirs with :func:`suggest_spike`'s plain defaults."""
    return suggest_spike(lrs, losses, smooth, lasting=lasting, from_head=SPIKE_FROM_HEAD,
                         noise_units=SPIKE_NOISE_UNITS)


def lr_bounds(max_lr: float) -> dict:
    """Smith's minimum bounds for a maximum bound `max_lr`, as (low, high) ranges: max/4 to max/3 for
    cyclical learning rates, max/20 to max/10 for 1cycle (its start lr, i.e. div_factor 10 to 20)."""
    if not (isinstance(max_lr, (int, float)) and math.isfinite(max_lr) and max_lr > 0):
        raise ValueError(f'max_lr must be a positive finite number, got {max_lr!r}')
    return {'cyclical_min': (max_lr / 4, max_lr / 3), 'one_cycle_min': (max_lr / 20, max_lr / 10)}


def suggest_valley(lrs, losses) -> float:
    """The longest stretch over which the loss keeps falling, and a point two thirds of the way
    down it: far enough along to be fast, well before the bottom where training turns unstable."""
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    n = len(losses)
    # longest strictly decreasing subsequence ending at each point (O(n^2), n is a few hundred)
    length, prev = [1] * n, [-1] * n
    for i in range(n):
        for j in range(i):
            if losses[j] > losses[i] and length[j] + 1 > length[i]:
                length[i], prev[i] = length[j] + 1, j
    end = max(range(n), key=lambda i: (length[i], -i))
    start = end
    while prev[start] != -1: start = prev[start]
    idx = start + int(round((end - start) * 2 / 3))
    return lrs[idx]


# --- a suggestion for the fit that follows ---------------------------------------------------------
# How fast the edge of stability falls with the time spent near the peak lr (see suggest_for_fit), for
# SGD-like optimizers. Measured on bench/suggest_landscape.py's problems (full 1cycle fits of 300-800
# steps on an lr ladder, three seeds each): from the sweep's edge E (suggest_edge), 0.2 put the five SGD
# problems within 0.1-0.8 points of their best lr on average, and below the cliff (chance accuracy) that
# two of them meet at 0.8-1.4 times Smith's max bound; 0.16-0.25 all did about as well.
EXPOSURE_EXPONENT = 0.2
# Adam-like optimizers divide each step by a running gradient scale, so a sharpness that grows during
# the fit is met by smaller steps instead of an instability: on six Adam problems the best max_lr was at
# Smith's max bound or above on five (on the sixth, noisy labels, lower lrs memorised less), and a fit
# at the sweep's edge itself did within 0.4 points of the best on four: no lowering. Not on a model with
# attention (exposure_exponent): the query and key weights grow together over a long peak and the attention
# logits with their product, which Adam's per-parameter scaling does not hold back. Six encoders made for the
# check (bench/suggest_unseen.py: post- and pre-norm, AdamW and Adam) scored 56-96% at the edge, 4-43 points
# under their best rung (seeds down to 21%); with SGD's exponent four met the one-liner's targets (100, 99.9,
# 94.7, 76.5%) and two did not (98.9% with a seed 3.3 under its best rung; 91.1%, -2.9), and bench/recommend.py's
# pre-norm transformer went from -0.83 to -0.27 points of its grid.
ADAPTIVE_EXPOSURE_EXPONENT = 0.
# how the edge falls with a sweep's steps near it, and the default sweep's (100 steps over 1e-7..10): a
# 300-step sweep put it 1.2-2x lower than a 100-step one on seven of eight (problem, seed) pairs of five
# bench problems, median 1.5 = 3 ** 0.4 (Smith's max bound fell 1.9-2.4x: exponent 0.6-0.8)
SWEEP_EXPONENT = 0.4
REFERENCE_EXPOSURE = 100 / math.log(1e8)
# never more than this far below the edge: a fit that long is outside what the rule was checked on
MIN_FIT_FACTOR = 0.1


def sweep_exposure(sweep_lrs, lr: float) -> float:
    """Optimizer steps of a range test spent within a factor e below `lr` (lr/e < step lr <= lr): one
    over the mean log-lr increment of the steps there (so a 100-step sweep from 1e-7 to 10 gives
    5.43, not 5 or 6 by where its steps happen to fall), their count when fewer than 3; at least 1."""
    inside = [l for l in sweep_lrs if lr / math.e < l <= lr]
    if len(inside) >= 3 and inside[-1] > inside[0]:
        return max(1., (len(inside) - 1) / math.log(inside[-1] / inside[0]))
    return float(max(1, len(inside)))


def one_cycle_exposure(fit_steps: int, pct_start=0.3, div_factor=25., anneal_strategy='cos') -> float:
    """Optimizer steps a 1cycle fit of `fit_steps` steps spends within a factor e below its peak lr
    (about 59% of them with the default pct_start=0.3, div_factor=25, cosine annealing)."""
    if not fit_steps >= 1: raise ValueError(f'fit_steps must be >= 1, got {fit_steps!r}')
    n = 1000
    f = one_cycle(1 / div_factor, 1., 1e-5, pct_start, anneal_strategy)
    return fit_steps * sum(1 for i in range(n) if f(i / (n - 1)) > 1 / math.e) / n


# A regression's loss (core.hyper.is_regression_loss) under an SGD-like optimizer: the rules below were read on
# classifiers. Past a regression sweep's edge its mean squared error rises with the noise of the steps, which grows
# with the lr and which a 1cycle fit anneals away; single batches land above the starting loss long before the net
# learns (the squared error of a batch is heavy-tailed). On the seventeen SGD problems of bench/suggest_regression.py
# (MLPs on scikit-learn's generated and bundled tables, a tanh and a BatchNorm MLP, 1-D CNNs on noisy sinusoids, a GRU
# and an LSTM on token sequences, a Huber loss; three seeds, test mean squared error against full fits at S/2 ... 4S)
# the fits at the suggestion these rules give a classifier sat 1.2-2.9x above the best rung on eleven; with the edge
# kept (no lowering for the fit's length, no cap at a spike below the edge) the mean ratio fell on thirteen (sine
# 2.92 -> 1.11, multi-output MLP 2.26 -> 1.21, LSTM 1.96 -> 1.14, tanh MLP 1.84 -> 1.28), rose on one (a 342-row
# table, 1.01 -> 1.09), three stayed, and no fit at it diverged; the team's targets (1.25x, no seed above 2x) were met
# on 11 against 7. The lift towards a first spike beyond the edge stays, and so does the hold check: without it a
# small sine MLP's suggestion reached an lr its fit did not survive (MSE 0.23 against 0.015). Adam-like optimizers
# keep their rules: on the bench's eleven AdamW regressions the one-liner met those targets on all, within 1.08x of
# the best rung but for a teacher MLP (1.24x; its best lrs 4-8x S).
def exposure_exponent(adaptive: bool, normalized: bool = False, attention: bool = False,
                      regression: bool = False) -> float:
    """The `exponent` of :func:`suggest_for_fit` for an Adam-like optimizer (`adaptive`) or an SGD-like
    one; an SGD-like optimizer on a `normalized` model (see :func:`~onecycle.core.hyper.is_normalized`)
    takes the Adam-like one: its scale-invariant weights shrink their own effective step as they grow;
    so does one fitting a `regression` (a regression's loss, see the note above). A model with `attention`
    (see :func:`~onecycle.core.hyper.has_attention`) takes SGD's whatever the optimizer or loss: its attention
    logits grow with the product of two weight matrices, which a long peak inflates step after step and neither
    Adam's scaling nor a LayerNorm undoes."""
    if attention: return EXPOSURE_EXPONENT
    return ADAPTIVE_EXPOSURE_EXPONENT if adaptive or normalized or regression else EXPOSURE_EXPONENT


# How far an SGD-like fit's anchor moves from the edge E towards the sweep's first spike P: E * (P / E) ** lift,
# the geometric mean at 0.5. Where P sits close to E the loss turned up because training was becoming unstable;
# where P is far above E the loss rose gently past E, as it does when the noise of the steps grows with the lr,
# and SGD's long fits anneal that noise away. On the 35 problems of bench/recommend.py and bench/suggest_unseen.py
# (three seeds each, accuracy read off their grids and lr ladders) lifts of 0.4-0.6 met the one-liner's targets on
# 29 (27 without a lift) with the sum of gaps -30 points (-37): two LayerNorm residual MLPs gained 2-3 points each,
# their best lrs 2-15x E and their first spikes 4-14x E. Adam-like optimizers sit at E already and lost 1-3 points
# on five problems lifted, so they keep E.
SPIKE_LIFT = 0.5
ADAPTIVE_SPIKE_LIFT = 0.
# never more than this far above E, whatever the spike (a sweep that never spikes reports its last lr)
MAX_SPIKE_LIFT = 4.


def spike_lift(adaptive: bool) -> float:
    "The `lift` of :func:`suggest_for_fit` for an Adam-like optimizer (`adaptive`: none) or an SGD-like one."
    return ADAPTIVE_SPIKE_LIFT if adaptive else SPIKE_LIFT


# An Adam-like optimizer moves each weight by about the lr per step (its gradient divided by its own running scale),
# whatever the gradient's size. Above the weights' own typical size (core.hyper.weight_scale) a step at the peak
# moves a weight by more than it is, and a fit held there undoes what it learnt, which a sweep that passes that lr
# in a few steps (and may still see the loss fall) does not show. On the 22 Adam-like problems of
# bench/recommend.py and bench/suggest_unseen.py the 'fit' suggestion sat at 0.1-0.85x that scale on every seed's
# mean but one, a CNN on the 8x8 digits (2.2x, its best lrs 0.16-0.32x the suggestion); two nets made afterwards
# swept to 2-7x it and lost 2-28 points there (a bidirectional LSTM on MNIST-1D: 61-88% at the suggestion, 85-89% at
# a quarter; a dropout CNN on the digits), and their best lrs sat near it. Nine problems check it
# (bench/suggest_unseen.py, the last nine; seven made once it was set): all meet the one-liner's targets with it,
# three missed without (the LSTM 76.0 -> 89.3%, a bidirectional GRU 96.1 -> 97.9%, a 16x16 CNN under Adam 97.8 ->
# 98.5%), and bench/recommend.py's problems changed by noise (the 8x8 CNN +0.27 points, 34 of 43 met as before).
ADAPTIVE_STEP_LIMIT = 1.
# torch's Adamax divides by a running maximum of each gradient's size (core.hyper.divides_by_running_max), which sits
# above the root mean square Adam divides by, so its steps are a fraction of the lr (2.4x smaller than Adam's on the
# noisy gradients of tests/core/test_hyper.py) and a weight-sized step needs a larger lr. Four nets under Adamax
# (thirty-first session: MLPs on MNIST-1D and the digits, CNNs on both) had their suggestion at Adam's limit on every
# seed and their best rung at 2x it on all four (the MNIST-1D MLP 70.5% at the limit, 74.0% at 2x, 74.8% at 4x; the
# others 0.1-0.5 points up at 2x). With 2 they gained 1.4, 0.1, 0.5 and 0.6 points; six made afterwards (MLPs on
# three tables and a teacher net, a GRU, a transformer) moved by -0.1 to +0.5 (bench/suggest_unseen.py's adamax ones).
RUNNING_MAX_STEP_LIMIT = 2.


def step_limit(adaptive: bool, scale: float | None, running_max: bool = False) -> float | None:
    """The `limit` of :func:`suggest_for_fit`: ``ADAPTIVE_STEP_LIMIT`` (1) times the weights' typical size `scale`
    (:func:`~onecycle.core.hyper.weight_scale`) for an Adam-like optimizer (`adaptive`), ``RUNNING_MAX_STEP_LIMIT``
    (2) times it for one that divides by a running maximum of the gradient's size (`running_max`: Adamax), whose
    steps are smaller than the lr; none for an SGD-like one, whose step scales with the gradient, or without a
    scale."""
    if not (adaptive and scale): return None
    return (RUNNING_MAX_STEP_LIMIT if running_max else ADAPTIVE_STEP_LIMIT) * scale


# Inputs far above unit scale (a table left unstandardized, pixels in 0-255) start a plain net's outputs far too large:
# its sweep falls from a loss of 10-40 to about the constant prediction's, and its long fits collapse at lrs the sweep
# reads as safe. One-liner, 3 seeds (twenty-ninth session): an MLP on the 8x8 digits under AdamW scored 98.4% on [0, 1]
# inputs (their root mean square 0.5), 98.5% on 0-16 (7.7), 66.7% on 0-64 (31: one seed at chance) and 8.6% on 0-255
# (123); scikit-learn's breast-cancer table raw (206) 71.9%, 96.2% standardized. Under SGD, whose step scales with the
# gradient, the MLP held up to 0-64 (98.6%); a BatchNorm CNN on 0-255 fitted as on [0, 1] (98.7 / 98.1% under SGD /
# Adam). lr_find warns above INPUT_RMS_LIMIT on a net without normalization layers, and for an Adam-like optimizer on a
# plain MLP multiplies its step limit (the weights' typical size, see step_limit) by INPUT_RMS_LIMIT / rms
# (`input_scale_factor`): an Adam step moves each weight by about the lr, and through a plain MLP inputs c times larger
# move its outputs about c times as far. The digits MLP then scored 96.1% (0-64) and 97.8% (0-255), the raw cancer table
# 89.8%. Scaling the suggestion itself by the factor, tried first, gained 202 points summed on five MLPs made after it
# (raw wine 46.3 -> 83.3%, a GELU MLP on a 10-class table x 20 13.1 -> 88.6%) but lost where a sweep had read a low S
# already (-9.0 on a tanh MLP, -6.5 on an ELU one, of ten more); as a limit, which binds only above, the same fifteen
# gained 357 summed (a sigmoid MLP on 0-255 digits 29.9 -> 91.1%; -2.2 and -1.2 on a quantile and a tanh MLP). Five made
# after the limit (iris x 10, MNIST-1D x 20, a 3-class table x 50, 0-100 digits, spirals x 100): three unchanged, -0.5
# and -0.9 (none had collapsed). A plain CNN with global average pooling on 0-255 digits lost 1.5 with the factor, so
# convolutions (and recurrent nets, not measured) are left out
INPUT_RMS_LIMIT = 16.


def far_above_unit_scale(rms: float | None) -> bool:
    "Whether a root mean square of inputs or targets (None: none measured) lies above INPUT_RMS_LIMIT."
    return rms is not None and rms > INPUT_RMS_LIMIT


def input_scale_factor(input_rms: float | None, adaptive: bool, plain_mlp: bool) -> float:
    """What an Adam-like optimizer's step limit (:func:`step_limit`) is multiplied by for inputs whose root mean
    square is `input_rms` (as the first layer with weights meets them, ``LRFinderResult.input_rms``; None: no
    float inputs): INPUT_RMS_LIMIT / input_rms above that limit on a plain MLP (`plain_mlp`: no normalization
    layers, convolutions, attention or recurrent layers), else 1. An Adam step moves each weight by about the lr
    whatever its gradient, and inputs c times larger move a plain MLP's outputs about c times as far; its sweep,
    falling from outputs far too large, does not show it."""
    if not (adaptive and plain_mlp and far_above_unit_scale(input_rms)): return 1.
    return INPUT_RMS_LIMIT / input_rms


# The same inputs under SGD (thirtieth session; plain MLPs, 3 seeds, made for it: the 8x8 digits at 0-64 and 0-255,
# scikit-learn's wine and breast-cancer tables raw, MNIST-1D x 50, a 10-class table x 20, spirals x 30, moons x 100,
# blobs x 10, iris x 10 (rms 10: below INPUT_RMS_LIMIT)). Such a sweep falls from outputs far too large to about the
# constant prediction's loss and runs flat there up to lrs of 0.1-3, where a first large step has silenced the net, and
# the edge rule reads that as its floor: the one-liner scored 9.6 / 43.5 / 8.9% on MNIST-1D x 50, 16.9 / 85.5 / 14.0%
# on the table x 20, the majority class on two cancer seeds and on every wine seed. An SGD step on the first layer is
# the lr times a gradient that grows with the inputs, and it moves the outputs as much again: about lr x rms^2. Fits
# at lr = L / rms^2 for L = 16, 64 and 256: 64 lifted MNIST-1D most (69-71%) but left the table x 20 and blobs x 10 at
# chance on two seeds each; 256 bound almost nowhere. With the one-liner held to L = SGD_INPUT_LIMIT = 16: MNIST-1D
# x 50 58.5 / 59.9 / 62.7%, the table x 20 87.1-87.3%, cancer 91.2% on every seed, wine 66.7 / 69.4 / 66.7%, two blobs
# seeds 24.8 -> 88.5 / 87.8%, a moons seed 50.2 -> 84.0%; the 0-255 digits, whose sweeps read a low lr themselves,
# 97.5 -> 96.5% mean (0-64, iris: unchanged); spirals x 30 stay at chance whatever the lr (33-37%; standardized 99%):
# +569 points summed over the ten's seeds. Seven made after it (bench/suggest_unseen.py): +104 (circles x 50 80.0 ->
# 96.6% mean, raw wine under Nesterov at batch 8 55.6 -> 65.7%, quantiles x 40 24.3 -> 36.5%), but a tanh MLP on blobs
# x 30 63.8 -> 59.9% (a bounded activation caps how far the outputs move) and a deep MLP on a 5-class table x 30
# 85.9 -> 85.1%; one unchanged. Plain CNNs under SGD alike (the first convolution's step and output scale with its
# inputs the same way): on 0-255 digits a CNN with dropout 8.7 -> 97.7% mean (every seed had collapsed), a 1-D CNN on
# MNIST-1D x 50 10.0 -> 90.6%, but a CNN with global average pooling, which had not collapsed, 97.2 -> 95.7%; 64 in
# place of 16 for them lost 35 points on the 1-D CNN. Four CNNs made after it: a 16x16 CNN on 0-255 pixels 40.1 ->
# 92.9% (two seeds had collapsed), a residual CNN -1.0, a dilated 1-D CNN -2.1, a pooled 1-D one -2.0 (none had).
# Recurrent nets are left out (an LSTM on 0-255 digit rows: 63 / 67 / 66% at S, 73-77% at S/4, the limit near S/100).
# Optimizers that divide by the gradient's size get none here (RMSprop, Adagrad: divided_step_input_limit)
SGD_INPUT_LIMIT = 16.


def sgd_input_limit(input_rms: float | None, with_gradient: bool, plain: bool) -> float | None:
    """The lr the 'fit' suggestion of an optimizer that steps with the gradient (`with_gradient`, SGD:
    :func:`~onecycle.core.hyper.steps_with_gradient`) may not pass on a plain net (`plain`: no normalization,
    attention or recurrent layers; an MLP or a CNN) whose inputs' root mean square `input_rms` lies above
    INPUT_RMS_LIMIT: SGD_INPUT_LIMIT / input_rms ** 2, since such a step moves the first layer's weights in
    proportion to its inputs and its outputs as much again. None otherwise (Adam-like optimizers:
    :func:`input_scale_factor`; RMSprop and Adagrad: :func:`divided_step_input_limit`)."""
    if not (with_gradient and plain and far_above_unit_scale(input_rms)): return None
    return SGD_INPUT_LIMIT / input_rms ** 2


# RMSprop on the same inputs (thirtieth session, one-liner, 3 seeds): its fits collapsed as SGD's did (MNIST-1D x 50:
# 9.6 / 8.9 / 8.9% at S, 67-69% at S/16; a 10-class table x 20 at chance on two seeds; raw breast cancer at the
# majority class on one), and Adam's limit (the weights' size x 16 / rms) lies above those S: an RMSprop step moves
# every weight by about the lr at every step, where Adam's momentum average of noisy gradients moves it less. A tenth of
# Adam's limit: MNIST-1D x 50 9.1 -> 67.5% mean, the table x 20 34.1 -> 75.9%, cancer 81.3 -> 89.8%, 0-255 digits
# unchanged (97.5%); half of Adam's left MNIST-1D at 29.0% and the table at 34.1%. Five made after it: raw wine 64.8
# -> 80.6%, a dropout CNN on 0-255 digits 9.1 -> 97.8%, circles x 50 and moons x 100 (momentum 0.9) unchanged.
RMSPROP_STEP_FRACTION = 0.1
# Adagrad's first step moves every weight by about the lr too, but later ones by about the lr over the root of the steps
# taken (its sum of squares grows), so it needs more than Adam, not less: a tenth of Adam's limit cost a blobs MLP 11.2
# points, and Adam's own (thirty-first session, one-liner, 3 seeds, six plain MLPs it was read on: raw cancer and
# wine, blobs x 10, 0-255 digits, MNIST-1D x 50, a 10-class table x 20) rescued the raw tables (cancer 80.4 -> 90.4%
# mean, one seed had sat at the majority class; wine 48.1 -> 64.8%, two seeds had) but cost four others 1.2-9.7 points.
# 4, 8, 16 and 32 times Adam's limit all rescued the tables (cancer 89.2-89.8%, wine 65.7-71.3%) and cost at most 0.9
# points elsewhere (4x, MNIST-1D x 50); 8, in the middle, did best on wine and left the other four within 0.3 points.
# Five made after it: a dropout CNN on 0-255 digits 97.0 -> 98.3%, quantiles x 40 50.4 -> 46.9% (a seed whose sweep
# read 0.43 held at 0.17: 58.9 -> 49.3%), three unchanged. tune: raw wine 50.0 -> 69.4% (two seeds had collapsed)
ADAGRAD_STEP_MULTIPLE = 8.


def divided_step_multiple(running_rms: bool, summed_squares: bool) -> float | None:
    """How many times Adam's limit on inputs far above unit scale an optimizer that divides its step by the gradient's
    size without Adam's momentum average may take: RMSPROP_STEP_FRACTION for RMSprop (`running_rms`:
    :func:`~onecycle.core.hyper.keeps_running_rms`), ADAGRAD_STEP_MULTIPLE for Adagrad (`summed_squares`:
    :func:`~onecycle.core.hyper.sums_squared_gradients`); None for others."""
    return RMSPROP_STEP_FRACTION if running_rms else ADAGRAD_STEP_MULTIPLE if summed_squares else None


def divided_step_input_limit(input_rms: float | None, multiple: float | None, plain: bool,
                             scale: float | None) -> float | None:
    """The lr the 'fit' suggestion of RMSprop or Adagrad may not pass on a plain net (`plain`, as for
    :func:`sgd_input_limit`) whose inputs' root mean square `input_rms` lies above INPUT_RMS_LIMIT: `multiple`
    (:func:`divided_step_multiple`) times Adam's limit there, the weights' typical size `scale` x INPUT_RMS_LIMIT /
    input_rms. None otherwise (no multiple: another optimizer)."""
    if not (multiple and plain and scale and far_above_unit_scale(input_rms)): return None
    return multiple * scale * INPUT_RMS_LIMIT / input_rms


def applied_lr_limit(lrs, start_step: int = 0) -> float:
    """The largest lr a sweep of `lrs` (one per step, from an optimizer that had taken `start_step` steps: 0 when
    fresh) applied with an optimizer that caps its own step at 1/sqrt(step) (``core.hyper.caps_own_step``:
    Adafactor): the max over steps i of min(lrs[i], 1/sqrt(start_step + i + 1)). Past it the sweep's lrs acted as
    its cap, and its loss kept falling because it trained longer, not because the lr helped: a 100-step sweep to
    10 showed no edge at all, and a BatchNorm CNN on the 8x8 digits fitted at its end (10) stayed at chance, at
    0.1-1.2 it scored 96-98%."""
    if not lrs: raise ValueError('no lrs: the sweep took no step')
    if not (isinstance(start_step, int) and start_step >= 0):
        raise ValueError(f'start_step must be an int >= 0, got {start_step!r}')
    return max(min(lr, (start_step + i + 1) ** -0.5) for i, lr in enumerate(lrs))


def plateau_anchor(lrs, raw_losses, smooth) -> float | None:
    """Where :func:`suggest_for_fit` anchors a flat sweep's suggestion (given a `plateau` share): its plateau edge
    (:func:`suggest_plateau_edge`) where that lies above its edge (:func:`suggest_edge`), else None (the sweep's
    edge, read from its lowest point, stands)."""
    rise = suggest_plateau_edge(lrs, raw_losses, smooth)
    return rise if rise is not None and rise > suggest_edge(lrs, smooth) else None


def suggest_for_fit(lrs, losses, fit_steps, sweep_lrs=None, exponent=EXPOSURE_EXPONENT, min_factor=MIN_FIT_FACTOR,
                    sweep_exponent=SWEEP_EXPONENT, reference=REFERENCE_EXPOSURE, raw_losses=None, lift=0.,
                    limit=None, spike_cap=True, plateau=0., spike_steps=1, **cycle) -> float:
    """A max_lr for a 1cycle fit of `fit_steps` optimizer steps: the edge E of the sweep's loss floor
    (:func:`suggest_edge`, where a few steps at each lr start to turn unstable), lowered by how much
    longer the fit stays near its peak than a range test does.

    The range test sees each lr for a few steps only. A 1cycle fit spends hundreds of steps near its
    peak, and the largest lr it survives falls as that time grows (the sharpness rises during
    training until the lr sits at the edge of stability, and growth that took the sweep a few
    steps compounds over the whole plateau). The rule, for the default sweep (100 steps from 1e-7
    to 10, about `reference` = 5.4 steps per factor e of lr)::

        E * (reference / fit_steps_near_peak) ** exponent

    with fit_steps_near_peak the fit's steps within a factor e below its peak
    (:func:`one_cycle_exposure`, `cycle` its keyword arguments), the factor kept between
    `min_factor` and 1. A sweep that spends k steps near E (:func:`sweep_exposure` of `sweep_lrs`,
    the training steps' lrs, `lrs` by default) has trained longer by the time it gets there, and
    its loss turns up at a lower lr: E falls about as k ** -0.4 (a 300-step sweep finds it about 1.5x
    lower than a 100-step one). ``(k / reference) ** sweep_exponent`` (between 1/4 and 4) puts E
    back on the default sweep's scale first, so the suggestion depends little on the sweep's length.
    Given the sweep's `raw_losses` (`losses` being their smoothed curve) and a `lift` above 0, a first
    spike P (:func:`suggest_spike`) above E moves the anchor up from E to ``E * (P / E) ** lift`` (at most
    `MAX_SPIKE_LIFT`, 4x): the further the spike lies beyond the edge, the more gently the loss rose
    there, the sign of step noise that grows with the lr rather than of instability. The range test
    passes ``spike_lift(adaptive)``: 0.5 for SGD-like optimizers, none for Adam-like ones.

    It is never above that rescaled (and lifted) E (for the default sweep, E itself), nor, given the sweep's
    `raw_losses` (`losses` being their smoothed curve), above the last lr before its first spike
    (:func:`suggest_spike`, rescaled the same way): an lr at which a single step already undid the
    training is past the edge for any fit, and lowering it further would count the same instability
    twice. A spike pulls the suggestion at most `SPIKE_TRUST` (4x) below E: one step can also be an
    optimizer's transient (Adam's bump while the lr ramps fast), which a fit a quarter of the edge
    high rides out.

    The edge, not Smith's max bound M (where the loss stops falling), is the anchor: on a flat floor
    the lowest point, and M with it, moves by up to 3x with the data order, the edge by less.
    `exponent` is for SGD-like optimizers by default; an Adam-like one takes
    ``exposure_exponent(True)`` = 0 (the range test passes the right one): its long fits were not
    seen to lose stability there, and lowering it cost 3-6 accuracy points on two of its problems.
    So does SGD on a normalized model (``exposure_exponent(False, normalized=True)``): on two
    LayerNorm residual MLPs the lowered edge cost 6-15 points, and four BatchNorm nets did as well
    at the edge as below it (bench/suggest_unseen.py). A model with attention takes SGD's exponent
    whatever the optimizer (``exposure_exponent(True, attention=True)``): at the edge, full AdamW fits of
    post-norm transformers collapsed to chance on some seeds (a 2x2-patch encoder of the 8x8 digits: 56%
    and 73% where the lowered edge scored 95.5% and 96%).

    Given a `limit` it is never above it: the range test passes :func:`step_limit`, the weights' typical size for
    an Adam-like optimizer, whose steps move each weight by about the lr. With `spike_cap` False a spike below
    the edge caps nothing (the range test's choice for an SGD-like optimizer fitting a regression, whose batches
    top the starting loss by noise alone; see :func:`exposure_exponent`). A spike is `spike_steps` losses in a row
    above the start (:func:`suggest_spike`'s `lasting`; the range test's two on a net with dropout).

    With `plateau` above 0 (the range test's choice for an SGD-like optimizer's sweep that learnt too little) and
    the `raw_losses`, a sweep that never came below its plateau by more than the noise of its batches (no floor, so
    E is read from noise) is anchored at that share of where its loss left the plateau for good
    (:func:`suggest_plateau_edge`) when that lies above E, and lowered for the fit's length alike; not rescaled for
    the sweep's length (a net that never learnt was not sharpened by it), nor moved by spikes (its batches top the
    start by noise), but held below `limit`."""
    check_range('exponent', exponent, 0, 5)
    check_range('sweep_exponent', sweep_exponent, 0, 5)
    check_positive('reference', reference)
    check_fraction('min_factor', min_factor)
    check_range('lift', lift, 0, 1)
    check_positive('limit', limit, allow_none=True)
    check_range('plateau', plateau, 0, 1)
    check_int('spike_steps', spike_steps, min_value=1)
    edge = suggest_edge(lrs, losses)
    factor = (reference / max(one_cycle_exposure(fit_steps, **cycle), reference)) ** exponent
    factor = min(1., max(factor, min_factor))
    rise = plateau_anchor(lrs, raw_losses, losses) if plateau and raw_losses is not None else None
    if rise is not None:   # no floor: anchored where it left its plateau
        lr = rise * plateau * factor
        return lr if limit is None else min(lr, limit)
    k = sweep_exposure(lrs if sweep_lrs is None else sweep_lrs, edge)
    rescale = min(max((k / reference) ** sweep_exponent, 0.25), 4.)
    lr = edge * rescale * factor
    if raw_losses is not None:
        spike = range_test_spike(lrs, raw_losses, losses, lasting=spike_steps)
        if spike > edge: lr *= min((spike / edge) ** lift, MAX_SPIKE_LIFT)
        if spike_cap: lr = min(lr, max(spike, edge / SPIKE_TRUST) * rescale)
    return lr if limit is None else min(lr, limit)


# --- checking a suggestion at the fit's own peak ----------------------------------------------------
# How many times the end loss of the probe at half an lr a held probe may end above before that lr counts as past
# the edge (see pick_held). A held lr's loss floor is set by the noise of its steps, which grows about in proportion
# to the lr: on the 13 bench problems with SGD on plain models (39 seeds), probes at S ended 0.64-2.99x the ones at
# S/2, and the one above 3 (an LSTM, 4.0x) did 2 points better at S/2 in full. Plain CNNs on 8x8 digits whose fits
# at S collapsed (7-90% where S/2 or S/4 scored 96-98%) ended 3.9-19x above, or diverged. Of eight problems made
# after the rule was set, one seed of an ELU MLP ended at 3.15x and lost 0.8 points to it; a tanh CNN's 15x gained 1.5.
# A ratio misses a collapse on a task where no probe gets far: tune's probes on a CNN for MNIST-1D at batch 16 (with
# the 'fit' suggestion 0.20-0.27) ended at 2.33 and 2.35, back at chance (ln 10 = 2.30) and 1.3x above S/2's 1.74,
# and S was kept; its fits there scored 8.9 and 9.6% (see pick_held's `starts`).
HOLD_RATIO = 3.
# ... and a probe whose loss fell less than this share of the largest fall (start - end) of a probe at a smaller lr did
# not hold either (see pick_held's `starts`): where no probe gets far (a hard task, a plateau), end losses stay close
# and their ratio says little, but an lr past the edge of a long fit falls much less far than the one below it. A
# plain CNN on 16x16 digits under SGD: one-liner seed 2's probes at 0.71 and 0.36 fell 0.007 and 0.011 from 2.30, the
# one at 0.18 fell 0.28, every end within the ratio of the lowest; its fit at 0.71 scored 9.4%, at 0.178 59.6%
# (82.8-93.6% at 0.16-0.2: its fits swing between neighbouring lrs). Set at a third, then a half: of the one-liner's
# 168 hold checks on 57 SGD problems it moved seven (+55.4 points summed, none lost), of tune's 143 four (+42.4: tune's
# MNIST-1D CNN at batch 32, seed 0, fell 0.32 against S/2's 0.69, 48.9 -> 89.1%); on twelve problems made after it,
# the one-liner one seed (8.6 -> 94.8%) and tune three (9.7 -> 89.6 and 86.6% on a deep MLP; an MNIST-1D CNN at
# batch 24 9.9 -> 90.3%), nothing lost. At 0.75 the one-liner's MNIST-1D CNN at batch 32 would lose 9.0 on a seed
HOLD_DROP = 0.5


def shortened_ratio(ratio: float, fraction: float) -> float:
    """`ratio` (see HOLD_RATIO) for hold probes cut to `fraction` of their length (0 < fraction <= 1): its excess over
    1 scaled by that fraction. Cut short, the probes at smaller lrs stop before they have learnt as far, while one
    past the edge ends as high as ever, so every ratio shrinks. A deep MLP on the digits at batch 8 (SGD): lr_find's
    probes of 400 steps ended at S 7.8x above S/4's; tune's, cut to 256 steps by its budget, 2.7x, and S was kept
    (its fit scored 47.4%, at S/2 94.6%)."""
    check_range('fraction', fraction, 0, 1, lo_open=True)
    return 1 + (ratio - 1) * fraction


def geometric_mean(a: float, b: float | None = None) -> float:
    """Of two suggested lrs (two sweeps on two data orders): lrs compare by ratios, so the middle of
    two is their geometric mean. Either one alone where the other is missing or not a finite positive
    number."""
    ok = [v for v in (a, b) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return math.sqrt(ok[0] * ok[1]) if len(ok) == 2 else ok[0] if ok else a


def held_falls(lrs, ends, starts) -> list:
    """For each hold probe (in the order given): (how far its loss fell, start - end, -inf where it diverged; the
    largest fall of a probe at a smaller lr, 0 where none fell). :func:`pick_held` fails a probe whose fall is under
    HOLD_DROP times the second; ``hold_check.held_line`` says so."""
    out, below = [None] * len(lrs), 0.
    for i in sorted(range(len(lrs)), key=lambda i: lrs[i]):
        fall = starts[i] - ends[i] if math.isfinite(ends[i]) else -math.inf
        out[i], below = (fall, below), max(below, fall)
    return out


def pick_held(lrs, ends, ratio=HOLD_RATIO, starts=None) -> float:
    """The largest of `lrs` whose held probe held: its end loss (`ends`, one per lr; inf for a probe that
    diverged) at most `ratio` times the lowest end loss among the probes at smaller lrs. A held probe
    ends higher at a larger lr (the steps' noise grows with it), by up to about 3x a doubling on healthy
    nets; far more means the held peak undid the training, as a long fit's plateau would. Given the
    probes' `starts` (each one's loss before it learnt), a probe whose loss fell less than HOLD_DROP (half)
    as far as a probe's at a smaller lr, or not at all, did not hold either: on a hard task the
    losses that learnt stay high too, and a ratio does not tell a slow learner from one back at chance (see
    HOLD_RATIO), or from one stuck on a plateau that the gentler probe left (see HOLD_DROP). The
    smallest lr when none above it held. Ratios say nothing of losses that can reach 0 or below (a
    Gaussian NLL, a custom loss): where a finite end is <= 0, the largest lr whose probe did not diverge."""
    if len(lrs) != len(ends): raise ValueError(f'lrs and ends differ in length ({len(lrs)} and {len(ends)})')
    if starts is not None and len(starts) != len(lrs):
        raise ValueError(f'starts and lrs differ in length ({len(starts)} and {len(lrs)})')
    if not lrs: raise ValueError('no probes to pick from')
    if any(not l > 0 for l in lrs): raise ValueError('learning rates must be > 0')
    check_range('ratio', ratio, 1, math.inf, hi_open=True)
    order = sorted(range(len(lrs)), key=lambda i: lrs[i])
    if starts is not None:   # learnt (next to) nothing, where a smaller lr learnt: as if it diverged
        ends = [math.inf if below > 0 and fall < HOLD_DROP * below else e
                for e, (fall, below) in zip(ends, held_falls(lrs, ends, starts))]
    if any(math.isfinite(e) and e <= 0 for e in ends):
        return max((lrs[i] for i in order if math.isfinite(ends[i])), default=lrs[order[0]])
    for pos in range(len(order) - 1, 0, -1):
        i, below = order[pos], min(ends[j] for j in order[:pos])
        if math.isfinite(ends[i]) and ends[i] <= ratio * below: return lrs[i]
    return lrs[order[0]]
