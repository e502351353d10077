"""onecycle/data.py: the offline problems the demo, benches and notebooks use."""
import pytest
import torch

from onecycle.data import teacher_arrays


def test_teacher_arrays_are_seeded_and_flip_only_training_labels():
    a, b = teacher_arrays(seed=3, n_train=500, n_test=200), teacher_arrays(seed=3, n_train=500, n_test=200)
    assert all(torch.equal(x, y) for x, y in zip(a, b))                      # the same seed, the same data
    assert not torch.equal(a[0], teacher_arrays(seed=4, n_train=500, n_test=200)[0])
    x, y, xt, yt = a
    assert x.shape == (500, 20) and xt.shape == (200, 20) and y.max() < 5
    clean = teacher_arrays(seed=3, n_train=500, n_test=200, flip=0.)
    changed = (clean[1] != y).float().mean().item()
    assert 0 < changed < 0.1                   # about flip x (1 - 1/5) of the training labels differ
    assert torch.equal(clean[3], yt)           # test labels stay clean


@pytest.mark.parametrize('kw,match', [({'flip': 1.5}, 'flip'), ({'n_train': 0}, 'n_train'),
                                      ({'n_classes': 1}, 'n_classes')])
def test_teacher_arrays_refuse_bad_arguments(kw, match):
    with pytest.raises((TypeError, ValueError), match=match): teacher_arrays(**kw)
