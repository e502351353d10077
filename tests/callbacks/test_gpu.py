"""GPU throughput features: channels_last, torch.compile, host-sync checks, fp16 skipped steps.

What can run on a CPU runs everywhere; the tests that need CUDA say so and are skipped without it.
"""
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onecycle import Callback, Learner, accuracy, fit_one_cycle
from onecycle.callbacks.gpu import ChannelsLast, Compile, SyncCheck, to_channels_last
from onecycle.callbacks.training import GradientClipping, MixedPrecision

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
CL = torch.channels_last


def conv_net(seed=0, n_out=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_out))


def image_dls(n=32, bs=8, size=8, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)
    return (DataLoader(TensorDataset(x[:n - 8], y[:n - 8]), batch_size=bs, **kw),
            DataLoader(TensorDataset(x[n - 8:], y[n - 8:]), batch_size=bs, **kw))


def image_learner(model=None, dls=None, **kw):
    kw.setdefault('device', 'cpu'); kw.setdefault('progress', False)
    kw.setdefault('opt_func', partial(torch.optim.SGD, momentum=0.9))
    return Learner(model or conv_net(), dls or image_dls(), nn.CrossEntropyLoss(), **kw)


class InputProbe(Callback):
    "Records the memory format of the model input and the targets of every batch."
    order = 100
    def __init__(self): self.seen = []
    def after_pred(self):
        x, y = self.learn.xb[0], self.learn.yb[0]
        self.seen.append((x.is_contiguous(memory_format=CL), x.is_contiguous(), y.dtype, y.ndim))


# --- channels_last -------------------------------------------------------------------------------
def test_to_channels_last_converts_only_4d_tensors():
    x, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3)
    out = to_channels_last({'img': x, 'rest': [v, 'text', (x,)]})
    assert out['img'].is_contiguous(memory_format=CL) and not out['img'].is_contiguous()
    assert out['rest'][0] is v and out['rest'][1] == 'text' and isinstance(out['rest'][2], tuple)
    assert out['rest'][2][0].is_contiguous(memory_format=CL) and torch.equal(out['img'], x)


def test_channels_last_converts_weights_state_and_inputs_not_targets():
    learn = image_learner()
    learn.fit(1, lr=0.05)   # momentum buffers exist now, in the default layout
    assert not learn.model[0].weight.is_contiguous(memory_format=CL)
    params = list(learn.model.parameters())
    probe = InputProbe()
    learn.fit(1, lr=0.05, cbs=[ChannelsLast(), probe])
    assert list(learn.model.parameters()) == params and learn.opt.param_groups[0]['params'] == params
    for conv in (learn.model[0], learn.model[3]):
        assert conv.weight.is_contiguous(memory_format=CL) and not conv.weight.is_contiguous()
        assert learn.opt.state[conv.weight]['momentum_buffer'].is_contiguous(memory_format=CL)
    assert probe.seen and all(cl and not plain for cl, plain, _, _ in probe.seen)   # training and validation
    assert all(dt == torch.long and nd == 1 for _, _, dt, nd in probe.seen)


def test_channels_last_trains_the_same_model():
    a, b = image_learner(), image_learner()
    fit_one_cycle(a, 2, max_lr=0.05)
    fit_one_cycle(b, 2, max_lr=0.05, callbacks=[ChannelsLast()])
    assert list(a.model.state_dict()) == list(b.model.state_dict())
    for (k, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(torch.tensor(a.recorder.losses), torch.tensor(b.recorder.losses), rtol=1e-4, atol=1e-5)


# --- torch.compile -------------------------------------------------------------------------------
def counting_backend(graphs):
    "A torch.compile backend that records every graph it is given and runs it as traced."
    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    return backend


def test_compile_runs_the_forward_through_dynamo_and_keeps_names():
    import torch._dynamo
    torch._dynamo.reset()
    graphs = []
    learn = image_learner(model=conv_net(n_out=5))
    names = list(learn.model.state_dict())
    ref = image_learner(model=conv_net(n_out=5))
    backend = counting_backend(graphs)
    learn.fit(1, lr=0.05, cbs=[Compile(backend=backend)])
    ref.fit(1, lr=0.05)
    assert graphs, 'the backend was never called: nothing was compiled'
    n_graphs = len(graphs)
    assert list(learn.model.state_dict()) == names and 'forward' not in vars(learn.model)
    for pa, pb in zip(learn.model.parameters(), ref.model.parameters()):   # the same training as eager
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    # a checkpoint of the compiled model loads into a plain one and back
    plain = conv_net(seed=1, n_out=5)
    plain.load_state_dict(learn.model.state_dict())
    learn.model.load_state_dict(plain.state_dict())
    # a second fit reuses what was compiled
    learn.fit(1, lr=0.05, cbs=[Compile(backend=backend)])
    assert len(graphs) == n_graphs


def test_compile_puts_back_a_forward_the_model_had_and_cleans_up_on_error():
    learn = image_learner()
    calls = []
    own = learn.model.forward
    def my_forward(x):
        calls.append(1); return own(x)
    learn.model.forward = my_forward

    class Boom(Callback):
        def after_batch(self): raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'):
        learn.fit(1, lr=0.01, cbs=[Compile(backend='eager'), Boom()])
    assert learn.model.forward is my_forward and calls   # the user's forward ran (compiled) and is back
    del learn.model.forward
    learn.fit(1, lr=0.01, cbs=[Compile(backend='eager')])
    assert 'forward' not in vars(learn.model)


def test_compile_arguments_checked_before_any_work():
    with pytest.raises(ValueError, match='mode'): Compile(mode='fastest')
    with pytest.raises(ValueError, match='backend'): Compile(backend='no-such-backend')
    with pytest.raises(TypeError, match='backend'): Compile(backend=3)
    with pytest.raises(ValueError, match='mode or options'): Compile(mode='max-autotune', options={'a': 1})
    with pytest.raises(TypeError, match='options'): Compile(options=['a'])


# --- host synchronisation -----------------------------------------------------------------------
def test_sync_check_does_nothing_off_cuda():
    learn = image_learner()
    learn.fit(1, lr=0.01, cbs=[SyncCheck()])   # no CUDA call is made on a CPU learner
    with pytest.raises(ValueError, match='mode'): SyncCheck('loud')


def test_sync_check_covers_the_batches_and_not_the_pass_ends(monkeypatch):
    mode = {'now': 0}
    monkeypatch.setattr(torch.cuda, 'get_sync_debug_mode', lambda: mode['now'])
    monkeypatch.setattr(torch.cuda, 'set_sync_debug_mode', lambda m: mode.update(now=m))
    monkeypatch.setattr(SyncCheck, '_enabled', lambda self: True)
    seen, starts, ends = [], [], []

    class Probe(Callback):
        order = 200   # after everybody, Recorder included
        def before_train(self): starts.append(mode['now'])   # where the Recorder moves the last pass's losses
        def before_validate(self): starts.append(mode['now'])
        def before_batch(self): seen.append(mode['now'])
        def after_batch(self): seen.append(mode['now'])
        def after_train(self): ends.append(mode['now'])      # where the Recorder reads the epoch's loss
        def after_validate(self): ends.append(mode['now'])
    learn = image_learner(metrics=accuracy)
    learn.fit(2, lr=0.01, cbs=[SyncCheck('error'), Probe()])
    assert len(seen) == 2 * 2 * (3 + 1) and all(m == 'error' for m in seen)
    assert starts == ends == [0, 0, 0, 0] and mode['now'] == 0

    class Boom(Callback):
        def after_batch(self): raise RuntimeError('boom')
    with pytest.raises(RuntimeError): learn.fit(1, lr=0.01, cbs=[SyncCheck('warn'), Boom()])
    assert mode['now'] == 0   # restored even when the fit fails


# --- fp16: a skipped step must change nothing ----------------------------------------------------------
class InfGrads(Callback):
    "Makes every gradient infinite, as a float16 overflow would."
    order = -15   # before MixedPrecision unscales
    def after_backward(self):
        for p in self.learn.model.parameters():
            if p.grad is not None: p.grad.fill_(float('inf'))


@pytest.mark.parametrize('fused', [False, True])
def test_fp16_overflowed_step_leaves_weights_alone_even_with_weight_decay(fused):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    dl = DataLoader(TensorDataset(torch.randn(8, 6), torch.randint(0, 3, (8,))), batch_size=8)
    learn = Learner(model, (dl, None), nn.CrossEntropyLoss(), opt_func=partial(torch.optim.AdamW, fused=fused),
                    device='cpu', progress=False, wd=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    learn.fit(1, lr=0.1, cbs=[MixedPrecision(torch.float16), InfGrads()])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    learn.fit(1, lr=0.1, cbs=[MixedPrecision(torch.float16)])   # a finite step does move them
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --- on a GPU ---------------------------------------------------------------------------------------
def _cuda_learner(opt_func, n=256, bs=32, **kw):
    torch.manual_seed(0)
    from onecycle.vision import cifar_resnet18
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    dl = lambda a, b, shuffle: DataLoader(TensorDataset(a, b), batch_size=bs, shuffle=shuffle, pin_memory=True,
                                          generator=torch.Generator().manual_seed(0) if shuffle else None)
    learn = Learner(cifar_resnet18(width=16), (dl(x, y, True), dl(x[:64], y[:64], False)), nn.CrossEntropyLoss(),
                    opt_func=opt_func, metrics=accuracy, device='cuda', **kw)
    # The default DivergenceGuard reads one flag per optimizer step on purpose (it must stop a NaN
    # before the step applies it; see onecycle/divergence.py): everything else must not sync.
    learn.remove_cb(learn.divergence_guard)
    return learn


@needs_cuda
def test_fit_adds_no_host_sync_per_batch_bf16():
    learn = _cuda_learner(partial(torch.optim.SGD, momentum=0.9), progress=True)
    cbs = [MixedPrecision(torch.bfloat16), ChannelsLast(), GradientClipping(1.0)]
    fit_one_cycle(learn, 1, max_lr=0.1, callbacks=cbs)   # warm-up: cuDNN/cuBLAS initialisation may sync
    fit_one_cycle(learn, 2, max_lr=0.1, wd=1e-4, callbacks=cbs + [SyncCheck('error')])
    assert len(learn.recorder.losses) == 2 * 8 and len(learn.recorder.epochs) == 2
    assert torch.cuda.get_sync_debug_mode() == 0


@needs_cuda
def test_fit_adds_no_host_sync_per_batch_fp16_fused_adamw():
    # torch's GradScaler reads found_inf on the host unless the optimizer skips steps itself (fused)
    learn = _cuda_learner(partial(torch.optim.AdamW, fused=True), progress=False)
    fit_one_cycle(learn, 1, max_lr=1e-3, callbacks=[MixedPrecision(torch.float16)])
    fit_one_cycle(learn, 1, max_lr=1e-3, wd=1e-2, callbacks=[MixedPrecision(torch.float16), SyncCheck('error')])
    assert all(torch.isfinite(torch.tensor(learn.recorder.losses)))


@needs_cuda
def test_compiled_channels_last_bf16_on_gpu_trains_like_eager():
    a, b = (_cuda_learner(partial(torch.optim.SGD, momentum=0.9), progress=False) for _ in range(2))
    fit_one_cycle(a, 1, max_lr=0.05, callbacks=[MixedPrecision()])
    fit_one_cycle(b, 1, max_lr=0.05, callbacks=[MixedPrecision(), ChannelsLast(), Compile()])
    la, lb = torch.tensor(a.recorder.losses), torch.tensor(b.recorder.losses)
    # same weights, same first batch: the same loss up to bf16 rounding; later steps drift apart slowly
    assert torch.isfinite(lb).all() and abs(la[0] - lb[0]) < 0.02 and abs(la.mean() - lb.mean()) < 0.15
    assert list(a.model.state_dict()) == list(b.model.state_dict())


@needs_cuda
def test_vision_loaders_pin_memory_with_cuda(tmp_path):
    from onecycle.vision import cifar10_dls
    from test_vision import write_cifar10
    write_cifar10(tmp_path)
    dls = cifar10_dls(tmp_path, bs=8, num_workers=0)
    xb, yb = next(iter(dls.train))
    assert dls.train.pin_memory and xb.is_pinned() and yb.is_pinned()
