"""The vision recipe on tiny CIFAR-10 and MNIST files written here in torchvision's on-disk formats."""
import pickle
import struct

import numpy as np
import pytest
import torch
from torch import nn

from onecycle import Learner, accuracy, fit_one_cycle
from onecycle.vision import (CIFAR10_STATS, MNIST_STATS, CifarResNet, ImageTensorDataset, cifar10_dls,
                             cifar10_tensors, cifar_resnet, cifar_resnet18, image_transforms, mnist_dls,
                             mnist_tensors)

N_PER_BATCH, N_TEST = 4, 6   # 20 training images, 6 test images


def write_cifar10(root, seed=0):
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts with data (N, 3072)
    uint8 (R plane, G plane, B plane, rows in order) and labels. The training batches use bytes keys, as
    the original files read with encoding='bytes'; the test batch str keys, as with encoding='latin1'."""
    rng = np.random.default_rng(seed)
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    out = {}
    for name, n in [(f'data_batch_{i}', N_PER_BATCH) for i in range(1, 6)] + [('test_batch', N_TEST)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        d = {b'data': data, b'labels': labels, b'batch_label': name.encode()} if name != 'test_batch' else \
            {'data': data, 'labels': labels, 'batch_label': name}
        with open(folder / name, 'wb') as f: pickle.dump(d, f)
        out[name] = (data, labels)
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({b'label_names': [f'class{i}'.encode() for i in range(10)], b'num_cases_per_batch': N_PER_BATCH}, f)
    return out


def _idx(path, arr):
    "An idx file (big-endian): magic 0x08 (ubyte) and the number of dims, the dims, then the bytes."
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    with open(path, 'wb') as f:
        f.write(struct.pack('>I', 0x0800 + arr.ndim))
        f.write(struct.pack(f'>{arr.ndim}I', *arr.shape))
        f.write(arr.tobytes())


def write_mnist(root, n_train=12, n_test=5, seed=0):
    "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, unpacked, as torchvision keeps them."
    rng = np.random.default_rng(seed)
    raw = root / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    out = {}
    for split, n in (('train', n_train), ('t10k', n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        _idx(raw / f'{split}-images-idx3-ubyte', x); _idx(raw / f'{split}-labels-idx1-ubyte', y)
        out[split] = (x, y)
    return out


@pytest.fixture
def cifar_root(tmp_path):
    return tmp_path, write_cifar10(tmp_path)


@pytest.fixture
def mnist_root(tmp_path):
    return tmp_path, write_mnist(tmp_path)


def _normalize(x_uint8, stats):
    mean, std = (torch.tensor(s).view(-1, 1, 1) for s in stats)
    return (x_uint8.float() / 255 - mean) / std


# --- reading ------------------------------------------------------------------------------------------
def test_cifar10_tensors_read_torchvision_layout(cifar_root):
    root, raw = cifar_root
    x, y, xt, yt = cifar10_tensors(root)
    assert x.shape == (5 * N_PER_BATCH, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.long
    assert xt.shape == (N_TEST, 3, 32, 32)
    data, labels = raw['data_batch_2']
    img = x[N_PER_BATCH + 1]                          # second image of the second batch
    assert torch.equal(img[0].flatten(), torch.from_numpy(data[1, :1024]))      # red plane first
    assert torch.equal(img[2, 31], torch.from_numpy(data[1, 3072 - 32:]))       # last row of blue last
    assert y[N_PER_BATCH:2 * N_PER_BATCH].tolist() == labels
    assert yt.tolist() == raw['test_batch'][1]


def test_cifar10_missing_files_say_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match='download=True') as e: cifar10_tensors(tmp_path)
    assert 'data_batch_1' in str(e.value)
    write_cifar10(tmp_path)
    (tmp_path / 'cifar-10-batches-py' / 'test_batch').unlink()
    with pytest.raises(FileNotFoundError, match='test_batch'): cifar10_dls(tmp_path)


def test_cifar10_bad_root_and_corrupt_batch(cifar_root):
    root, _ = cifar_root
    with pytest.raises(TypeError, match='root'): cifar10_tensors(42)
    with open(root / 'cifar-10-batches-py' / 'data_batch_3', 'wb') as f:
        pickle.dump({b'data': np.zeros((2, 100), np.uint8), b'labels': [0, 1]}, f)
    with pytest.raises(ValueError, match='data_batch_3.*3072'): cifar10_tensors(root)


def test_mnist_tensors_read_raw_idx_files(mnist_root):
    root, raw = mnist_root
    x, y, xt, yt = mnist_tensors(root)
    assert x.shape == (12, 1, 28, 28) and xt.shape == (5, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], torch.from_numpy(raw['train'][0]))
    assert torch.equal(xt[:, 0], torch.from_numpy(raw['t10k'][0]))
    assert y.tolist() == raw['train'][1].tolist() and yt.dtype == torch.long


def test_mnist_missing_files_say_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match='download=True') as e: mnist_dls(tmp_path)
    assert 'train-images-idx3-ubyte' in str(e.value)


# --- transforms and loaders -----------------------------------------------------------------------------
def test_validation_batches_are_normalized_exactly(cifar_root):
    root, _ = cifar_root
    dls = cifar10_dls(root, bs=8, seed=0)
    _, _, xt, yt = cifar10_tensors(root)
    xb, yb = next(iter(dls.valid))
    assert xb.shape == (N_TEST, 3, 32, 32) and xb.dtype == torch.float32 and torch.equal(yb, yt)
    torch.testing.assert_close(xb, _normalize(xt, CIFAR10_STATS))
    assert dls.train.batch_size == 8 and dls.valid.batch_size == 16
    assert dls.train.pin_memory == torch.cuda.is_available()   # pinned exactly when there is a GPU to copy to


def _shifts_and_flips(img, pad):
    "Every crop of the zero-padded image at the original size, and their mirror images."
    c, h, w = img.shape
    p = torch.zeros(c, h + 2 * pad, w + 2 * pad)
    p[:, pad:pad + h, pad:pad + w] = img
    crops = [p[:, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [cr.flip(-1) for cr in crops]


def test_training_augmentation_is_a_padded_crop_and_flip(cifar_root):
    root, _ = cifar_root
    x, _, _, _ = cifar10_tensors(root)
    tfm = image_transforms(CIFAR10_STATS, train=True)
    torch.manual_seed(0)
    img = x[0]
    outs = [tfm(img) for _ in range(12)]
    mean, std = (torch.tensor(s).view(-1, 1, 1) for s in CIFAR10_STATS)
    # crop/flip happen on the uint8 image (zero padding), then normalization: undo the latter to compare
    candidates = _shifts_and_flips(img.float() / 255, 4)
    for o in outs:
        assert o.shape == (3, 32, 32) and o.dtype == torch.float32
        pixels = o * std + mean
        assert any(torch.allclose(pixels, cand, atol=1e-5) for cand in candidates)
    assert len({o.sum().item() for o in outs}) > 1   # random: not the same crop every time
    # without augmentation the training transform is the validation transform
    torch.testing.assert_close(image_transforms(CIFAR10_STATS, train=True, augment=False)(img),
                               _normalize(img[None], CIFAR10_STATS)[0])


def test_training_loader_shuffles_with_seed_and_augments(cifar_root):
    root, _ = cifar_root
    a = [yb.tolist() for _, yb in cifar10_dls(root, bs=8, seed=3).train]
    b = [yb.tolist() for _, yb in cifar10_dls(root, bs=8, seed=3).train]
    assert a == b and [len(v) for v in a] == [8, 8, 4]
    plain = cifar10_dls(root, bs=20, augment=False, seed=3)
    xb, _ = next(iter(plain.train))
    assert xb.shape == (20, 3, 32, 32)
    assert cifar10_dls(root, bs=8, drop_last=True).train.drop_last


def test_mnist_dls_normalized_no_flip(mnist_root):
    root, raw = mnist_root
    dls = mnist_dls(root, bs=4, augment=False)
    xb, yb = next(iter(dls.valid))
    torch.testing.assert_close(xb, _normalize(torch.from_numpy(raw['t10k'][0][:, None]), MNIST_STATS))
    assert yb.tolist() == raw['t10k'][1].tolist()
    tfm = image_transforms(MNIST_STATS, train=True, padding=2, flip=False, size=28)
    names = [type(t).__name__ for t in tfm.transforms]
    assert names == ['RandomCrop', 'ToDtype', 'Normalize']


def test_loader_arguments_checked(cifar_root):
    root, _ = cifar_root
    with pytest.raises(ValueError, match='bs'): cifar10_dls(root, bs=0)
    with pytest.raises(TypeError, match='num_workers'): cifar10_dls(root, num_workers=1.5)
    with pytest.raises(ValueError, match='4-d'): ImageTensorDataset(torch.zeros(3, 32, 32), torch.zeros(3))
    with pytest.raises(ValueError, match='length'): ImageTensorDataset(torch.zeros(3, 1, 2, 2), torch.zeros(2))


# --- models ----------------------------------------------------------------------------------------------
def test_resnet18_shapes_and_size():
    m = cifar_resnet18(width=8).eval()
    sizes = []
    m.layers[0].register_forward_hook(lambda mod, i, o: sizes.append(o.shape[-1]))
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sizes == [32]                          # 3x3 stem, no max-pool: full resolution in stage 1
    assert sum(p.numel() for p in cifar_resnet18().parameters()) == 11_173_962
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in m.modules())


def test_cifar_resnet_depths():
    m = cifar_resnet(20)
    assert sum(isinstance(b, nn.Module) and type(b).__name__ == 'BasicBlock' for b in m.modules()) == 9
    assert cifar_resnet(8, n_classes=3, in_channels=1, width=4)(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(ValueError, match='6n \\+ 2'): cifar_resnet(21)
    with pytest.raises(ValueError, match='same length'): CifarResNet((2, 2), (16,))
    z = cifar_resnet(8, width=4, zero_init_residual=True)
    assert all(not b.bn2.weight.detach().any() for b in z.layers)


# --- the recipe end to end -----------------------------------------------------------------------------
def test_cifar10_one_cycle_step_trains(cifar_root):
    root, _ = cifar_root
    torch.manual_seed(0)
    dls = cifar10_dls(root, bs=10, seed=0)
    learn = Learner(cifar_resnet18(width=4), dls, nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, metrics=accuracy,
                    device='cpu', progress=False)
    before = [p.detach().clone() for p in learn.model.parameters()]
    fit_one_cycle(learn, 1, max_lr=0.1, wd=5e-4)
    assert len(learn.recorder.losses) == 2 and all(np.isfinite(learn.recorder.losses))
    assert all(not torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    row = learn.recorder.epochs[-1]
    assert 0 <= row['accuracy'] <= 1 and np.isfinite(row['valid_loss'])


def test_mnist_fit_one_step(mnist_root):
    root, _ = mnist_root
    torch.manual_seed(0)
    learn = Learner(cifar_resnet(8, in_channels=1, width=4), mnist_dls(root, bs=12), nn.CrossEntropyLoss(),
                    device='cpu', progress=False)
    w = learn.model.head[-1].weight.detach().clone()
    learn.fit(1, lr=1e-2)
    assert len(learn.recorder.losses) == 1 and not torch.equal(w, learn.model.head[-1].weight)


def test_cifar10_step_with_channels_last_and_compile(cifar_root):
    from onecycle import ChannelsLast, Compile
    root, _ = cifar_root
    torch.manual_seed(0)
    # width 8: at width 4 the first downsampling shortcut (a 1x1 stride-2 conv, 4 -> 8 channels, batch 20 at 32x32) in
    # channels_last hangs in its backward on some CPUs with torch 2.13 (an AMD EPYC here; other shapes run)
    learn = Learner(cifar_resnet(8, width=8), cifar10_dls(root, bs=20, seed=0), nn.CrossEntropyLoss(), device='cpu',
                    progress=False)
    names = list(learn.model.state_dict())
    learn.fit(1, lr=1e-2, cbs=[ChannelsLast(), Compile(backend='eager')])
    w = learn.model.stem[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    assert list(learn.model.state_dict()) == names and np.isfinite(learn.recorder.losses[0])


def test_tta_averages_each_image_and_its_mirror(cifar_root):
    dls = cifar10_dls(cifar_root[0], bs=4, num_workers=0)
    learn = Learner(cifar_resnet(8, width=4), dls, nn.CrossEntropyLoss(), device='cpu', progress=False)
    learn.model.train()
    x = torch.cat([xb for xb, _ in dls.valid])
    y = torch.cat([yb for _, yb in dls.valid])
    learn.model.eval()
    with torch.no_grad():
        plain, mirrored = learn.model(x).softmax(-1), learn.model(x.flip(-1)).softmax(-1)
    learn.model.train()
    inputs, preds, targs = learn.tta(act=lambda p: p.softmax(-1), with_input=True)
    assert learn.model.training and torch.equal(inputs, x) and torch.equal(targs, y)
    torch.testing.assert_close(preds, (plain + mirrored) / 2)
    assert not torch.allclose(preds, plain, atol=1e-4)   # the mirror counted
    torch.testing.assert_close(learn.tta(act=lambda p: p.softmax(-1), tta=False)[0], plain)
    with pytest.raises(TypeError, match='tta'): learn.tta(tta='yes')
