"""The baselines of docs/model.md §7 (RNN) and §8 (VRNN) in ref: facts of their probability
models, beside the tests every model shares (test_model.py, test_fast.py, test_torch.py draw
all three): each model's p(x) sums to one over every piano roll, the sampler draws from it,
the IW bound rises with K, the RNN's bounds are its exact log-likelihood, and a VRNN carries
its whole state in (h, z)."""
import itertools

import numpy as np
import pytest

import ref
from tests.strategies import perturbed_params, random_batch

TINY = dict(x_dim=2, d_dim=3, z_dim=2, a_dim=3, h_dim=4)
# per model, a configuration whose posterior can be made its prior (see posterior_equal_to_prior)
CONFIGS = {"srnn": ref.Config(**TINY, inference="filtering", mlp_layers=0, residual_q=False),
           "vrnn": ref.Config(**TINY, model="vrnn"), "rnn": ref.Config(**TINY, model="rnn")}


def every_piano_roll(T, x_dim):
    """All 2^(T·x_dim) binary (T, x_dim) rolls as a batch (u, x, mask), u_t = x_{t−1}."""
    x = np.array(list(itertools.product([0.0, 1.0], repeat=T * x_dim))).reshape(-1, T, x_dim)
    u = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    return u, x, np.ones(x.shape[:2])


def posterior_equal_to_prior(params, config):
    """The parameters with q(z_t | ·) = p(z_t | ·): each posterior MLP is the prior's, blind to
    e(x_t) by zero columns (the posterior's input is the prior's with e(x_t) inserted after d_t
    or h_t). Then every importance weight is p(x | z) ≤ 1 with z from the prior."""
    if config.model == "rnn":
        return params
    first = "0" if config.mlp_layers else "out"
    q = dict(params)
    for key, value in params.items():
        if key.startswith("prior_"):
            if key.endswith(f".{first}.W"):
                value = np.insert(value, [config.d_dim] * config.e_dim, 0.0, axis=1)
            q[key.replace("prior_", "post_", 1)] = value
    return q


@pytest.mark.parametrize("model", list(CONFIGS))
def test_each_model_is_a_distribution_over_piano_rolls(model):
    """Σ_x p(x) = 1 over all 64 rolls of 3 steps of 2 keys, p(x) estimated by the mean importance
    weight (unbiased; exact for the RNN), the posterior made the prior so that weights are bounded."""
    config = CONFIGS[model]
    params = posterior_equal_to_prior(perturbed_params(config, seed=1, scale=0.5), config)
    u, x, mask = every_piano_roll(3, 2)
    K = 1 if model == "rnn" else 4000
    eps = np.random.default_rng(2).standard_normal((K, *mask.shape, config.z_dim))
    w = np.exp(ref.log_importance_weights(params, u, x, mask, eps, config))  # (K, 64)
    total, stderr = w.mean(0).sum(), np.sqrt(np.sum(w.var(0) / K))
    assert abs(total - 1) < (1e-12 if model == "rnn" else 5 * stderr), (total, stderr)


@pytest.mark.parametrize("model", list(CONFIGS))
def test_the_sampler_draws_from_the_model(model):
    """Frequencies of 20,000 sampled rolls (2 steps, 2 keys) against p(x): exact for the RNN,
    the mean of 20,000 bounded importance weights for the others."""
    config = CONFIGS[model]
    params = posterior_equal_to_prior(perturbed_params(config, seed=3, scale=0.5), config)
    rng = np.random.default_rng(4)
    samples = ref.sample(params, config, *ref.draw_sample_noise(rng, config, 20_000, 2))
    u, x, mask = every_piano_roll(2, 2)
    eps = rng.standard_normal((1 if model == "rnn" else 20_000, *mask.shape, config.z_dim))
    p = np.exp(ref.iw_bound(params, u, x, mask, eps, config))
    index = samples.reshape(len(samples), -1) @ (2 ** np.arange(3, -1, -1))  # roll -> its row in `x`
    frequency = np.bincount(index.astype(int), minlength=16) / len(samples)
    stderr = np.sqrt(p * (1 - p) / len(samples))
    assert np.all(np.abs(frequency - p) < 5 * stderr * (1 if model == "rnn" else np.sqrt(2))), np.c_[frequency, p]


def test_the_rnn_bounds_are_its_log_likelihood_for_every_k_and_kl_weight():
    config = ref.Config(model="rnn", x_dim=5, d_dim=4, h_dim=6)
    params = perturbed_params(config, seed=5)
    rng = np.random.default_rng(6)
    u, x, mask, eps = random_batch(config, 4, 7, rng)
    log_p = ref.elbo(params, u, x, mask, eps, config)
    np.testing.assert_array_equal(ref.elbo(params, u, x, mask, 3 * eps + 1, config, kl_weight=0.2), log_p)
    for K in (1, 7):
        np.testing.assert_allclose(ref.iw_bound(params, u, x, mask, rng.standard_normal((K, *eps.shape)), config),
                                   log_p, rtol=1e-14)
    log_px, kl = ref.per_step_terms(params, u, x, mask, eps, config)
    assert not kl.any()
    np.testing.assert_allclose(log_px.sum(1), log_p, rtol=1e-14)


@pytest.mark.parametrize("model", ["vrnn", "rnn"])
def test_carried_states_split_a_sequence_into_chunks_exactly(model):
    """Truncated BPTT: (h_T, z_T) of the VRNN, d_T of the RNN, are the whole state, so two chunks
    with carried states give the whole sequence's ELBO."""
    config = ref.Config(model=model, x_dim=5, d_dim=4, z_dim=3, h_dim=6)
    params = perturbed_params(config, seed=7)
    u, x, mask, eps = random_batch(config, 4, 10, np.random.default_rng(8), mask=np.ones((4, 10)))
    whole = ref.elbo(params, u, x, mask, eps, config)
    L1, d_last, z_last = ref.elbo_and_states(params, u[:, :4], x[:, :4], mask[:, :4], eps[:, :4], config)
    L2, _, _ = ref.elbo_and_states(params, u[:, 4:], x[:, 4:], mask[:, 4:], eps[:, 4:], config, d_0=d_last,
                                   z_0=z_last)
    np.testing.assert_allclose(L1 + L2, whole, rtol=1e-12)


def test_the_vrnn_iw_bound_rises_with_k_above_its_elbo():
    config = ref.Config(model="vrnn", x_dim=5, d_dim=4, z_dim=3, h_dim=6)
    params = perturbed_params(config, seed=9)
    rng = np.random.default_rng(10)
    u, x, mask, eps = random_batch(config, 8, 6, rng)
    elbo = np.mean([ref.elbo(params, u, x, mask, e, config) for e in rng.standard_normal((200, *eps.shape))])
    bounds = [ref.iw_bound(params, u, x, mask, rng.standard_normal((K, *eps.shape)), config).mean()
              for K in (1, 10, 100, 1000)]
    assert elbo < bounds[1] < bounds[2] < bounds[3], (elbo, bounds)
    assert abs(bounds[0] - elbo) < 0.5  # K = 1 is the ELBO in expectation


def test_the_vrnn_final_states_are_taken_at_each_sequence_last_valid_step():
    config = ref.Config(model="vrnn", x_dim=5, d_dim=4, z_dim=3, h_dim=6)
    params = perturbed_params(config, seed=11)
    u, x, mask, eps = random_batch(config, 4, 7, np.random.default_rng(12))
    _, h_last, z_last = ref.elbo_and_states(params, u, x, mask, eps, config)
    for i in range(4):
        n = int(mask[i].sum())
        _, h_i, z_i = ref.elbo_and_states(params, u[i:i + 1, :n], x[i:i + 1, :n], np.ones((1, n)), eps[i:i + 1, :n],
                                          config)
        np.testing.assert_allclose(h_last[i], h_i[0], rtol=1e-12)
        np.testing.assert_allclose(z_last[i], z_i[0], rtol=1e-12)


def test_parameter_counts_at_the_paper_sizes_are_the_contracts():
    """docs/model.md §4.6, §7.4, §8.5."""
    count = lambda model: sum(int(np.prod(s)) for s in ref.param_shapes(ref.Config(model=model)).values())
    assert (count("srnn"), count("vrnn"), count("rnn")) == (3_255_588, 3_514_788, 1_211_388)
