"""onecycle: Leslie Smith's disciplined approach to hyper-parameters, one line at a time, on PyTorch."""
from .callback import *
from .learner import Learner, DataLoaders, to_device, default_device
from .recorder import Recorder, smooth_ema
from .progress import ProgressCallback
from .hyper import get_hyper, set_hyper, lr_range
from .schedule import *
from .schedulers import ParamScheduler, OneCycleScheduler, CyclicalMomentum, fit_one_cycle
from .training import GradAccumulation, MixedPrecision, GradientClipping
from .lr_finder import LRFinder, LRFinderResult, lr_find
from .metrics import accuracy, error_rate

__version__ = '0.1.0'
