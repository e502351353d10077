"""GPU throughput: channels_last memory, an opt-in ``torch.compile``, and a check for host syncs.

Mixed precision lives in ``training.MixedPrecision``. The loop itself moves batches with
non-blocking copies (``to_device``) and reads no value back per batch, so a GPU never waits for
Python; ``SyncCheck`` proves it for any set of callbacks.
"""
from __future__ import annotations

import torch

from ..core.callback import Callback
from ..core.checks import check_choice

__all__ = ['ChannelsLast', 'Compile', 'SyncCheck', 'to_channels_last']


def to_channels_last(o):
    "4-d tensors in (nested) tuples, lists and dicts to ``torch.channels_last``; anything else unchanged."
    if isinstance(o, torch.Tensor): return o.contiguous(memory_format=torch.channels_last) if o.ndim == 4 else o
    if isinstance(o, (list, tuple)): return type(o)(to_channels_last(v) for v in o)
    if isinstance(o, dict): return {k: to_channels_last(v) for k, v in o.items()}
    return o


class ChannelsLast(Callback):
    """Keeps the model's 4-d weights and the 4-d image inputs in ``torch.channels_last`` (NHWC) layout.

    Tensor-core convolutions under mixed precision work in NHWC; with NCHW tensors cuDNN adds a
    transpose around every convolution. Weights and optimizer state are converted in place at the
    start of a fit (the parameters stay the same objects, so the optimizer keeps them; state_dict
    names and values do not change); inputs are converted every batch, targets are left alone.
    The model stays channels_last after the fit, which is harmless for inference and saving.
    """
    order = -40

    def before_fit(self):
        learn = self.learn
        learn.model.to(memory_format=torch.channels_last)
        # Optimizer state made before the conversion (momentum buffers, Adam moments) follows its
        # parameter, so that foreach/fused kernels see matching layouts.
        for p, st in learn.opt.state.items():
            if p.ndim != 4: continue
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape:
                    st[k] = v.contiguous(memory_format=torch.channels_last)

    def before_batch(self):
        learn = self.learn
        b = learn.batch
        if isinstance(b, (list, tuple)):   # inputs only; a dict batch is all inputs
            learn.batch = type(b)([*to_channels_last(tuple(b[:learn.n_inp])), *b[learn.n_inp:]])
        else:
            learn.batch = to_channels_last(b)


_NO_FORWARD = object()


class Compile(Callback):
    """Runs the model's forward through ``torch.compile`` during every fit it takes part in (opt-in).

    The compiled function is installed as the model's own ``forward`` at the start of the fit and
    removed at the end (errors included), so ``learn.model`` stays the same module: its
    ``state_dict`` keys carry no ``_orig_mod.`` prefix, checkpoints load into compiled and plain
    models alike, and a DistributedDataParallel wrapper (made later in ``before_fit``) wraps the
    compiled module. Dynamo keeps what it compiled, so later fits of the same model do not compile
    again; the first training and validation batches of the first fit pay the compilation time.
    (``nn.Module.compile`` is not used: in torch 2.13 it silently compiles nothing for modules whose
    forward is torch's own, such as ``nn.Sequential``, pytorch/pytorch#150915.)

    Args:
        backend: the ``torch.compile`` backend (``'inductor'``; ``'eager'`` or ``'aot_eager'`` to
            check that a model traces, without generating code), or a backend callable.
        mode: ``None``, ``'default'``, ``'reduce-overhead'`` (CUDA graphs), ``'max-autotune'`` or
            ``'max-autotune-no-cudagraphs'``.
        fullgraph: fail instead of splitting the graph where Dynamo cannot trace.
        dynamic: ``torch.compile``'s ``dynamic`` (None lets it decide when shapes change).
        options: backend options, passed through.
    """
    order = -30
    MODES = (None, 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')

    def __init__(self, backend='inductor', mode=None, fullgraph=False, dynamic=None, options=None):
        if not (isinstance(backend, str) or callable(backend)):
            raise TypeError(f'backend must be a backend name or a callable, got {type(backend).__name__}')
        if isinstance(backend, str):
            import torch._dynamo
            check_choice('backend', backend, tuple(torch._dynamo.list_backends(exclude_tags=())))
        check_choice('mode', mode, self.MODES)
        if mode is not None and options is not None:
            raise ValueError('give either mode or options to Compile, not both (torch.compile accepts only one)')
        if options is not None and not isinstance(options, dict):
            raise TypeError(f'options must be a dict, got {type(options).__name__}')
        self.kwargs = dict(backend=backend, mode=mode, fullgraph=bool(fullgraph), dynamic=dynamic, options=options)
        self._model, self._saved = None, _NO_FORWARD

    def before_fit(self):
        model = self.learn.model
        self._model, self._saved = model, vars(model).get('forward', _NO_FORWARD)
        model.forward = torch.compile(model.forward, **self.kwargs)

    def after_fit(self):
        model, self._model = self._model, None
        if model is None: return
        if self._saved is _NO_FORWARD: vars(model).pop('forward', None)
        else: model.forward = self._saved
        self._saved = _NO_FORWARD


class SyncCheck(Callback):
    """Flags every host-device synchronisation inside the training and validation passes, using
    ``torch.cuda.set_sync_debug_mode``: ``'error'`` raises at the offending call, ``'warn'`` warns.

    A sync inside the batch loop (``.item()``, ``float(tensor)``, printing a tensor, a blocking copy)
    stalls the GPU once per batch. The mode is on from the first ``before_batch`` of a training or
    validation pass to its ``after_train``/``after_validate`` (it runs first at all of them), so what
    callbacks do once per pass, such as the Recorder moving the last pass's losses to the host at
    ``before_train`` and reducing them at its end, falls outside. It is restored at the end of every
    pass and of the fit, errors included. It does nothing when the learner is not on a CUDA device.
    """
    order = -1000

    def __init__(self, mode='error'):
        self.mode = check_choice('mode', mode, ('warn', 'error'))
        self._saved = None

    def _enabled(self) -> bool:
        return self.learn.device.type == 'cuda'

    def _on(self):
        if self._saved is not None or not self._enabled(): return   # on already, or not on a GPU
        self._saved = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(self.mode)

    def _off(self):
        if self._saved is None: return
        torch.cuda.set_sync_debug_mode(self._saved)
        self._saved = None

    def before_batch(self): self._on()   # at every batch: cheap, and the pass's start events stay outside
    def after_train(self): self._off()
    def after_validate(self): self._off()
    def after_fit(self): self._off()
