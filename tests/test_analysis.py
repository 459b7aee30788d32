"""srnn.analysis: active units and the KL of each dimension of z, against the ELBO's own terms."""
import numpy as np
import pytest

import ref
from ref.errors import ConfigError
from srnn.analysis import ACTIVE, INFORMATIVE, informative_units, latent_usage
from srnn.splits import Split
from tests.strategies import perturbed_params, random_batch

CONFIG = ref.Config(x_dim=5, d_dim=4, z_dim=3, a_dim=4, h_dim=6, residual_q=False)


def pieces(config, seed):
    u, x, mask, _ = random_batch(config, 20, 6, np.random.default_rng(seed))
    return Split(u, x, mask)


@pytest.mark.parametrize("model", ["srnn", "vrnn"])
def test_kl_per_dimension_adds_up_to_the_elbo_kl_per_step(model):
    config = ref.Config(**{**CONFIG.to_dict(), "model": model})
    params, split = perturbed_params(config, seed=1), pieces(config, 2)
    usage = latent_usage(params, config, split, seed=3, batch_size=32)
    eps = np.random.default_rng(3).standard_normal((*split.mask.shape, config.z_dim))  # the same single batch
    _, kl = ref.per_step_terms(params, split.u, split.x, split.mask, eps, config)
    assert np.sum(usage["kl_per_dim"]) == pytest.approx(kl.sum() / split.mask.sum(), rel=1e-12)
    assert all(k >= 0 for k in usage["kl_per_dim"])


def test_a_unit_whose_posterior_mean_ignores_the_data_is_inactive():
    params = perturbed_params(CONFIG, seed=4)
    params["post_mu.out.W"][1] = 0.0  # μ_q of unit 1 is its bias alone, whatever x and z_{t−1}
    usage = latent_usage(params, CONFIG, pieces(CONFIG, 5), seed=6)
    assert usage["activity"][1] == pytest.approx(0.0, abs=1e-12)  # E[μ²] − E[μ]², to round-off
    assert usage["active_units"] == sum(a > ACTIVE for a in usage["activity"]) and usage["activity"][0] > ACTIVE


def test_a_unit_whose_posterior_is_its_prior_is_active_but_not_informative():
    """Why the KL count sits beside Burda et al.'s: with Resq and constant equal variances, unit 2's
    posterior is its prior, which moves with d_t; its posterior mean varies, its KL is zero."""
    config = ref.Config(**{**CONFIG.to_dict(), "residual_q": True})
    params = perturbed_params(config, seed=8)
    params["post_mu.out.W"][2] = params["post_mu.out.b"][2] = 0.0  # μ_q = μ_p + 0
    for head in ("prior_logvar", "post_logvar"):  # σ²_q = σ²_p = exp(b)
        params[f"{head}.out.W"][2], params[f"{head}.out.b"][2] = 0.0, -0.5
    usage = latent_usage(params, config, pieces(config, 9), seed=10)
    assert usage["kl_per_dim"][2] == pytest.approx(0.0, abs=1e-12)
    assert usage["activity"][2] > ACTIVE  # counted active: the prior's mean moves
    count, rest = informative_units(usage["kl_per_dim"])
    assert count == sum(k > INFORMATIVE for k in usage["kl_per_dim"]) and count <= 2
    assert rest == pytest.approx(sum(k for k in usage["kl_per_dim"] if k <= INFORMATIVE), abs=1e-15)


def test_the_rnn_has_no_units_to_count():
    config = ref.Config(model="rnn", x_dim=5, d_dim=4, h_dim=6)
    with pytest.raises(ConfigError, match="no stochastic state"):
        latent_usage(ref.init_params(config, 0), config, pieces(config, 7), seed=0)
