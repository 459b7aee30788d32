"""srnn's reference implementation: the SRNN of Fraccaro et al. (NIPS 2016) in NumPy + autograd.

Data flow: `data` (piano rolls, masks) → `model` (eq. 1–3, 5; its recurrences also as
numba kernels in `fast`, chosen by backend="numba") → `bounds` (the ELBO, eq. 4, 6, 7,
and the IW bound) → gradients by `autograd.grad` → `optim` (Adam) in `train`.
SPEC.md's entry points are `Config`, `init_params` and `elbo`.
"""
from .config import Config, PRESETS, preset
from .bounds import elbo, elbo_and_states, iw_bound, log_importance_weights
from .errors import ConfigError, DataError, InputError, SRNNError
from .model import init_params, param_shapes
from .sample import draw_sample_noise, sample

__all__ = [
    "Config", "PRESETS", "preset", "init_params", "param_shapes",
    "elbo", "elbo_and_states", "iw_bound", "log_importance_weights",
    "sample", "draw_sample_noise",
    "SRNNError", "ConfigError", "DataError", "InputError",
]
