"""set_seed (core/rng.py): every generator seeded, reruns identical, deterministic mode on request only."""
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from onecycle import Learner, set_seed


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_set_seed_seeds_python_numpy_and_torch():
    set_seed(7); a = _draws()
    set_seed(7); b = _draws()
    set_seed(8); c = _draws()
    assert a == b
    assert all(x != y for x, y in zip(a, c))


def test_a_seeded_run_repeats_exactly(make_dls):
    def run():
        set_seed(123)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))   # init and dropout
        learn = Learner(model, make_dls(shuffle=True), nn.CrossEntropyLoss(), device='cpu', progress=False)
        learn.fit(1, lr=0.01)
        return model.state_dict(), learn.recorder.losses
    (w1, l1), (w2, l2) = run(), run()
    assert l1 == l2 and all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.fixture
def restore_determinism():
    state = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, os.environ.get('CUBLAS_WORKSPACE_CONFIG'))
    yield
    torch.use_deterministic_algorithms(state[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[1], state[2]
    if state[3] is None: os.environ.pop('CUBLAS_WORKSPACE_CONFIG', None)
    else: os.environ['CUBLAS_WORKSPACE_CONFIG'] = state[3]


def test_deterministic_mode_only_when_asked(restore_determinism, monkeypatch):
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    torch.use_deterministic_algorithms(False)
    set_seed(0)
    assert not torch.are_deterministic_algorithms_enabled() and 'CUBLAS_WORKSPACE_CONFIG' not in os.environ
    set_seed(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'


def test_bad_seeds_are_refused_before_any_generator_changes():
    state = torch.get_rng_state()
    with pytest.raises(TypeError, match='seed'): set_seed('1')
    with pytest.raises(TypeError, match='seed'): set_seed(1.5)
    with pytest.raises(ValueError, match='seed'): set_seed(-1)
    with pytest.raises(ValueError, match='seed'): set_seed(2**32)
    with pytest.raises(TypeError, match='deterministic'): set_seed(1, deterministic='yes')
    assert torch.equal(torch.get_rng_state(), state)
