"""The VRNN of Chung et al., "A Recurrent Latent Variable Model for Sequential Data" (NIPS
2015), as docs/model.md §8 states it in this project's notation, where u_t = x_{t−1}:

    h_t = GRU_h(h_{t−1}, [e(u_t), φ_z(z_{t−1})])       eq. (V1)  (Chung et al.'s h_{t−1})
    p(z_t | h_t)      = N(μ_p, e^{λ_p}),  MLPs of h_t                  eq. (V2)
    q(z_t | x_t, h_t) = N(μ_q, e^{λ_q}),  MLPs of [h_t, e(x_t)]        eq. (V3)
    p(x_t | z_t, h_t) from the `emit` MLP of [h_t, φ_z(z_t)]           eq. (V4)

The recurrence takes the sampled z_{t−1}: h, the prior, the posterior and z run together in
one loop over t, and no part of it can be computed for all steps first, as the SRNN's d
(eq. 2) and a (eq. 5) are. So the VRNN has no numba kernel: both backends run these loops.
Time-major (T, B, ·) like `model.py`.
"""
import autograd.numpy as np

from .model import emission_head
from .nn import gru_cell, gru_input_projection, hidden_stack, mlp, stack_arrays, variance_head


def z_features(params, z, config):
    """φ_z(z): the `embed_z` hidden stack (embed_layers layers); the identity if embed_layers = 0."""
    return hidden_stack(params, "embed_z", z, config.embed_layers, config.clip)


def recurrence(params, h_tm1, e_u_t, phi_z_tm1):
    """h_t = GRU_h(h_{t−1}, [e(u_t), φ_z(z_{t−1})]) — eq. (V1). (B, ·) arrays."""
    return gru_cell(params, "gru_h", h_tm1,
                    gru_input_projection(params, "gru_h", np.concatenate([e_u_t, phi_z_tm1], axis=-1)))


def prior(params, h_t, config):
    """p(z_t | h_t) = N(mu_p, exp(logvar_p)) — eq. (V2)."""
    mu_p = mlp(params, "prior_mu", h_t, config.mlp_layers, config.clip)
    logvar_p = variance_head(mlp(params, "prior_logvar", h_t, config.mlp_layers, config.clip), config.var_floor)
    return mu_p, logvar_p


def posterior(params, h_t, e_x_t, config):
    """q(z_t | x_t, h_t) = N(mu_q, exp(logvar_q)) — eq. (V3)."""
    v = np.concatenate([h_t, e_x_t], axis=-1)
    mu_q = mlp(params, "post_mu", v, config.mlp_layers, config.clip)
    logvar_q = variance_head(mlp(params, "post_logvar", v, config.mlp_layers, config.clip), config.var_floor)
    return mu_q, logvar_q


def emission(params, h, phi_z, config):
    """p(x_t | z_t, h_t) — eq. (V4): logits (Bernoulli) or (mu, logvar) (Gaussian)."""
    return emission_head(params, np.concatenate([h, phi_z], axis=-1), config)


def sampled_path(params, e_u, e_x, eps, h_0, z_0, config):
    """One path z_{1:T} ~ Π_t q(z_t | x_t, h_t) with the states h_t it drives — eq. (V1)–(V3).

    e_u, e_x: (T, B, e_dim) features of u and x; eps: (T, B, z_dim); h_0: (B, d_dim);
    z_0: (B, z_dim). Returns h, z, phi_z (φ_z(z_t)), mu_p, logvar_p, mu_q, logvar_q, each (T, B, ·).
    """
    h_tm1, phi_z_tm1, steps = h_0, z_features(params, z_0, config), []
    for t in range(len(eps)):
        h_t = recurrence(params, h_tm1, e_u[t], phi_z_tm1)
        mu_p, logvar_p = prior(params, h_t, config)
        mu_q, logvar_q = posterior(params, h_t, e_x[t], config)
        z_t = mu_q + np.exp(0.5 * logvar_q) * eps[t]
        phi_z_t = z_features(params, z_t, config)
        steps.append((h_t, z_t, phi_z_t, mu_p, logvar_p, mu_q, logvar_q))
        h_tm1, phi_z_tm1 = h_t, phi_z_t
    return tuple(stack_arrays(*seq) for seq in zip(*steps))
