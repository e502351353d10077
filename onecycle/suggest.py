"""Reading a learning-rate range test: suggestions computed from (lr, loss) curves.

Each function takes the learning rates and the (already smoothed) losses of a sweep and returns
one learning rate. They are pure so that they can be tested on synthetic curves with a known answer.
"""
from __future__ import annotations

import math

__all__ = ['suggest_minimum', 'suggest_steep', 'suggest_valley', 'loss_slopes']


def _check(lrs, losses, min_points=3):
    if len(lrs) != len(losses): raise ValueError(f'lrs and losses differ in length ({len(lrs)} and {len(losses)})')
    if len(lrs) < min_points: raise ValueError(f'need at least {min_points} points of the sweep, got {len(lrs)}')
    if any(l <= 0 for l in lrs): raise ValueError('learning rates must be > 0')


def _finite(lrs, losses):
    pts = [(a, b) for a, b in zip(lrs, losses) if math.isfinite(b)]
    return [a for a, _ in pts], [b for _, b in pts]


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


def suggest_steep(lrs, losses) -> float:
    "The learning rate where the loss falls fastest against log(lr), before the minimum."
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    stop = min(range(len(losses)), key=losses.__getitem__) + 1
    stop = max(stop, min(3, len(losses)))
    g = loss_slopes(lrs[:stop], losses[:stop])
    return lrs[min(range(len(g)), key=g.__getitem__)]


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
