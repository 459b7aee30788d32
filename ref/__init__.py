"""srnn's reference implementation: the SRNN of Fraccaro et al. (NIPS 2016) in NumPy + autograd,
and the baselines it is compared with, the VRNN (`vrnn`) and the RNN (`rnn`), chosen by `Config.model`.

The model core, read next to the paper and the model contract (docs/model.md); it imports
nothing else of the project. Data flow: `params` (names, shapes, initialisation) → `model`
(eq. 1–3, 5; its recurrences also as numba kernels in `fast`, chosen by backend="numba") →
`bounds` (the ELBO, eq. 4, 6, 7, its per-step terms and the IW bound, inputs checked by
`checks`) → gradients by `autograd.grad` → `optim` (Adam, clipping, schedules).
The contract's entry points are `Config`, `init_params` and `elbo`.
"""
from .config import Config, PRESETS, preset
from .bounds import (BACKENDS, elbo, elbo_and_states, iw_bound, log_importance_weights, per_step_terms,
                     posterior_and_prior)
from .errors import ConfigError, DataError, InputError, ParamsError, SRNNError
from .params import init_params, param_shapes
from .sample import draw_sample_noise, sample

__all__ = [
    "Config", "PRESETS", "preset", "init_params", "param_shapes",
    "BACKENDS", "elbo", "elbo_and_states", "per_step_terms", "posterior_and_prior", "iw_bound",
    "log_importance_weights",
    "sample", "draw_sample_noise",
    "SRNNError", "ConfigError", "DataError", "InputError", "ParamsError",
]
