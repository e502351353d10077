"""Small reference models: the published MNIST-1D CNN and MLP, and a pre-norm residual MLP."""
from __future__ import annotations

from torch import nn

__all__ = ['MNIST1DCNN', 'mnist1d_cnn', 'mlp', 'ResMLP']


class MNIST1DCNN(nn.Module):
    """The MNIST-1D paper's CNN: three 1-d convolutions of `channels` channels (kernel 5 then 3,
    stride 2, ReLU), flattened into a linear classifier. About 5k parameters."""
    def __init__(self, n_classes=10, channels=25, seq_len=40):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        n = seq_len
        for k in (5, 3, 3): n = (n + 2 - k) // 2 + 1
        self.linear = nn.Linear(channels * n, n_classes)

    def forward(self, x):
        x = x.view(x.shape[0], 1, x.shape[-1])
        h = self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu()
        return self.linear(h.flatten(1))


def mnist1d_cnn(n_classes=10, channels=25, seq_len=40) -> MNIST1DCNN:
    return MNIST1DCNN(n_classes, channels, seq_len)


def mlp(sizes=(40, 100, 100, 10), act=nn.ReLU) -> nn.Sequential:
    "Linear layers of the given sizes with `act` between them (the MNIST-1D MLP by default)."
    if len(sizes) < 2: raise ValueError(f'sizes must list at least an input and an output size, got {sizes}')
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2: layers.append(act())
    return nn.Sequential(*layers)


class ResMLP(nn.Module):
    """Pre-norm residual MLP: an input layer to `width`, `depth` blocks x + (LayerNorm, Linear to 2 x width,
    GELU, Linear back)(x), as in a transformer's feed-forward half, then LayerNorm and a linear head. Its
    LayerNorms make most weights scale-invariant, which changes how it takes large learning rates."""
    def __init__(self, n_in=40, width=128, n_out=4, depth=3):
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                                   nn.Linear(2 * width, width)) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_out))

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks: x = x + b(x)
        return self.head(x)
