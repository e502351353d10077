"""Second names for parameters: the one helper behind the one-liners' shared vocabulary (``n_epoch``,
``max_lr``, ``final_div_factor``, ``cbs``) and the old names that still work for now."""
from __future__ import annotations

import difflib
import functools
import inspect
import warnings

from ..core.warn import user_stacklevel

__all__ = ['keyword_aliases']


def keyword_aliases(synonyms=None, deprecated=None):
    """Decorator for a function (or an ``__init__``) giving some parameters a second keyword name.

    ``synonyms={alias: name}``: ``alias=`` is another accepted name for parameter `name`.
    ``deprecated={old: name}``: the same, with a DeprecationWarning that names the new name.
    Giving a parameter under both names is a TypeError naming both, and so is giving a required one
    under neither; None counts as not given. An unknown keyword is a TypeError naming it (with the
    closest accepted names). The aliases show in ``inspect.signature`` as keyword-only parameters
    defaulting to None; the decorated function itself only ever sees `name`.
    """
    table = {**{a: (n, False) for a, n in (synonyms or {}).items()},
             **{a: (n, True) for a, n in (deprecated or {}).items()}}

    def deco(fn):
        sig = inspect.signature(fn)
        for alias, (name, _) in table.items():
            if name not in sig.parameters or alias in sig.parameters:
                raise ValueError(f'keyword_aliases: {fn.__qualname__} must have {name!r} and no {alias!r}')
        who = fn.__qualname__.removesuffix('.__init__')
        params = list(sig.parameters.values())
        extra = [inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY, default=None) for a in table]
        var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
        required = {n for n, _ in table.values() if sig.parameters[n].default is inspect.Parameter.empty}
        accepted = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)] + list(synonyms or ())

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            given = {a: kwargs.pop(a) for a in table if a in kwargs}
            if not var_kw:
                bad = [k for k in kwargs if k not in sig.parameters]
                if bad:
                    close = difflib.get_close_matches(bad[0], accepted, n=3)
                    raise TypeError(f'{who}() got an unexpected keyword argument {bad[0]!r}'
                                    + (f'; did you mean {" or ".join(map(repr, close))}?' if close else ''))
            try: bound = sig.bind_partial(*args, **kwargs)
            except TypeError as e: raise TypeError(f'{who}() {e}') from None
            for alias, (name, old) in table.items():
                if given.get(alias) is None: continue
                if bound.arguments.get(name) is not None:
                    raise TypeError(f'{who}() got both {name} and {alias}, two names for the same parameter: give one')
                if old:
                    warnings.warn(f'{who}(): {alias}= is deprecated, use {name}=', DeprecationWarning,
                                  stacklevel=user_stacklevel())
                bound.arguments[name] = given[alias]
            for name in required:
                if bound.arguments.get(name) is None:
                    alt = [f'{a}=' for a, (n, old) in table.items() if n == name and not old]
                    raise TypeError(f'{who}() needs {" or ".join([name] + alt)}'
                                    + (': give exactly one' if alt else ''))
            return fn(*bound.args, **bound.kwargs)

        wrapper.__signature__ = sig.replace(
            parameters=[p for p in params if p.kind is not p.VAR_KEYWORD] + extra + var_kw)
        return wrapper
    return deco
