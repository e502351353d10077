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


def test_a_warning_from_inside_onecycle_skips_its_wrappers():
    "Learner.lr_find wraps range_test.lr_find: the range test's warning still names the test's line."
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from onecycle import Learner
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2048, 8, generator=g), torch.randint(0, 2, (2048,), generator=g)   # random labels
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    nn.init.zeros_(model[-1].weight)
    dls = DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(x, y), batch_size=64)
    learn = Learner(model, dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, progress=False, device='cpu')
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        line = sys._getframe().f_lineno + 1
        learn.lr_find(hold_check=False)
    assert [w.filename for w in rec if 'lr_find' in str(w.message)] == [__file__]
    assert [w.lineno for w in rec if 'lr_find' in str(w.message)] == [line]
