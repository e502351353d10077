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
