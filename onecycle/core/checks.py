"""Argument checks shared by the public API: each raises before any work starts, naming the
parameter, what it got and what is allowed."""
from __future__ import annotations

import math
import numbers

__all__ = ['short_repr', 'got', 'check_number', 'check_int', 'check_positive', 'check_range', 'check_fraction',
           'check_moms', 'check_callable', 'check_choice', 'check_bool', 'check_lr', 'check_wd', 'check_candidates',
           'check_mom_candidate']


def short_repr(o, limit=80) -> str:
    """``repr(o)`` cut to `limit` characters (middle elided) for error messages: a range-test result or
    a tensor passed by mistake must not print thousands of characters."""
    try: r = repr(o)
    except Exception: r = f'<{type(o).__name__}>'
    if len(r) <= limit: return r
    head = max(limit * 2 // 3, 1)
    return f'{r[:head]}...{r[-(limit - head - 3):]}' if limit - head > 3 else r[:limit]


def _hint(v) -> str:
    "What to pass instead, for results people hand over whole."
    s = getattr(v, 'suggestion', None)
    if _is_number(s): return f': pass its .suggestion ({s:.3g}), the learning rate it suggests, or one of .suggestions'
    if isinstance(getattr(v, 'fit_kwargs', None), dict): return ': pass its findings as **result.fit_kwargs'
    return ''


def got(v) -> str:
    "'got TYPE REPR' for an error message, the repr shortened, with a hint for a result passed whole."
    return f'got {type(v).__name__} {short_repr(v)}{_hint(v)}'


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_number(name, v, allow_none=False):
    if v is None and allow_none: return v
    if not _is_number(v):
        raise TypeError(f'{name} must be a number, {got(v)}')
    if not math.isfinite(v):
        raise ValueError(f'{name} must be finite, got {short_repr(v)}')
    return v


def check_int(name, v, min_value=None, allow_none=False):
    if v is None and allow_none: return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f'{name} must be an integer, {got(v)}')
    if min_value is not None and v < min_value:
        raise ValueError(f'{name} must be an integer >= {min_value}, got {short_repr(v)}')
    return int(v)


def check_positive(name, v, allow_zero=False, allow_none=False):
    if v is None and allow_none: return v
    check_number(name, v)
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {short_repr(v)}")
    return v


def check_range(name, v, lo, hi, lo_open=False, hi_open=False, allow_none=False):
    "`v` within [lo, hi], each end open when asked."
    if v is None and allow_none: return v
    check_number(name, v)
    bad = (v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi))
    if bad:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f'{name} must be in {interval}, got {short_repr(v)}')
    return v


def check_fraction(name, v):
    "A fraction strictly between 0 and 1, like pct_start."
    return check_range(name, v, 0, 1, lo_open=True, hi_open=True)


def check_moms(name, moms, allow_none=True):
    "A (high, low) pair of momentums, each in [0, 1)."
    if moms is None and allow_none: return moms
    if not isinstance(moms, (tuple, list)) or len(moms) not in (2, 3):
        raise TypeError(f'{name} must be a pair (start, middle) of momentums, e.g. (0.95, 0.85), '
                        f'got {short_repr(moms)}')
    for m in moms: check_range(name, m, 0, 1, hi_open=True)
    return tuple(float(m) for m in moms)


def check_mom_candidate(name, m):
    "A momentum candidate of a search: a constant in [0, 1) or a cyclical (high, low) pair of them."
    if isinstance(m, (tuple, list)):
        if len(m) != 2: raise TypeError(f'{name}: a cyclical candidate must be a (high, low) pair, got {short_repr(m)}')
        for v in m: check_range(name, v, 0, 1, hi_open=True)
    else: check_range(name, m, 0, 1, hi_open=True)
    return m


def check_candidates(name, cands, check):
    "The candidates of a search: a non-empty iterable (not a string), each passing `check(c)`; returned as a list."
    if isinstance(cands, (str, bytes)) or not hasattr(cands, '__iter__'):
        raise TypeError(f'{name} must be a list of candidates, {got(cands)}')
    cands = list(cands)
    if not cands: raise ValueError(f'{name} must not be empty')
    for c in cands: check(c)
    return cands


def check_callable(name, v, allow_none=False):
    if v is None and allow_none: return v
    if not callable(v): raise TypeError(f'{name} must be callable, {got(v)}')
    return v


def check_choice(name, v, choices):
    if v not in choices: raise ValueError(f'{name} must be one of {", ".join(map(repr, choices))}, got {short_repr(v)}')
    return v


def check_bool(name, v):
    "A flag: True or False, not merely truthy."
    if not isinstance(v, bool): raise TypeError(f'{name} must be True or False, got {short_repr(v)}')
    return v


def check_wd(name, wd, allow_none=True):
    "A weight decay: a number >= 0 or one such number per param group."
    if wd is None and allow_none: return wd
    if isinstance(wd, (list, tuple)):
        if not wd: raise ValueError(f'{name} must not be empty')
        for v in wd: check_positive(name, v, allow_zero=True)
        return wd
    return check_positive(name, wd, allow_zero=True)


def check_lr(name, lr, allow_none=False):
    "A learning rate: a positive number, a sequence of them, or a slice of them."
    if lr is None and allow_none: return lr
    if isinstance(lr, slice):
        for v in (lr.start, lr.stop):
            if v is not None: check_positive(name, v)
        if lr.stop is None: raise ValueError(f'{name} slice needs a stop (the top learning rate), got {lr}')
        return lr
    if isinstance(lr, (list, tuple)):
        if not lr: raise ValueError(f'{name} must not be empty')
        for v in lr: check_positive(name, v)
        return lr
    return check_positive(name, lr)
