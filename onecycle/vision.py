"""The vision recipe: CIFAR-10 and MNIST as DataLoaders with the standard augmentation, and a ResNet
built for 32x32 images (the setting of Smith and Topin's super-convergence experiments).

Nothing downloads unless asked: ``download=False`` is the default, and missing files raise an
error that says where they were looked for and to pass ``download=True``. Downloads go through
torchvision, which checks the archives' checksums.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .callbacks.predict import get_preds
from .core.callback import Callback
from .core.checks import check_bool, check_callable, check_int
from .core.data import DataLoaders

__all__ = ['CIFAR10_STATS', 'MNIST_STATS', 'ImageTensorDataset', 'image_transforms', 'cifar10_tensors',
           'mnist_tensors', 'cifar10_dls', 'mnist_dls', 'BasicBlock', 'CifarResNet', 'cifar_resnet18',
           'cifar_resnet', 'HorizontalFlip', 'tta']

# Per-channel mean and standard deviation of the training images, pixels scaled to [0, 1].
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
MNIST_STATS = ((0.1307,), (0.3081,))

CIFAR10_FOLDER = 'cifar-10-batches-py'
CIFAR10_TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
CIFAR10_TEST_FILES = ('test_batch',)
MNIST_RAW_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
                   't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def _check_root(root) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f'root must be a path (str or os.PathLike), got {type(root).__name__} {root!r}')
    return Path(root).expanduser()


# --- reading the files -----------------------------------------------------------------------------
def _read_cifar_batch(path: Path):
    "One pickled CIFAR batch: a dict with 'data' (N, 3072) uint8 and 'labels' (N ints); keys str or bytes."
    with open(path, 'rb') as f: entry = pickle.load(f, encoding='latin1')
    entry = {(k.decode('latin1') if isinstance(k, bytes) else k): v for k, v in entry.items()}
    if 'data' not in entry or 'labels' not in entry:
        raise ValueError(f'{path} is not a CIFAR-10 batch: it has no data/labels entries (keys: {sorted(entry)})')
    x = torch.as_tensor(entry['data'], dtype=torch.uint8)
    y = torch.as_tensor(list(entry['labels']), dtype=torch.long)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise ValueError(f'{path} is not a CIFAR-10 batch: data has shape {tuple(x.shape)} (expected (N, 3072)) '
                         f'and there are {len(y)} labels')
    return x.reshape(-1, 3, 32, 32), y


def cifar10_tensors(root, download=False):
    """CIFAR-10 as uint8 image tensors (N, 3, 32, 32) and int64 labels:
    ``(x_train, y_train, x_test, y_test)``, from ``root/cifar-10-batches-py`` (torchvision's layout).

    With ``download=True`` and files missing, torchvision downloads the archive (about 170 MB),
    checks its checksum and unpacks it under `root` first.
    """
    root = _check_root(root)
    folder = root / CIFAR10_FOLDER
    missing = [n for n in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES if not (folder / n).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR10
        CIFAR10(str(root), train=True, download=True)
        missing = [n for n in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f'CIFAR-10 not found: {folder} lacks {", ".join(missing)}. Pass download=True to '
                                'download it (about 170 MB) through torchvision, or point root at the folder '
                                f'that holds {CIFAR10_FOLDER}/.')
    read = lambda names: [torch.cat(t) for t in zip(*(_read_cifar_batch(folder / n) for n in names))]
    return (*read(CIFAR10_TRAIN_FILES), *read(CIFAR10_TEST_FILES))


def _mnist_present(root: Path) -> list[str]:
    "The raw MNIST files missing under root/MNIST/raw (none if torchvision's old processed files exist)."
    processed = root / 'MNIST' / 'processed'
    if (processed / 'training.pt').is_file() and (processed / 'test.pt').is_file(): return []
    return [n for n in MNIST_RAW_FILES if not (root / 'MNIST' / 'raw' / n).is_file()]


def mnist_tensors(root, download=False):
    """MNIST as uint8 image tensors (N, 1, 28, 28) and int64 labels: ``(x_train, y_train, x_test, y_test)``,
    read by ``torchvision.datasets.MNIST`` from ``root/MNIST/raw`` (the unpacked idx files)."""
    root = _check_root(root)
    missing = _mnist_present(root)
    if missing and not download:
        raise FileNotFoundError(f'MNIST not found: {root / "MNIST" / "raw"} lacks {", ".join(missing)}. Pass '
                                'download=True to download it (about 12 MB) through torchvision, or point root at '
                                'the folder that holds MNIST/raw/.')
    from torchvision.datasets import MNIST
    out = []
    for train in (True, False):
        ds = MNIST(str(root), train=train, download=download)
        out += [ds.data.to(torch.uint8).unsqueeze(1), ds.targets.to(torch.long)]
    return tuple(out)


# --- datasets and loaders ----------------------------------------------------------------------------
class ImageTensorDataset(Dataset):
    """Images kept as one uint8 tensor (N, C, H, W) with their labels; `transform` (if any) maps each
    uint8 image to the tensor the model sees. A quarter of the memory of float images, and the
    conversion happens in the loader's workers."""
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            got = getattr(images, 'shape', type(images).__name__)
            raise ValueError(f'images must be a 4-d tensor (N, C, H, W), got {got}')
        if len(images) != len(labels):
            raise ValueError(f'images and labels differ in length ({len(images)} and {len(labels)})')
        self.images, self.labels, self.transform = images, torch.as_tensor(labels), transform

    def __len__(self): return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), self.labels[i]


def image_transforms(stats, train=True, augment=True, size=32, padding=4, flip=True):
    """torchvision v2 transforms from a uint8 image tensor to a normalized float32 one.

    For training with `augment`: a random `size` crop of the image zero-padded by `padding` pixels,
    and (with `flip`) a horizontal flip half of the time, the standard CIFAR augmentation. Then
    pixels are scaled to [0, 1] and normalized by ``stats = (means, stds)``.
    """
    from torchvision.transforms import v2
    tfms = []
    if train and augment:
        if padding: tfms.append(v2.RandomCrop(size, padding=padding))
        if flip: tfms.append(v2.RandomHorizontalFlip())
    tfms += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(stats[0]), list(stats[1]))]
    return v2.Compose(tfms)


def _loaders(tensors, stats, bs, valid_bs, augment, padding, flip, num_workers, pin_memory, seed, drop_last):
    check_int('bs', bs, min_value=1); check_int('valid_bs', valid_bs, min_value=1, allow_none=True)
    check_int('num_workers', num_workers, min_value=0, allow_none=True)
    check_int('padding', padding, min_value=0)
    x_train, y_train, x_test, y_test = tensors
    cuda = torch.cuda.is_available()
    if pin_memory is None: pin_memory = cuda   # page-locked batches copy to the GPU asynchronously
    if num_workers is None: num_workers = min(8, os.cpu_count() or 1) if cuda else 0
    size = x_train.shape[-1]
    train_ds = ImageTensorDataset(x_train, y_train, image_transforms(stats, True, augment, size, padding, flip))
    valid_ds = ImageTensorDataset(x_test, y_test, image_transforms(stats, False))
    kw = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    train = DataLoader(train_ds, batch_size=bs, shuffle=True, generator=g, drop_last=drop_last, **kw)
    valid = DataLoader(valid_ds, batch_size=valid_bs or 2 * bs, **kw)
    return DataLoaders(train, valid)


def cifar10_dls(root, bs=512, valid_bs=None, augment=True, download=False, num_workers=None, pin_memory=None,
                seed=None, drop_last=False) -> DataLoaders:
    """CIFAR-10 training and test DataLoaders, normalized by the training set's statistics.

    Args:
        root: the folder that holds (or will hold) ``cifar-10-batches-py``.
        bs, valid_bs: batch sizes (validation: twice `bs` by default).
        augment: random crops with 4 pixels of padding and horizontal flips for training.
        download: download through torchvision when the files are missing.
        num_workers: loader processes; by default 0 on CPU and up to 8 with CUDA.
        pin_memory: page-locked batches for asynchronous copies; on by default when CUDA is present.
        seed: fixes the shuffling order.
        drop_last: drop the last incomplete training batch.
    """
    return _loaders(cifar10_tensors(root, download), CIFAR10_STATS, bs, valid_bs, augment, 4, True,
                    num_workers, pin_memory, seed, drop_last)


def mnist_dls(root, bs=256, valid_bs=None, augment=False, download=False, num_workers=None, pin_memory=None,
              seed=None, drop_last=False) -> DataLoaders:
    """MNIST training and test DataLoaders of (1, 28, 28) normalized images; the arguments are those of
    :func:`cifar10_dls`. `augment` (off by default) shifts digits by random crops with 2 pixels of
    padding; digits are never flipped."""
    return _loaders(mnist_tensors(root, download), MNIST_STATS, bs, valid_bs, augment, 2, False,
                    num_workers, pin_memory, seed, drop_last)


# --- models ------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    "Two 3x3 conv-BN layers with a skip connection (a 1x1 conv-BN projection when the shape changes)."
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = self.bn1(self.conv1(x)).relu()
        return (self.bn2(self.conv2(h)) + self.shortcut(x)).relu()


class CifarResNet(nn.Module):
    """A ResNet for small images: a 3x3 stem and no max-pool, so a 32x32 input keeps its resolution
    in the first stage (the ImageNet stem would shrink it to 8x8 at once); then stages of
    BasicBlocks, each after the first halving the resolution, global average pooling and a linear
    classifier.

    Args:
        blocks: BasicBlocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (9, 9, 9) for ResNet-56.
        widths: channels per stage, one per entry of `blocks`.
        n_classes, in_channels: outputs and input channels (3 for CIFAR, 1 for MNIST).
        zero_init_residual: start each block's last BN at zero, so every block begins as the identity.
    """
    def __init__(self, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), n_classes=10, in_channels=3,
                 zero_init_residual=False):
        super().__init__()
        blocks, widths = tuple(blocks), tuple(widths)
        if not blocks or len(blocks) != len(widths):
            raise ValueError(f'blocks and widths must be non-empty and of the same length, got {blocks} and {widths}')
        for b in blocks: check_int('blocks', b, min_value=1)
        for w in widths: check_int('widths', w, min_value=1)
        check_int('n_classes', n_classes, min_value=1); check_int('in_channels', in_channels, min_value=1)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        layers, c_in = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(c_in, w, stride=2 if i > 0 and j == 0 else 1))
                c_in = w
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock): nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


def cifar_resnet18(n_classes=10, in_channels=3, width=64, zero_init_residual=False) -> CifarResNet:
    "ResNet-18 for 32x32 images: four stages of two BasicBlocks, `width` to 8x`width` channels (11M parameters at 64)."
    check_int('width', width, min_value=1)
    widths = (width, 2 * width, 4 * width, 8 * width)
    return CifarResNet((2, 2, 2, 2), widths, n_classes, in_channels, zero_init_residual)


def cifar_resnet(depth=56, n_classes=10, in_channels=3, width=16, zero_init_residual=False) -> CifarResNet:
    """He et al.'s CIFAR ResNets (ResNet-20, -32, -44, -56, -110): depth = 6n + 2, three stages of n
    BasicBlocks with `width`, 2x and 4x channels (16, 32, 64). ResNet-56 is the network of Smith and
    Topin's super-convergence results. Shortcuts that change shape use 1x1 projections."""
    check_int('depth', depth, min_value=8)
    if (depth - 2) % 6: raise ValueError(f'depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}')
    check_int('width', width, min_value=1)
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), (width, 2 * width, 4 * width), n_classes, in_channels, zero_init_residual)


# --- test-time augmentation ----------------------------------------------------------------------------
def _flip_images(o):
    "Image tensors (N, C, H, W) mirrored left to right, in (nested) tuples, lists and dicts; the rest unchanged."
    if isinstance(o, torch.Tensor): return o.flip(-1) if o.ndim == 4 and o.is_floating_point() else o
    if isinstance(o, (list, tuple)): return type(o)(_flip_images(v) for v in o)
    if isinstance(o, dict): return {k: _flip_images(v) for k, v in o.items()}
    return o


class HorizontalFlip(Callback):
    "Mirrors the image inputs of every batch left to right (float 4-d tensors (N, C, H, W)); targets unchanged."
    order = -50

    def before_batch(self):
        learn, b, n = self.learn, self.learn.batch, self.learn.n_inp
        if isinstance(b, (list, tuple)): learn.batch = type(b)([*_flip_images(tuple(b[:n])), *b[n:]])
        else: learn.batch = _flip_images(b)


def tta(learn, dl=None, act=None, with_input=False, tta=True):
    """Test-time augmentation: ``get_preds`` with the predictions averaged over each image and its mirror
    image (left to right), ``(preds, targets)`` or ``(inputs, preds, targets)``. `act` (e.g.
    ``lambda p: p.softmax(-1)``) is applied to each pass before the mean, so probabilities are averaged.
    ``tta=False`` gives the plain predictions, for comparison."""
    check_bool('with_input', with_input); check_bool('tta', tta)
    check_callable('act', act, allow_none=True)
    first = get_preds(learn, dl, with_input=with_input, act=act)
    if not tta: return first
    flipped = get_preds(learn, dl, act=act, cbs=[HorizontalFlip()])
    preds = (first[-2] + flipped[-2]) / 2
    return (*first[:-2], preds, first[-1])
