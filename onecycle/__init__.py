"""onecycle: Leslie Smith's disciplined approach to hyper-parameters, one line at a time, on PyTorch."""
from .callback import *
from .learner import Learner, DataLoaders, to_device, default_device
from .recorder import Recorder, smooth_ema
from .progress import ProgressCallback
from .hyper import get_hyper, set_hyper, lr_range
from .schedule import *
from .schedulers import ParamScheduler, OneCycleScheduler, CyclicalMomentum, CyclicalWeightDecay, fit_one_cycle, plot_sched
from .fit import SGDRScheduler, FlatCosScheduler, CLRScheduler, WarmupCosScheduler, fit_sgdr, fit_flat_cos, fit_clr, fit_warmup_cos
from .torch_sched import TorchScheduler, ScheduleLR, to_torch_scheduler
from .training import GradAccumulation, MixedPrecision, GradientClipping
from .gpu import ChannelsLast, Compile, SyncCheck, to_channels_last
from .distributed import DistributedCallback, is_main_process, main_print, rank, world_size, unwrap_model, any_rank, scale_lr
from .lr_finder import LRFinder, LRFinderResult, lr_find
from .search import SearchResult, lr_search, momentum_search, wd_search
from .batch_size import noise_scale, with_batch_size, step_memory, find_batch_size, BatchSizeSchedule, NoiseScale
from .tune import tune, TuneResult
from .range_test import compare_lr_finds, LRComparison, plot_range_tests
from .diagnostics import Diagnosis, diagnose, diagnose_losses
from .metrics import accuracy, error_rate
from .checkpoint import CheckpointError, SaveModel, save_checkpoint, load_checkpoint, read_checkpoint, atomic_save
from .divergence import DivergenceError, DivergenceGuard
from .discriminative import split_by_children, split_by_modules, split_head, freeze_to, freeze, unfreeze, frozen_groups, fine_tune
from .layerwise import LayerwiseLR, LARS, LARC, SmithLayerLR

__version__ = '0.1.0'
