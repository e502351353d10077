"""onecycle: Leslie Smith's disciplined approach to hyper-parameters, one line at a time, on PyTorch."""
from .core.callback import *
from .core.data import DataLoaders, to_device, default_device
from .core.recorder import Recorder, smooth_ema
from .core.hyper import get_hyper, set_hyper, lr_range
from .core.metrics import accuracy, accuracy_multi, error_rate
from .core.dist import is_main_process, main_print, rank, world_size, unwrap_model, any_rank, full_state_dict
from .core.hyper import scale_lr
from .core.rng import set_seed
from .callbacks.progress import ProgressCallback
from .callbacks.training import GradAccumulation, MixedPrecision, GradientClipping
from .callbacks.gpu import ChannelsLast, Compile, SyncCheck, to_channels_last
from .callbacks.divergence import DivergenceError, DivergenceGuard
from .callbacks.interrupt import InterruptGuard
from .callbacks.discriminative import (split_by_children, split_by_modules, split_head, freeze_to, freeze, unfreeze,
                                      frozen_groups)
from .callbacks.predict import GatherPreds, get_preds, predict, per_item_loss
from .callbacks.layerwise import LayerwiseLR, LARS, LARC, SmithLayerLR
from .callbacks.early_stopping import EarlyStopping
from .callbacks.loggers import CSVLogger, StepLogger, TensorBoardLogger, WandbLogger, MLflowLogger
from .checkpoint import CheckpointError, SaveModel, save_checkpoint, load_checkpoint, read_checkpoint, atomic_save
from .schedules.functions import *
from .schedules.scheduler import (ParamScheduler, OneCycleScheduler, CyclicalMomentum, CyclicalWeightDecay, plot_sched,
                                  SGDRScheduler, FlatCosScheduler, CLRScheduler, WarmupCosScheduler)
from .schedules.fit import fit_one_cycle, fit_sgdr, fit_flat_cos, fit_clr, fit_warmup_cos, fine_tune
from .schedules.torch_interop import TorchScheduler, ScheduleLR, to_torch_scheduler
from .distributed import DistributedCallback, FSDP
from .tuning.range_test import LRFinder, LRFinderResult, lr_find
from .tuning.search import SearchResult, lr_search, momentum_search, wd_search
from .tuning.batch_size import noise_scale, with_batch_size, step_memory, find_batch_size, BatchSizeSchedule, NoiseScale
from .tuning.tune import tune, TuneResult
from .tuning.compare import compare_lr_finds, LRComparison
from .tuning.range_test_plot import plot_range_tests
from .tuning.diagnostics import Diagnosis, diagnose, diagnose_losses
from .learner import Learner
from .deploy import ExportError, export, load_exported
from .model_summary import ModelSummary, summary
from .data import tensor_dls

__version__ = '0.1.0'
