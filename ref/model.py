"""The SRNN of docs/model.md §4: the generative model (eq. 1–2) and the inference network (eq. 3, 5).

Internal axis order is time-major, (T, B, features), because every recurrence here is a
loop over t; the batch-first arrays of the public API are swapped once in `bounds.py`.
Steps t = 1..T of the paper are indices 0..T−1; `d_tm1` is d_{t−1}, `a_tp1` is a_{t+1}.

The recurrences are explicit Python loops that collect each step in a list and stack it
at the end (autograd cannot differentiate `A[t] = v`; see `nn.stack_arrays`). Everything that does not recur —
the feature extractor, the GRUs' input projections, the emission — acts on all steps at once.

Parameter names, shapes and initialisation are in `params.py`. Choices where the contract
(docs/model.md §4.8) follows the paper's released code: the filtering a_t with mlp_layers = 0
is [d_t, e(x_t)] itself (width d_dim + e_dim, `params.a_width`).
"""
import autograd.numpy as np

from .nn import (dense, gru_cell, gru_input_projection, hidden_stack, mlp, sigmoid, stack_arrays,
                 variance_head)


# ---------------------------------------------------------------------------------------
# Generative model, eq. (1)–(2)
# ---------------------------------------------------------------------------------------

def feature_extractor(params, v, config):
    """e(v): the `embed` hidden stack shared by u_t and x_t; the identity if embed_layers = 0.

    v: (..., x_dim) -> (..., e_dim)
    """
    return hidden_stack(params, "embed", v, config.embed_layers, config.clip)


def deterministic_layer(params, e_u, d_0):
    """Deterministic states d_t = GRU_d(d_{t−1}, e(u_t)), p(d_t | d_{t−1}, u_t) = δ(d_t − d̃_t) — eq. (2).

    e_u: (T, B, e_dim) features of the inputs; d_0: (B, d_dim). Returns d: (T, B, d_dim).
    """
    proj = gru_input_projection(params, "gru_d", e_u)  # (T, B, 3·d_dim)
    d_t, d = d_0, []
    for t in range(len(proj)):
        d_t = gru_cell(params, "gru_d", d_t, proj[t])
        d.append(d_t)
    return stack_arrays(*d)


def prior(params, d_t, z_tm1, config):
    """Prior transition p(z_t | z_{t−1}, d_t) = N(mu_p, exp(logvar_p)) — eq. (1).

    d_t: (B, d_dim); z_tm1: (B, z_dim). Returns mu_p, logvar_p: (B, z_dim).
    """
    v = np.concatenate([d_t, z_tm1], axis=-1)
    mu_p = mlp(params, "prior_mu", v, config.mlp_layers, config.clip)
    logvar_p = variance_head(mlp(params, "prior_logvar", v, config.mlp_layers, config.clip), config.var_floor)
    return mu_p, logvar_p


def emission(params, d, z, config):
    """Emission p(x_t | z_t, d_t) — eq. (1): its logits (Bernoulli) or (mu, logvar) (Gaussian).

    d: (..., d_dim); z: (..., z_dim). Returns (..., x_dim) arrays.
    """
    return emission_head(params, np.concatenate([d, z], axis=-1), config)


def emission_head(params, v, config):
    """The `emit` MLP on what the emission conditions on, v (every model's, docs/model.md §3):
    logits (Bernoulli) or (mu, logvar) (Gaussian)."""
    h = hidden_stack(params, "emit", v, config.mlp_layers, config.clip)
    if config.emission == "bernoulli":
        return dense(params, "emit.out", h)
    return dense(params, "emit.mu", h), variance_head(dense(params, "emit.logvar", h), config.var_floor)


def emission_mean(params, d, z, config):
    """E[x_t | z_t, d_t]: note probabilities σ(logits), or the Gaussian mean."""
    out = emission(params, d, z, config)
    return sigmoid(out) if config.emission == "bernoulli" else out[0]


# ---------------------------------------------------------------------------------------
# Inference network, eq. (3), (5)
# ---------------------------------------------------------------------------------------

def inference_network(params, d, e_x, mask, config):
    """The states a_t that q(z_t | z_{t−1}, a_t) conditions on — eq. (5).

    smoothing: a_t = GRU_a(a_{t+1}, [d_t, e(x_t)]) backwards in time, so a_t summarises
    d_{t:T} and x_{t:T}; each sequence starts from its own last valid step T_i with
    a_{T_i+1} = 0, so padding never reaches a.
    filtering: a_t = `filter` hidden stack on [d_t, e(x_t)].

    d: (T, B, d_dim); e_x: (T, B, e_dim); mask: (T, B). Returns a: (T, B, a_width).
    """
    v = np.concatenate([d, e_x], axis=-1)  # (T, B, d_dim + e_dim)
    if config.inference == "filtering":
        return hidden_stack(params, "filter", v, config.mlp_layers, config.clip)
    proj = gru_input_projection(params, "gru_a", v)  # (T, B, 3·a_dim)
    # mask of step t+1: zero where t is a sequence's last valid step (or past it)
    mask_next = np.concatenate([mask[1:], np.zeros_like(mask[:1])])
    a_tp1, a = np.zeros((proj.shape[1], config.a_dim), dtype=proj.dtype), []
    for t in reversed(range(len(proj))):
        a_t = gru_cell(params, "gru_a", a_tp1 * mask_next[t][:, None], proj[t])  # a_{T_i+1} = 0
        a.append(a_t)
        a_tp1 = a_t
    return stack_arrays(*a[::-1])


def posterior(params, a_t, z_tm1, mu_p, config):
    """Posterior transition q(z_t | z_{t−1}, a_t) = N(mu_q, exp(logvar_q)) — eq. (5).

    With residual_q ("Resq") the MLP predicts the correction mu_q − mu_p to the prior mean.
    a_t: (B, a_width); z_tm1, mu_p: (B, z_dim). Returns mu_q, logvar_q: (B, z_dim).
    """
    v = np.concatenate([a_t, z_tm1], axis=-1)
    mu_q = mlp(params, "post_mu", v, config.mlp_layers, config.clip)
    if config.residual_q:
        mu_q = mu_q + mu_p
    logvar_q = variance_head(mlp(params, "post_logvar", v, config.mlp_layers, config.clip), config.var_floor)
    return mu_q, logvar_q


def stochastic_layer(params, d, a, eps, z_0, config):
    """One sampled path z_{1:T} ~ Π_t q(z_t | z_{t−1}, a_t), with the prior at each step — eq. (5)–(7).

    z_t = mu_q + exp(logvar_q / 2) ⊙ eps_t (reparameterisation); the prior and posterior
    of step t both condition on the sampled z_{t−1}, which is how (7) is estimated.
    d: (T, B, d_dim); a: (T, B, a_width); eps: (T, B, z_dim); z_0: (B, z_dim).
    Returns z, mu_p, logvar_p, mu_q, logvar_q, each (T, B, z_dim).
    """
    z_tm1, steps = z_0, []
    for t in range(len(d)):
        mu_p, logvar_p = prior(params, d[t], z_tm1, config)
        mu_q, logvar_q = posterior(params, a[t], z_tm1, mu_p, config)
        z_t = mu_q + np.exp(0.5 * logvar_q) * eps[t]
        steps.append((z_t, mu_p, logvar_p, mu_q, logvar_q))
        z_tm1 = z_t
    return tuple(stack_arrays(*seq) for seq in zip(*steps))
