"""Schedules as pure functions of training progress, the one ParamScheduler that applies them to any
hyper-parameter, torch scheduler interop, and the fit_* one-liners."""
