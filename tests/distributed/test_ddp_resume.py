"""Exact resume under torchrun: a 2-rank (gloo, CPU) fit stopped by a real SIGINT on one rank (mid-epoch in
training, and during validation) stops on both ranks after the same batch, and resumes bitwise, in memory
and from its checkpoint in new processes (tests/ddp_resume_script.py)."""
import json

import pytest

from launch import torchrun


def _torchrun(mode, out):
    torchrun('ddp_resume_script.py', mode, out)
    return [json.loads((out / f'{mode}_rank{r}.json').read_text()) for r in range(2)]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp_resume')
    return _torchrun('stop', out), _torchrun('resume', out)


def test_sigint_on_one_rank_stops_both_after_the_same_batch(runs):
    stop, _ = runs
    for case in ('train_rank1', 'in_group_rank0', 'valid_rank0'):
        assert stop[0][case]['stopped'] and stop[1][case]['stopped']
        assert stop[0][case]['at'] == stop[1][case]['at']
    assert stop[0]['train_rank1']['at'] == [1, 2]   # epoch 1, after its 2nd batch: the one the SIGINT came in
    assert stop[0]['in_group_rank0']['at'] == [1, 3]
    assert stop[0]['valid_rank0']['at'] == [1, 0]   # during validation: at the end of the epoch


@pytest.mark.parametrize('case', ['train_rank1', 'in_group_rank0', 'valid_rank0'])
def test_resume_under_torchrun_is_bitwise(runs, case):
    stop, resumed = runs
    for r in range(2):
        assert stop[r][case]['weights'] and stop[r][case]['history'], f'in memory, rank {r}'
        assert resumed[r][case] == {'weights': True, 'history': True}, f'new processes, rank {r}'
