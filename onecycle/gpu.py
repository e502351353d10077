"""GPU throughput: channels_last memory, an opt-in ``torch.compile``, and a check for host syncs.

Mixed precision lives in ``training.MixedPrecision``. The loop itself moves batches with
non-blocking copies (``to_device``) and reads no value back per batch, so a GPU never waits for
Python; ``SyncCheck`` proves it for any set of callbacks.
"""
from __future__ import annotations

import weakref

import torch

from .callback import Callback
from .checks import check_choice

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
        if isinstance(b, (list, tuple)):
            learn.batch = type(b)([*to_channels_last(tuple(b[:learn.n_inp])), *b[learn.n_inp:]])
        else:
            learn.batch = to_channels_last(b)


_COMPILED = weakref.WeakKeyDictionary()   # model -> the torch.compile arguments it was compiled with


class Compile(Callback):
    """Compiles the model's forward with ``torch.compile`` at the start of a fit (opt-in).

    It uses ``nn.Module.compile``, which compiles in place: ``learn.model`` stays the same module,
    so its ``state_dict`` keys carry no ``_orig_mod.`` prefix and checkpoints load into compiled
    and plain models alike. A model compiled once is not compiled again by later fits; the first
    batches of a fit (and the first validation batches) pay the compilation time.

    Args:
        backend: the ``torch.compile`` backend (``'inductor'``; ``'eager'`` or ``'aot_eager'`` to
            check a model traces without generating code).
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

    def before_fit(self):
        model = self.learn.model
        if _COMPILED.get(model) == self.kwargs: return
        model.compile(**self.kwargs)
        _COMPILED[model] = dict(self.kwargs)


class SyncCheck(Callback):
    """Flags every host-device synchronisation inside the training and validation passes, using
    ``torch.cuda.set_sync_debug_mode``: ``'error'`` raises at the offending call, ``'warn'`` warns.

    A sync inside the batch loop (``.item()``, ``float(tensor)``, printing a tensor, a blocking copy)
    stalls the GPU once per batch. The mode is on from ``before_train``/``before_validate`` to
    ``after_train``/``after_validate`` (it runs first at both, so the once-per-pass reductions of
    the Recorder fall outside), and is restored at the end of every pass and of the fit, errors
    included. It does nothing when the learner is not on a CUDA device.
    """
    order = -1000

    def __init__(self, mode='error'):
        self.mode = check_choice('mode', mode, ('warn', 'error'))
        self._saved = None

    def _enabled(self) -> bool:
        return self.learn.device.type == 'cuda'

    def _on(self):
        if not self._enabled(): return
        if self._saved is None: self._saved = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(self.mode)

    def _off(self):
        if self._saved is None: return
        torch.cuda.set_sync_debug_mode(self._saved)
        self._saved = None

    def before_train(self): self._on()
    def before_validate(self): self._on()
    def after_train(self): self._off()
    def after_validate(self): self._off()
    def after_fit(self): self._off()
