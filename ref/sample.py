"""Ancestral sampling from the generative model, eq. (1)–(2) of docs/model.md §4.3: music from a trained
SRNN (or VRNN, §8.3, or RNN, §7.3).

The sampler, like the model, takes its randomness as arguments (`draw_sample_noise`
draws them), so two implementations given the same draws produce the same pieces.
"""
import numpy

from . import rnn, vrnn
from .checks import check_config, check_sample_shapes
from .model import deterministic_layer, emission, feature_extractor, prior
from .nn import sigmoid


def draw_sample_noise(rng, config, B, T):
    """The random draws of `sample` for B pieces of T steps.

    Returns eps_z: (B, T, z_dim) standard normal, for z_t = mu_p + exp(logvar_p / 2) ⊙ eps_z;
    noise_x: (B, T, x_dim), uniform on [0, 1) for Bernoulli emission (x_t,k = [noise < σ(l_k)])
    or standard normal for Gaussian emission (x_t = mu_x + exp(logvar_x / 2) ⊙ noise).
    """
    eps_z = rng.standard_normal((B, T, config.z_dim))
    noise_x = rng.random((B, T, config.x_dim)) if config.emission == "bernoulli" else rng.standard_normal((B, T, config.x_dim))
    return eps_z, noise_x


def sample(params, config, eps_z, noise_x, u_1=None, return_states=False):
    """Draw x_{1:T} from the model, feeding each x_t back as u_{t+1}.

    SRNN, for t = 1..T: d_t = GRU_d(d_{t−1}, e(u_t)); z_t ~ p(z_t | z_{t−1}, d_t); x_t ~ p(x_t | z_t, d_t).
    VRNN (docs/model.md §8.3): h_t from (h_{t−1}, u_t, z_{t−1}), z_t ~ p(z_t | h_t), x_t ~ p(x_t | z_t, h_t);
    RNN (§7.3): d_t as the SRNN's, x_t ~ p(x_t | d_t), and eps_z is not used.
    eps_z: (B, T, z_dim); noise_x: (B, T, x_dim) from `draw_sample_noise`;
    u_1: (B, x_dim) first input, zeros by default (a primer frame otherwise).
    Returns x: (B, T, x_dim) (0/1 piano rolls for Bernoulli emission), and with
    return_states also d: (B, T, d_dim) (the VRNN's h) and z: (B, T, z_dim) (the RNN's zeros).
    """
    check_config(config)
    eps_z, noise_x = numpy.asarray(eps_z, float), numpy.asarray(noise_x, float)
    u_1 = None if u_1 is None else numpy.asarray(u_1, float)
    check_sample_shapes(eps_z.shape, noise_x.shape, None if u_1 is None else u_1.shape, config)
    B, T = eps_z.shape[:2]
    u_t = numpy.zeros((B, config.x_dim)) if u_1 is None else u_1
    d_t, z_t = numpy.zeros((B, config.d_dim)), numpy.zeros((B, config.z_dim))
    step = _STEPS[config.model]
    x, d, z = [], [], []
    for t in range(T):
        d_t, z_t, out = step(params, config, u_t, d_t, z_t, eps_z[:, t])
        if config.emission == "bernoulli":
            x_t = (noise_x[:, t] < sigmoid(out)).astype(float)
        else:
            x_t = out[0] + numpy.exp(0.5 * out[1]) * noise_x[:, t]
        x.append(x_t), d.append(d_t), z.append(z_t)
        u_t = x_t
    x, d, z = (numpy.stack(v, axis=1) for v in (x, d, z))
    return (x, d, z) if return_states else x


def _srnn_step(params, config, u_t, d_tm1, z_tm1, eps_z_t):
    """(d_t, z_t, the emission's output) of one SRNN step, eq. (1)–(2)."""
    d_t = deterministic_layer(params, feature_extractor(params, u_t, config)[None], d_tm1)[0]
    mu_p, logvar_p = prior(params, d_t, z_tm1, config)
    z_t = mu_p + numpy.exp(0.5 * logvar_p) * eps_z_t
    return d_t, z_t, emission(params, d_t, z_t, config)


def _vrnn_step(params, config, u_t, h_tm1, z_tm1, eps_z_t):
    """(h_t, z_t, the emission's output) of one VRNN step, eq. (V1), (V2), (V4)."""
    h_t = vrnn.recurrence(params, h_tm1, feature_extractor(params, u_t, config), vrnn.z_features(params, z_tm1, config))
    mu_p, logvar_p = vrnn.prior(params, h_t, config)
    z_t = mu_p + numpy.exp(0.5 * logvar_p) * eps_z_t
    return h_t, z_t, vrnn.emission(params, h_t, vrnn.z_features(params, z_t, config), config)


def _rnn_step(params, config, u_t, d_tm1, z_tm1, eps_z_t):
    """(d_t, the unused z, the emission's output) of one RNN step, eq. (R1)–(R2)."""
    d_t = deterministic_layer(params, feature_extractor(params, u_t, config)[None], d_tm1)[0]
    return d_t, z_tm1, rnn.emission(params, d_t, config)


_STEPS = {"srnn": _srnn_step, "vrnn": _vrnn_step, "rnn": _rnn_step}
