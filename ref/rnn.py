"""The RNN baseline of docs/model.md §7: the SRNN without its stochastic layer.

    d_t = GRU_d(d_{t−1}, e(u_t))          eq. (R1), the SRNN's eq. (2) as it is
    p(x_t | d_t) from the `emit` MLP       eq. (R2)

Nothing is latent, so log p(x_{1:T} | u_{1:T}) = Σ_t log p(x_t | d_t) is exact: it is what the
bound functions of `bounds.py` return as this model's ELBO and as its IW bound, for every K.
Time-major (T, B, ·) like `model.py`, whose feature extractor and GRU it shares.
"""
from .model import emission_head, feature_extractor


def emission(params, d, config):
    """p(x_t | d_t) — eq. (R2): logits (Bernoulli) or (mu, logvar) (Gaussian). d: (..., d_dim)."""
    return emission_head(params, d, config)


def deterministic_states(layers, params, u, d_0, config):
    """d_{1:T} — eq. (R1), by `layers` (model.py, or the GRU kernel of fast.py). u: (T, B, x_dim)."""
    return layers.deterministic_layer(params, feature_extractor(params, u, config), d_0)
