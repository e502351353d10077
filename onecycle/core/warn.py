"""Warnings aimed at the user's own line: the stacklevel that skips onecycle's frames."""
from __future__ import annotations

import os
import sys

__all__ = ['user_stacklevel']

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """The `stacklevel` for a ``warnings.warn`` made right after this call that names the first caller outside
    onecycle, however many of its wrappers (``Learner.lr_find``, keyword aliases...) lie in between."""
    f, level = sys._getframe(1), 1   # 1: the function about to warn
    while f is not None and f.f_code.co_filename.startswith(_PKG): f, level = f.f_back, level + 1
    return level
