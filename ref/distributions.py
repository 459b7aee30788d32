"""Log-densities and the KL divergence of the model contract (docs/model.md §4.5), each summed over the last (feature) axis."""
import math

import autograd.numpy as np

LOG_2PI = math.log(2.0 * math.pi)  # a Python float, so float32 arrays stay float32


def bernoulli_log_prob(x, logits):
    """log Bern(x | σ(l)) = Σ_k x_k logσ(l_k) + (1 − x_k) logσ(−l_k) = Σ_k x_k l_k − log(1 + e^{l_k}).

    From logits, so that a saturated σ never gives log 0.
    """
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def gaussian_log_prob(x, mu, logvar):
    """log N(x | mu, exp(logvar)), with its −½ log 2π per dimension."""
    return -0.5 * np.sum(LOG_2PI + logvar + (x - mu) ** 2 * np.exp(-logvar), axis=-1)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, exp(logvar_q)) ‖ N(mu_p, exp(logvar_p))) in closed form, diagonal covariances.

    KL = ½ Σ [logvar_p − logvar_q + (exp(logvar_q) + (mu_q − mu_p)²) / exp(logvar_p) − 1];
    the variance ratio is one exp of a difference, so it cannot overflow for large equal logvars.
    """
    return 0.5 * np.sum(
        logvar_p - logvar_q + np.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 * np.exp(-logvar_p) - 1.0,
        axis=-1,
    )
