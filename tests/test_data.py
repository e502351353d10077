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


def test_tensor_dls_never_ends_an_epoch_on_a_batch_of_one():
    """65 training samples in batches of 64 would leave a last batch of one, which a BatchNorm model cannot
    train on (PyTorch: 'Expected more than 1 value per channel'): tensor_dls drops that batch by default, and
    only that one. The validation loader keeps every sample whatever drop_last says."""
    from torch import nn
    from onecycle import Learner, fit_one_cycle
    from onecycle.data import tensor_dls
    x66, y66 = torch.randn(66, 4), torch.randint(0, 2, (66,))
    x, y = x66[:65], y66[:65]
    xv, yv = torch.randn(33, 4), torch.randint(0, 2, (33,))
    dls = tensor_dls(x, y, xv, yv, bs=64)
    assert [len(b[0]) for b in dls.train] == [64] and sum(len(b[0]) for b in dls.valid) == 33
    assert [len(b[0]) for b in tensor_dls(x66, y66, xv, yv, bs=64).train] == [64, 2]   # two is kept
    assert sum(len(b[0]) for b in tensor_dls(x, y, xv, yv, bs=16, drop_last=True).valid) == 33
    assert [len(b[0]) for b in tensor_dls(x, y, xv, yv, bs=64, drop_last=False).train] == [64, 1]
    bn = lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    learn = Learner(bn(), dls, nn.CrossEntropyLoss(), progress=False, device='cpu')
    fit_one_cycle(learn, 2, 1e-2)
    assert learn.step_count == 2
    with pytest.raises(ValueError, match='more than 1 value per channel'):
        fit_one_cycle(Learner(bn(), tensor_dls(x, y, xv, yv, bs=64, drop_last=False), nn.CrossEntropyLoss(),
                              progress=False, device='cpu'), 1, 1e-2)
    assert len(tensor_dls(x[:1], y[:1], xv, yv, bs=64).train) == 1   # a single sample in all: kept
    with pytest.raises(TypeError, match='drop_last'): tensor_dls(x, y, xv, yv, drop_last='yes')
