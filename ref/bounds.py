"""The ELBO (eq. 4, 6, 7) and the importance-weighted bound of docs/model.md §4.5, batch-first API,
for every model (config.model: the SRNN, the VRNN of §8, the RNN of §7).

These are the functions the rest of the project calls; they check their inputs (`checks.py`),
turn the batch-first arrays (B, T, ...) into the time-major (T, B, ...) of `model.py`, run the
model, and sum the per-step terms of eq. (6) over each sequence's valid steps.
"""
from typing import NamedTuple

import autograd.numpy as np
import numpy
from autograd.scipy.special import logsumexp
from autograd.tracer import getval

from . import fast, model, rnn, vrnn
from .checks import (check_batch_shapes, check_finite, check_kl_weight, check_param_values, check_params,
                     check_paths_shape, check_state_shape, raise_first_failure, value_checks)
from .errors import ConfigError, ParamsError
from .config import check_choice
from .distributions import bernoulli_log_prob, gaussian_kl, gaussian_log_prob
from .model import emission, feature_extractor

# The two paths through the recurrences: the readable loops of model.py, and their numba
# kernels with hand-derived gradients in fast.py (same functions, same signatures).
BACKENDS = {"numpy": model, "numba": fast}


def elbo(params, u, x, mask, eps, config, kl_weight=1.0, backend="numpy"):
    """Per-sequence ELBO L_i = Σ_{t ≤ T_i} [log p(x_t | z_t, d_t) − β KL(q ‖ p)] — eq. (4), (6); the
    VRNN's of docs/model.md §8.4; the RNN's exact log-likelihood (§7.3), whatever β and eps.

    params: dict of arrays under the names of docs/model.md §4.6; u, x: (B, T, x_dim);
    mask: (B, T); eps: (B, T, z_dim) standard-normal noise; kl_weight: β; backend: "numpy"
    (the readable loops) or "numba" (the compiled kernels), which compute the same thing.
    Returns L: (B,).
    """
    return elbo_and_states(params, u, x, mask, eps, config, kl_weight, backend=backend)[0]


def elbo_and_states(params, u, x, mask, eps, config, kl_weight=1.0, d_0=None, z_0=None, backend="numpy"):
    """The ELBO of `elbo`, from initial states (d_0, z_0), and the states at each T_i.

    For truncated backpropagation through time: the returned (d_{T_i}, z_{T_i}) are the
    next chunk's (d_0, z_0). d_0: (B, d_dim), z_0: (B, z_dim), zeros by default.
    Returns L: (B,), d_last: (B, d_dim), z_last: (B, z_dim).
    """
    check_kl_weight(kl_weight)
    path = _sampled_path(params, u, x, mask, eps, config, d_0, z_0, backend)
    L = np.sum(path.mask * (path.log_px - kl_weight * path.kl), axis=0)  # (B,), eq. (6)
    return L, path.d_last, path.z_last


def per_step_terms(params, u, x, mask, eps, config, d_0=None, z_0=None, backend="numpy"):
    """The two terms of eq. (6) at every step of one sampled path z_{1:T} (eq. 7):
    log p(x_t | z_t, d_t) and KL_t = KL(q(z_t | z_{t−1}, a_t) ‖ p(z_t | z_{t−1}, d_t)); the VRNN's
    log p(x_t | z_t, h_t) and KL(q(z_t | x_t, h_t) ‖ p(z_t | h_t)) (§8.4); the RNN's log p(x_t | d_t) and 0.

    Arguments as `elbo_and_states`. Returns log_px, kl: (B, T), zero on padded steps, so that
    `elbo` is Σ_t (log_px − β·kl) over each row.
    """
    path = _sampled_path(params, u, x, mask, eps, config, d_0, z_0, backend)
    return (path.mask * path.log_px).T, (path.mask * path.kl).T


def posterior_and_prior(params, u, x, mask, eps, config, d_0=None, z_0=None, backend="numpy"):
    """Along one sampled path (arguments as `elbo_and_states`): the posterior's and the prior's
    Gaussians of every step, mu_q, logvar_q, mu_p, logvar_p, each (B, T, z_dim), zero on padded
    steps; what the ELBO's KL terms are made of, for analysing how each dimension of z is used.
    The RNN has no z: ConfigError."""
    if config.model == "rnn":
        raise ConfigError("the RNN has no stochastic state z_t (docs/model.md §7)")
    path = _sampled_path(params, u, x, mask, eps, config, d_0, z_0, backend)
    return tuple(numpy.swapaxes(path.mask[..., None] * v, 0, 1) for v in path.gaussians)


class _Path(NamedTuple):
    """One sampled path through the model, time-major: the terms of eq. (6) and the final states."""
    log_px: np.ndarray   # (T, B) log p(x_t | z_t, d_t)
    kl: np.ndarray       # (T, B) KL(q(z_t | z_{t−1}, a_t) ‖ p(z_t | z_{t−1}, d_t))
    mask: np.ndarray     # (T, B)
    d_last: np.ndarray   # (B, d_dim) d at each T_i
    z_last: np.ndarray   # (B, z_dim) z at each T_i
    gaussians: tuple = None  # (mu_q, logvar_q, mu_p, logvar_p), each (T, B, z_dim); None for the RNN


def _sampled_path(params, u, x, mask, eps, config, d_0, z_0, backend):
    """d (eq. 2), a (eq. 5), one path z_{1:T} from q (eq. 5, 7) and the per-step terms of eq. (6);
    for the VRNN h, z and its terms (§8.4), for the RNN d and log p(x_t | d_t) with KL_t = 0 (§7.3)."""
    layers, params = _backend(backend), _plain_dict(params, config)
    u, x, mask, eps, d_0, z_0 = _time_major_inputs(params, u, x, mask, eps, config, d_0, z_0)
    last = (numpy.sum(mask, axis=0).astype(int) - 1, numpy.arange(mask.shape[1]))
    if config.model == "rnn":
        d = rnn.deterministic_states(layers, params, u, d_0, config)
        log_px = _log_prob(x, rnn.emission(params, d, config), config)
        return _Path(log_px, np.zeros_like(log_px), mask, d[last], z_0)  # no z: z_0 passes through
    if config.model == "vrnn":
        h, z, phi_z, mu_p, logvar_p, mu_q, logvar_q = vrnn.sampled_path(
            params, feature_extractor(params, u, config), feature_extractor(params, x, config), eps, d_0, z_0, config)
        log_px = _log_prob(x, vrnn.emission(params, h, phi_z, config), config)
        return _Path(log_px, gaussian_kl(mu_q, logvar_q, mu_p, logvar_p), mask, h[last], z[last],
                     (mu_q, logvar_q, mu_p, logvar_p))
    d, a = _deterministic_and_inference_states(layers, params, u, x, mask, d_0, config)
    z, mu_p, logvar_p, mu_q, logvar_q = layers.stochastic_layer(params, d, a, eps, z_0, config)
    log_px = emission_log_prob(params, x, d, z, config)                     # (T, B)
    kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)                         # (T, B)
    return _Path(log_px, kl, mask, d[last], z[last], (mu_q, logvar_q, mu_p, logvar_p))


def log_importance_weights(params, u, x, mask, eps, config, d_0=None, z_0=None, backend="numpy"):
    """log w_k = Σ_{t ≤ T_i} [log p(x_t | z_t^k, d_t) + log p(z_t^k | z_{t−1}^k, d_t) − log q(z_t^k | z_{t−1}^k, a_t)].

    eps: (K, B, T, z_dim), one noise sequence per path. The K paths run as one batch of
    K·B rows; d and a do not depend on z and are computed once. The VRNN's h does (§8.4), so
    its whole recurrence runs on the K·B rows; the RNN's every weight is log p(x) (§7.3).
    Returns (K, B).
    """
    layers, params = _backend(backend), _plain_dict(params, config)
    eps = _as_array(eps, params)
    check_paths_shape(eps.shape)
    K = eps.shape[0]
    u, x, mask, _, d_0, z_0 = _time_major_inputs(params, u, x, mask, eps[0], config, d_0, z_0)
    check_finite("eps", eps)
    T, B = mask.shape
    if config.model == "rnn":
        d = rnn.deterministic_states(layers, params, u, d_0, config)
        log_px = np.sum(mask * _log_prob(x, rnn.emission(params, d, config), config), axis=0)  # (B,)
        return np.concatenate([log_px[None]] * K)
    tile = lambda v: np.concatenate([v] * K, axis=1)  # (T, B, ·) -> (T, K·B, ·), path k in rows kB..kB+B−1
    eps_paths = numpy.moveaxis(eps, 2, 0).reshape(T, K * B, -1) * numpy.tile(mask, (1, K))[..., None]
    if config.model == "vrnn":
        e_u, e_x = feature_extractor(params, u, config), feature_extractor(params, x, config)
        h, z, phi_z, mu_p, logvar_p, mu_q, logvar_q = vrnn.sampled_path(
            params, tile(e_u), tile(e_x), eps_paths, numpy.tile(d_0, (K, 1)), numpy.tile(z_0, (K, 1)), config)
        log_px = _log_prob(tile(x), vrnn.emission(params, h, phi_z, config), config)
    else:
        d, a = _deterministic_and_inference_states(layers, params, u, x, mask, d_0, config)
        z, mu_p, logvar_p, mu_q, logvar_q = layers.stochastic_layer(params, tile(d), tile(a), eps_paths,
                                                                     numpy.tile(z_0, (K, 1)), config)
        log_px = emission_log_prob(params, tile(x), tile(d), z, config)
    log_w = log_px + gaussian_log_prob(z, mu_p, logvar_p) - gaussian_log_prob(z, mu_q, logvar_q)  # (T, K·B)
    return np.sum(numpy.tile(mask, (1, K)) * log_w, axis=0).reshape(K, B)


def iw_bound(params, u, x, mask, eps, config, d_0=None, z_0=None, backend="numpy"):
    """Importance-weighted bound log (1/K) Σ_k exp(log w_k) per sequence; K = eps.shape[0].

    K = 1 is the ELBO in expectation; the bound tightens towards log p(x) as K grows.
    Returns (B,).
    """
    log_w = log_importance_weights(params, u, x, mask, eps, config, d_0, z_0, backend)
    return logsumexp(log_w, axis=0) - np.log(log_w.shape[0])


def _plain_dict(params, config):
    """The parameters, checked against `config` (names, shapes, one floating dtype, finite values),
    as a plain dict: under autograd, one lookup per name instead of one per use (each lookup in
    a traced dict costs a dict-sized zero gradient on the way back)."""
    check_params(params, config)
    params = {name: params[name] for name in params.keys()}
    values = {name: numpy.asarray(getval(value)) for name, value in params.items()}
    check_param_values(values)
    dtypes = {value.dtype.name for value in values.values()}
    if len(dtypes) > 1:
        raise ParamsError(f"parameters must share one dtype, got {', '.join(sorted(dtypes))}")
    return params


def emission_log_prob(params, x, d, z, config):
    """log p(x_t | z_t, d_t) for every step at once — eq. (1). x: (T, B, x_dim) -> (T, B)."""
    return _log_prob(x, emission(params, d, z, config), config)


def _log_prob(x, out, config):
    """log p(x_t | ·) from an emission's output: Bernoulli logits, or Gaussian (mu, logvar) (§3)."""
    return bernoulli_log_prob(x, out) if config.emission == "bernoulli" else gaussian_log_prob(x, *out)


def _deterministic_and_inference_states(layers, params, u, x, mask, d_0, config):
    """d_{1:T} from u (eq. 2) and a_{1:T} from d and x (eq. 5), time-major."""
    d = layers.deterministic_layer(params, feature_extractor(params, u, config), d_0)
    a = layers.inference_network(params, d, feature_extractor(params, x, config), mask, config)
    return d, a


def _backend(name):
    check_choice("backend", name, BACKENDS)
    return BACKENDS[name]


# ---------------------------------------------------------------------------------------
# Input checks (checks.py): every problem is an InputError that names the argument
# ---------------------------------------------------------------------------------------

def _as_array(v, params):
    """v as a plain array of the parameters' floating dtype (float32 parameters stay float32)."""
    dtype = getval(next(iter(params.values()))).dtype  # _plain_dict checked that they share one
    return numpy.asarray(v, dtype=dtype if numpy.issubdtype(dtype, numpy.floating) else float)


def _time_major_inputs(params, u, x, mask, eps, config, d_0, z_0):
    """Check shapes and values, zero the padded steps, and swap to time-major (T, B, ...)."""
    u, x, mask, eps = (_as_array(v, params) for v in (u, x, mask, eps))
    check_batch_shapes(u.shape, x.shape, mask.shape, eps.shape, config)
    B, T, _ = x.shape
    d_0 = numpy.zeros((B, config.d_dim), u.dtype) if d_0 is None else _state("d_0", d_0, (B, config.d_dim), params)
    z_0 = numpy.zeros((B, config.z_dim), u.dtype) if z_0 is None else _state("z_0", z_0, (B, config.z_dim), params)
    checks = value_checks(u, x, mask, eps, d_0, z_0, config)
    raise_first_failure(checks, [ok for ok, _ in checks])
    # padded steps are zeroed so that no finite value there can overflow into a masked term
    valid = mask[..., None] == 1
    u, x, eps = (numpy.swapaxes(v * valid, 0, 1) for v in (u, x, eps))
    return u, x, mask.T, eps, d_0, z_0


def _state(name, v, shape, params):
    v = _as_array(v, params)
    check_state_shape(name, v.shape, shape)
    return v
