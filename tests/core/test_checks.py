"""The argument checks the searches share: candidate lists and momentum candidates."""
import pytest

from onecycle.core.checks import check_candidates, check_mom_candidate, check_positive


def test_check_candidates_takes_any_iterable_and_checks_each():
    assert check_candidates('lrs', (0.1, 0.2), lambda v: check_positive('lrs', v)) == [0.1, 0.2]
    assert check_candidates('bs', (b for b in (8, 16)), lambda v: None) == [8, 16]
    with pytest.raises(TypeError, match='lrs must be a list'): check_candidates('lrs', 0.1, lambda v: None)
    with pytest.raises(TypeError, match='lrs must be a list'): check_candidates('lrs', '0.1', lambda v: None)
    with pytest.raises(ValueError, match='lrs must not be empty'): check_candidates('lrs', [], lambda v: None)
    with pytest.raises(ValueError, match='lrs'): check_candidates('lrs', [0.1, -1.], lambda v: check_positive('lrs', v))


def test_check_mom_candidate_takes_a_constant_or_a_cyclical_pair():
    assert check_mom_candidate('moms', 0.9) == 0.9
    assert check_mom_candidate('moms', (0.95, 0.85)) == (0.95, 0.85)
    with pytest.raises(ValueError, match='moms'): check_mom_candidate('moms', 1.)
    with pytest.raises(ValueError, match='moms'): check_mom_candidate('moms', (0.95, 1.2))
    with pytest.raises(TypeError, match='moms: a cyclical candidate'): check_mom_candidate('moms', (0.9, 0.8, 0.7))


# --- short reprs in messages ---------------------------------------------------------------------------
def test_short_repr_keeps_short_ones_and_elides_long_ones():
    from onecycle.core.checks import short_repr
    assert short_repr([1, 2]) == '[1, 2]' and short_repr('x') == "'x'"
    r = short_repr(list(range(5000)))
    assert len(r) == 80 and r.startswith('[0, 1, 2') and r.endswith('4998, 4999]') and '...' in r

    class Bad:
        def __repr__(self): raise RuntimeError('no repr')
    assert short_repr(Bad()) == '<Bad>'


def test_a_range_test_result_passed_as_max_lr_is_a_short_error_with_the_fix(make_learner):
    from onecycle import fit_one_cycle
    learn = make_learner()
    res = learn.lr_find(num_it=50)
    assert len(repr(res)) > 2000
    for bad in (res, [res, 1e-3], (1e-3, res)):
        with pytest.raises(TypeError) as e: fit_one_cycle(learn, 1, bad)
        msg = str(e.value)
        assert len(msg) < 300 and msg.startswith('max_lr must be a number, got LRFinderResult LRFinderResult(')
        assert f'pass its .suggestion ({res.suggestion:.3g})' in msg
    with pytest.raises(TypeError, match='must be callbacks') as e: learn.fit(1, cbs=[res])
    assert len(str(e.value)) < 300 and 'suggestion' not in str(e.value)


def test_a_tune_result_passed_whole_points_to_fit_kwargs():
    from types import SimpleNamespace
    from onecycle.core.checks import check_lr
    with pytest.raises(TypeError, match=r'\*\*result.fit_kwargs'):
        check_lr('max_lr', SimpleNamespace(fit_kwargs={'max_lr': 0.1}, blob='x' * 10_000))


def test_long_values_are_shortened_in_every_check():
    from onecycle.core import checks
    big = 'x' * 5000
    calls = [lambda: checks.check_int('n', big), lambda: checks.check_choice('mode', big, ('a', 'b')),
             lambda: checks.check_bool('flag', big), lambda: checks.check_moms('moms', big),
             lambda: checks.check_callable('f', big), lambda: checks.check_number('x', float('inf'))]
    for call in calls:
        with pytest.raises((TypeError, ValueError)) as e: call()
        assert len(str(e.value)) < 250, str(e.value)
