"""How a trained model uses its stochastic state: active units and the KL of each dimension of z.

A unit u of z is active (Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders",
2016) when its posterior mean moves with the data: A_u = Cov_x(E_{q(z|x)}[z_u]) > 0.01. For a
sequence model the posterior of step t is q(z_t | ·) along the sampled path, so the covariance
is taken over every valid (piece, step) of the split, of the posterior mean μ_q,t,u. Beside it,
the KL of each dimension, KL(q(z_t,u | ·) ‖ p(z_t,u | ·)) averaged over the same steps (nats
per step): the part of the ELBO's KL term that each unit pays (docs/model.md §4.5, §8.4).

Burda et al.'s criterion assumes a fixed prior N(0, I). The SRNN's and the VRNN's priors move with
d_t (h_{t−1}), so a unit whose posterior is its prior, and which tells the model nothing about x,
still has a posterior mean that moves from step to step and counts as active. The KL cannot be
fooled so: a unit is informative when it carries more than 0.01 nats per step of KL.
"""
import numpy as np

from ref.bounds import posterior_and_prior
from ref.distributions import gaussian_kl
from ref.errors import InputError

ACTIVE = 0.01  # Burda et al.'s threshold on the variance of a unit's posterior mean
INFORMATIVE = 0.01  # nats per step of KL: the same threshold, on what the unit costs the ELBO


def latent_usage(params, config, split, seed, batch_size=16, backend="numba"):
    """Active units and per-dimension KL of the model (params, config) on a split, one sampled
    path per piece from zero states, in float64.

    Returns {"active_units", "threshold", "activity" (z_dim,), "kl_per_dim" (z_dim,), "kl_per_step"};
    informative_units(kl_per_dim) counts the units that carry the KL.
    """
    rng = np.random.default_rng(seed)
    params = {name: np.asarray(value, dtype=float) for name, value in params.items()}
    sums = np.zeros((3, config.z_dim))  # Σ μ, Σ μ², Σ KL over the pieces' steps
    frames = 0
    for batch in split.batches(batch_size):
        if batch.carry:
            raise InputError("latent_usage takes a split of whole pieces, not streams (use the test split)")
        eps = rng.standard_normal((*batch.mask.shape, config.z_dim))
        for row, steps, one in batch.each_sequence():  # each piece alone, trimmed: no padded steps to compute
            mu_q, logvar_q, mu_p, logvar_p = posterior_and_prior(params, one.u, one.x, one.mask, eps[row, steps],
                                                                 config, backend=backend)
            kl = _kl_per_dimension(mu_q, logvar_q, mu_p, logvar_p)
            sums += [np.sum(mu_q, (0, 1)), np.sum(mu_q ** 2, (0, 1)), np.sum(kl, (0, 1))]
            frames += one.mask.size
    mean, mean_square, kl = sums / frames
    activity = mean_square - mean ** 2
    return {"active_units": int(np.sum(activity > ACTIVE)), "threshold": ACTIVE, "activity": activity.tolist(),
            "kl_per_dim": kl.tolist(), "kl_per_step": float(kl.sum())}


def informative_units(kl_per_dim):
    """The units of z whose KL per step exceeds INFORMATIVE, and the KL per step of the others
    (what the units that carry nothing still cost the ELBO): (count, kl_of_the_rest)."""
    kl = np.asarray(kl_per_dim, dtype=float)
    return int(np.sum(kl > INFORMATIVE)), float(np.sum(kl[kl <= INFORMATIVE]))


def _kl_per_dimension(mu_q, logvar_q, mu_p, logvar_p):
    """The diagonal Gaussian KL of docs/model.md §3, dimension by dimension: summed over a last axis of one."""
    return gaussian_kl(mu_q[..., None], logvar_q[..., None], mu_p[..., None], logvar_p[..., None])
