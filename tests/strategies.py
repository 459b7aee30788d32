"""Shared test inputs: tiny configurations covering every model and every option of the model contract
(docs/model.md §4.2, §7.2, §8.2), and random batches."""
import numpy as np

import ref
from srnn.splits import Dataset, Split

TINY = dict(x_dim=5, d_dim=4, z_dim=3, a_dim=4, h_dim=6)

# Every option of the contract at least once, layer counts 0, 1 and 2, sizes down to 1.
CONFIGS = {
    "paper-options": ref.Config(**TINY),
    "filtering": ref.Config(**TINY, inference="filtering"),
    "filtering-no-layers": ref.Config(**TINY, inference="filtering", mlp_layers=0, embed_layers=0),
    "no-resq": ref.Config(**TINY, residual_q=False),
    "gaussian": ref.Config(**TINY, emission="gaussian"),
    "gaussian-deep": ref.Config(**TINY, emission="gaussian", embed_layers=2, mlp_layers=2, inference="filtering"),
    "no-layers": ref.Config(**TINY, embed_layers=0, mlp_layers=0, residual_q=False),
    "size-one": ref.Config(x_dim=1, d_dim=1, z_dim=1, a_dim=1, h_dim=1),
    # the baselines (docs/model.md §7, §8)
    "vrnn": ref.Config(**TINY, model="vrnn"),
    "vrnn-gaussian-deep": ref.Config(**TINY, model="vrnn", emission="gaussian", embed_layers=2, mlp_layers=2),
    "vrnn-no-layers": ref.Config(**TINY, model="vrnn", embed_layers=0, mlp_layers=0),
    "rnn": ref.Config(**TINY, model="rnn"),
    "rnn-gaussian-no-layers": ref.Config(**TINY, model="rnn", emission="gaussian", embed_layers=0, mlp_layers=0),
}
SRNN_CONFIGS = [name for name, c in CONFIGS.items() if c.model == "srnn"]


def random_mask(rng, B, T):
    """A (B, T) left-aligned mask with random lengths 1..T, at least one row full."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return (np.arange(T)[None, :] < lengths[:, None]).astype(float)


def random_batch(config, B, T, rng, mask=None):
    """(u, x, mask, eps) of the right shapes: binary x for Bernoulli emission, u_t = x_{t−1}."""
    if config.emission == "bernoulli":
        x = (rng.random((B, T, config.x_dim)) < 0.3).astype(float)
    else:
        x = rng.standard_normal((B, T, config.x_dim))
    u = np.concatenate([np.zeros((B, 1, config.x_dim)), x[:, :-1]], axis=1)
    mask = random_mask(rng, B, T) if mask is None else mask
    eps = rng.standard_normal((B, T, config.z_dim))
    return u, x, mask, eps


def perturbed_params(config, seed, scale=0.3):
    """init_params plus noise on every array, so that zero biases do not hide a wrong gradient."""
    rng = np.random.default_rng(seed)
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in ref.init_params(config, seed).items()}


def stream_dataset(streams=4, chunks=3, T=10, seed=0):
    """A small dataset in the srnn2016 layout: train and valid as streams (`chunks` batches of
    `streams` rows, states carried across them), test as 5 whole pieces."""
    rng = np.random.default_rng(seed)

    def split(n, t, stream_layout):
        x = (rng.random((n, t, 88)) < 0.1).astype(float)
        u = np.concatenate([np.zeros((n, 1, 88)), x[:, :-1]], axis=1)
        return Split(u, x, np.ones((n, t)), streams=streams if stream_layout else 0)

    return Dataset("stream-test", "srnn2016", split(streams * chunks, T, True), split(streams * 2, T, True),
                   split(5, T, False))


# ---------------------------------------------------------------------------------------
# Hypothesis strategies: random configurations, parameters and batches
# ---------------------------------------------------------------------------------------

from hypothesis import strategies as st  # noqa: E402  (the plain helpers above need no hypothesis)

from ref.config import EMISSION, INFERENCE, MODELS  # noqa: E402

configs = st.builds(
    ref.Config,
    model=st.sampled_from(MODELS),
    x_dim=st.integers(1, 5), d_dim=st.integers(1, 4), z_dim=st.integers(1, 3), a_dim=st.integers(1, 4),
    h_dim=st.integers(1, 5), embed_layers=st.integers(0, 2), mlp_layers=st.integers(0, 2),
    inference=st.sampled_from(INFERENCE), residual_q=st.booleans(), emission=st.sampled_from(EMISSION),
)


@st.composite
def problems(draw, max_B=4, max_T=7):
    """(config, params, (u, x, mask, eps)): every option, sizes down to 1, random lengths."""
    config = draw(configs)
    B, T = draw(st.integers(1, max_B)), draw(st.integers(1, max_T))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return config, perturbed_params(config, seed), random_batch(config, B, T, rng)
