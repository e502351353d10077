import sys
import warnings

from onecycle.core.warn import user_stacklevel


def test_user_stacklevel_names_the_first_frame_outside_onecycle():
    assert user_stacklevel() == 1   # called from here, outside the package: this very frame

    def warn_here(): warnings.warn('x', UserWarning, stacklevel=user_stacklevel())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        warn_here()
    assert rec[0].filename == __file__ and rec[0].lineno == warn_here.__code__.co_firstlineno


def test_a_warning_from_inside_onecycle_skips_its_wrappers(make_model):
    "Learner.lr_find wraps range_test.lr_find: the range test's warning still names the test's line."
    from helpers import no_signal_learner
    learn = no_signal_learner(make_model())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        line = sys._getframe().f_lineno + 1
        learn.lr_find(hold_check=False)
    assert [w.filename for w in rec if 'lr_find' in str(w.message)] == [__file__]
    assert [w.lineno for w in rec if 'lr_find' in str(w.message)] == [line]
