"""onecycle/models.py: the reference models build, take their inputs and say what they are."""
import pytest
import torch
from torch import nn

from onecycle.core.hyper import is_normalized
from onecycle.models import ResMLP, mlp, mnist1d_cnn


def test_mnist1d_models_take_a_batch_of_40_point_signals():
    x = torch.randn(5, 40)
    assert mnist1d_cnn()(x).shape == (5, 10) and mlp()(x).shape == (5, 10)
    assert not is_normalized(mnist1d_cnn()) and not is_normalized(mlp())
    with pytest.raises(ValueError, match='sizes'): mlp((40,))


def test_resmlp_is_a_normalized_residual_stack():
    "depth blocks, each added to its input; LayerNorms for every two weight layers, so is_normalized holds."
    torch.manual_seed(0)
    m = ResMLP(n_in=20, width=32, n_out=3, depth=4)
    x = torch.randn(7, 20)
    assert m(x).shape == (7, 3) and len(m.blocks) == 4
    assert sum(isinstance(l, nn.LayerNorm) for l in m.modules()) == 5 and is_normalized(m)
    # a block whose last layer is zero adds nothing: the stack is residual
    for b in m.blocks: nn.init.zeros_(b[-1].weight); nn.init.zeros_(b[-1].bias)
    assert torch.allclose(m(x), m.head(m.inp(x)))
