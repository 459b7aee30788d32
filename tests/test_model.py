"""The reference SRNN: parameters, gradients, masking, the KL and the IW bound, numerical safety."""
import autograd
import numpy as np
import pytest
from scipy import stats

import ref
from ref.distributions import bernoulli_log_prob, gaussian_kl, gaussian_log_prob
from ref.model import deterministic_layer, feature_extractor, stochastic_layer
from ref.nn import variance_head
from tests.strategies import CONFIGS, perturbed_params, random_batch

B, T = 3, 6


def total_elbo(params, batch, config, kl_weight=0.7):
    return np.sum(ref.elbo(params, *batch, config, kl_weight=kl_weight))


def test_parameter_names_are_spec_names():
    names = set(ref.init_params(ref.Config(), 0))
    gru = lambda g: {f"{g}.W_ih", f"{g}.W_hh", f"{g}.b_ih", f"{g}.b_hh"}
    mlp = lambda m: {f"{m}.0.W", f"{m}.0.b", f"{m}.out.W", f"{m}.out.b"}
    expected = ({"embed.0.W", "embed.0.b", "embed.1.W", "embed.1.b"} | gru("gru_d") | gru("gru_a")
                | mlp("prior_mu") | mlp("prior_logvar") | mlp("post_mu") | mlp("post_logvar") | mlp("emit"))
    assert names == expected
    gaussian = set(ref.init_params(ref.Config(emission="gaussian", inference="filtering", mlp_layers=2), 0))
    assert {"emit.mu.W", "emit.mu.b", "emit.logvar.W", "emit.logvar.b", "filter.0.W", "filter.1.b"} <= gaussian
    assert not any(n.startswith(("emit.out", "gru_a")) for n in gaussian)


def test_initialisation_is_orthogonal_glorot_and_zero():
    config = ref.Config(x_dim=88, d_dim=30, z_dim=10, a_dim=20, h_dim=50)
    params = ref.init_params(config, 0)
    for gate in np.split(params["gru_d.W_hh"], 3):
        np.testing.assert_allclose(gate @ gate.T, np.eye(30), atol=1e-12)
    for gate in np.split(params["gru_a.W_ih"], 3):  # (20, 30 + 50): orthonormal rows
        np.testing.assert_allclose(gate @ gate.T, np.eye(20), atol=1e-12)
    W = params["embed.0.W"]
    assert abs(W.std() / np.sqrt(2 / sum(W.shape)) - 1) < 0.05
    assert all(np.all(v == 0) for k, v in params.items() if k.endswith((".b", ".b_ih", ".b_hh")))
    assert all(np.array_equal(params[k], v) for k, v in ref.init_params(config, 0).items())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_autograd_gradient_matches_central_differences(name):
    """For every parameter array, ∇L · v equals (L(θ + hv) − L(θ − hv)) / 2h along a random v,
    to the O(h²) truncation plus the round-off ε|L|/h of the difference quotient."""
    config = CONFIGS[name]
    rng = np.random.default_rng(1)
    params = perturbed_params(config, seed=2)
    batch = random_batch(config, B, T, rng)
    grad = autograd.grad(total_elbo)(params, batch, config)
    assert set(grad) == set(params)
    h = 1e-6  # small enough that a step rarely crosses a kink of the clipped leaky ReLU
    roundoff = 4 * np.finfo(float).eps * abs(total_elbo(params, batch, config)) / h
    for key in params:
        v = rng.standard_normal(params[key].shape)
        shifted = lambda s: total_elbo({**params, key: params[key] + s * h * v}, batch, config)
        numeric = (shifted(1) - shifted(-1)) / (2 * h)
        analytic = np.sum(grad[key] * v)
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)) + roundoff, (key, numeric, analytic)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["paper-options", "filtering", "gaussian"])
def test_padded_steps_change_nothing(name, backend):
    config = CONFIGS[name]
    rng = np.random.default_rng(3)
    params = perturbed_params(config, seed=4)
    u, x, mask, eps = random_batch(config, 4, 8, rng)
    pad = (mask == 0)[..., None]
    junk = lambda a: np.where(pad, 1e3 * rng.standard_normal(a.shape), a)  # any finite values
    batch2 = (junk(u), junk(x), mask, junk(eps))
    elbo = lambda p, batch: ref.elbo(p, *batch, config, kl_weight=0.7, backend=backend)
    assert np.array_equal(elbo(params, (u, x, mask, eps)), elbo(params, batch2))
    g1 = autograd.grad(lambda p: np.sum(elbo(p, (u, x, mask, eps))))(params)
    g2 = autograd.grad(lambda p: np.sum(elbo(p, batch2)))(params)
    assert all(np.array_equal(g1[k], g2[k]) for k in params)


@pytest.mark.parametrize("name", ["paper-options", "no-resq", "gaussian-deep"])
def test_a_sequence_does_not_depend_on_the_other_rows(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(5)
    params = perturbed_params(config, seed=6)
    u, x, mask, eps = random_batch(config, 5, 9, rng)
    together = ref.elbo(params, u, x, mask, eps, config)
    for i in range(5):
        n = int(mask[i].sum())
        alone = ref.elbo(params, u[i:i + 1, :n], x[i:i + 1, :n], mask[i:i + 1, :n], eps[i:i + 1, :n], config)
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-12)


def test_filtering_elbo_splits_across_chunks_with_carried_states():
    """Truncated BPTT: with filtering, a_t depends on step t only, so two chunks whose
    states are carried over give exactly the ELBO of the whole sequence."""
    config = CONFIGS["filtering"]
    rng = np.random.default_rng(7)
    params = perturbed_params(config, seed=8)
    u, x, mask, eps = random_batch(config, 4, 10, rng, mask=np.ones((4, 10)))
    whole = ref.elbo(params, u, x, mask, eps, config)
    L1, d_last, z_last = ref.elbo_and_states(params, u[:, :4], x[:, :4], mask[:, :4], eps[:, :4], config)
    L2, _, _ = ref.elbo_and_states(params, u[:, 4:], x[:, 4:], mask[:, 4:], eps[:, 4:], config,
                                   d_0=d_last, z_0=z_last)
    np.testing.assert_allclose(L1 + L2, whole, rtol=1e-12)


def test_final_states_are_taken_at_each_sequence_last_valid_step():
    config = CONFIGS["paper-options"]
    rng = np.random.default_rng(9)
    params = perturbed_params(config, seed=10)
    u, x, mask, eps = random_batch(config, 4, 7, rng)
    _, d_last, z_last = ref.elbo_and_states(params, u, x, mask, eps, config)
    for i in range(4):
        n = int(mask[i].sum())
        _, d_i, z_i = ref.elbo_and_states(params, u[i:i + 1, :n], x[i:i + 1, :n], np.ones((1, n)),
                                          eps[i:i + 1, :n], config)
        np.testing.assert_allclose(d_last[i], d_i[0], rtol=1e-12)
        np.testing.assert_allclose(z_last[i], z_i[0], rtol=1e-12)


def test_gaussian_kl_is_zero_for_equal_and_matches_monte_carlo():
    rng = np.random.default_rng(11)
    mu_q, lv_q, mu_p, lv_p = rng.standard_normal((4, 3))
    assert gaussian_kl(mu_q, lv_q, mu_q, lv_q) == 0.0
    z = mu_q + np.exp(0.5 * lv_q) * rng.standard_normal((400_000, 3))
    mc = np.mean(gaussian_log_prob(z, mu_q, lv_q) - gaussian_log_prob(z, mu_p, lv_p))
    assert gaussian_kl(mu_q, lv_q, mu_p, lv_p) > 0
    assert abs(mc - gaussian_kl(mu_q, lv_q, mu_p, lv_p)) < 0.02


def test_log_densities_match_scipy():
    rng = np.random.default_rng(12)
    x, mu, lv = rng.standard_normal((3, 7))
    np.testing.assert_allclose(gaussian_log_prob(x, mu, lv), stats.norm.logpdf(x, mu, np.exp(lv / 2)).sum())
    bits, logits = (rng.random(7) < 0.5).astype(float), rng.standard_normal(7)
    np.testing.assert_allclose(bernoulli_log_prob(bits, logits), stats.bernoulli.logpmf(bits, 1 / (1 + np.exp(-logits))).sum())


def test_elbo_has_no_kl_when_posterior_equals_prior():
    """q = p (post_mu outputs 0 with Resq, equal constant log-variances): L is the reconstruction alone."""
    config = ref.Config(**CONFIGS["paper-options"].__dict__ | {"residual_q": True})
    params = perturbed_params(config, seed=13)
    for mlp in ("prior_logvar", "post_logvar"):
        params[f"{mlp}.out.W"] = np.zeros_like(params[f"{mlp}.out.W"])
        params[f"{mlp}.out.b"] = np.full(config.z_dim, -0.4)
    params["post_mu.out.W"], params["post_mu.out.b"] = (np.zeros_like(params[k]) for k in ("post_mu.out.W", "post_mu.out.b"))
    batch = random_batch(config, B, T, np.random.default_rng(14))
    np.testing.assert_array_equal(ref.elbo(params, *batch, config, kl_weight=1.0),
                                  ref.elbo(params, *batch, config, kl_weight=0.0))


def test_kl_weight_scales_only_the_kl_term():
    config = CONFIGS["paper-options"]
    params = perturbed_params(config, seed=15)
    batch = random_batch(config, B, T, np.random.default_rng(16))
    L0, L1, L_half = (ref.elbo(params, *batch, config, kl_weight=w) for w in (0.0, 1.0, 0.5))
    assert np.all(L1 < L0)  # the KL is positive
    np.testing.assert_allclose(L_half, (L0 + L1) / 2, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["paper-options", "filtering-no-layers", "gaussian-deep"])
def test_per_step_terms_are_the_terms_that_the_elbo_sums(name, backend):
    """Eq. (6): L_i = Σ_t [log p(x_t | z_t, d_t) − β KL_t], zero on padded steps, KL_t ≥ 0, with carried states."""
    config = CONFIGS[name]
    params = perturbed_params(config, seed=17)
    rng = np.random.default_rng(18)
    u, x, mask, eps = random_batch(config, B, T, rng)
    d_0, z_0 = rng.standard_normal((B, config.d_dim)), rng.standard_normal((B, config.z_dim))
    log_px, kl = ref.per_step_terms(params, u, x, mask, eps, config, d_0, z_0, backend=backend)
    assert log_px.shape == kl.shape == (B, T)
    assert np.all(log_px[mask == 0] == 0) and np.all(kl[mask == 0] == 0)
    assert np.all(kl[mask == 1] >= 0), kl.min()
    L = ref.elbo_and_states(params, u, x, mask, eps, config, 0.3, d_0, z_0, backend=backend)[0]
    np.testing.assert_allclose(np.sum(log_px - 0.3 * kl, axis=1), L, rtol=1e-12)


def test_one_path_iw_weight_averages_to_the_elbo():
    """E_eps[log w] = ELBO: the single-path log weight is an unbiased estimate of L."""
    config = CONFIGS["paper-options"]
    params = perturbed_params(config, seed=17, scale=0.1)
    rng = np.random.default_rng(18)
    u, x, mask, _ = random_batch(config, 2, 5, rng)
    eps = rng.standard_normal((20_000, 2, 5, config.z_dim))
    log_w = ref.log_importance_weights(params, u, x, mask, eps, config)
    elbos = np.mean([ref.elbo(params, u, x, mask, e, config) for e in eps[:2000]], axis=0)
    stderr = log_w.std(axis=0) / np.sqrt(len(log_w))
    assert np.all(np.abs(log_w.mean(axis=0) - elbos) < 5 * stderr + 0.05), (log_w.mean(0), elbos)


def test_iw_bound_is_above_the_elbo_and_grows_with_k_on_teacher_data():
    from srnn.synthetic import TEACHER_CONFIG, load_synthetic, teacher_params
    test = load_synthetic().test
    params, rng = teacher_params(), np.random.default_rng(19)
    batch = next(test.batches(32))
    bounds = []
    for K in (1, 10, 100):
        eps = rng.standard_normal((K, *batch.mask.shape, TEACHER_CONFIG.z_dim))
        bounds.append(ref.iw_bound(params, batch.u, batch.x, batch.mask, eps, TEACHER_CONFIG).mean())
    eps = rng.standard_normal((*batch.mask.shape, TEACHER_CONFIG.z_dim))
    elbo = ref.elbo(params, batch.u, batch.x, batch.mask, eps, TEACHER_CONFIG).mean()
    assert elbo < bounds[1] < bounds[2], (elbo, bounds)
    assert bounds[0] < bounds[1]


@pytest.mark.parametrize("scale, T", [(1.0, 500), (10.0, 300)], ids=["long-sequence", "extreme-parameters"])
def test_elbo_and_gradient_stay_finite(scale, T):
    """No NaN or inf from long sequences, or from weights 10x the initial scale with saturated notes."""
    config = ref.Config(x_dim=8, d_dim=6, z_dim=3, a_dim=6, h_dim=8)
    rng = np.random.default_rng(22)
    params = {k: scale * (v + 0.3 * rng.standard_normal(v.shape)) for k, v in ref.init_params(config, 0).items()}
    params["emit.out.b"] = params["emit.out.b"] + 50.0 * scale  # logσ of saturated logits must not give log 0
    batch = random_batch(config, 2, T, rng, mask=np.ones((2, T)))
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # not hidden inside, either
        L, grad = autograd.value_and_grad(total_elbo)(params, batch, config)
        L_long = ref.elbo(params, *random_batch(config, 2, 10 * T, rng, mask=np.ones((2, 10 * T))), config)
    assert np.isfinite(L) and np.all(np.isfinite(L_long))
    assert all(np.all(np.isfinite(g)) for g in grad.values())


def test_variance_head_is_stable_at_the_extremes():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(variance_head(np.array([-1e4, 0.0, 50.0, 1e4]), 1e-6),
                                   [np.log(1e-6), np.log(1 + 1e-6), 50.0, 1e4])


def test_float32_parameters_compute_in_float32():
    config = CONFIGS["paper-options"]
    params = {k: v.astype(np.float32) for k, v in perturbed_params(config, seed=23).items()}
    batch = random_batch(config, B, T, np.random.default_rng(24))
    L32 = ref.elbo(params, *batch, config)
    assert L32.dtype == np.float32
    L64 = ref.elbo({k: v.astype(float) for k, v in params.items()}, *batch, config)
    np.testing.assert_allclose(L32, L64, rtol=1e-4)


def test_sampler_paths_are_the_model_paths():
    """Ancestral sampling and the ELBO's recurrences agree: the d_t of a sampled piece are
    the deterministic layer run on its own inputs, and with the teacher (q = p) the
    posterior path driven by the sampler's noise is the sampled z path."""
    from srnn.synthetic import TEACHER_CONFIG as config, teacher_params
    params, rng = teacher_params(), np.random.default_rng(25)
    eps_z, noise_x = ref.draw_sample_noise(rng, config, 3, 12)
    x, d, z = ref.sample(params, config, eps_z, noise_x, return_states=True)
    assert set(np.unique(x)) <= {0.0, 1.0} and x.shape == (3, 12, config.x_dim)
    u = np.concatenate([np.zeros((3, 1, config.x_dim)), x[:, :-1]], axis=1).swapaxes(0, 1)
    d_model = deterministic_layer(params, feature_extractor(params, u, config), np.zeros((3, config.d_dim)))
    np.testing.assert_allclose(d_model, d.swapaxes(0, 1), rtol=1e-12)
    a = np.zeros((12, 3, config.a_dim))  # the teacher's q ignores a_t
    z_q = stochastic_layer(params, d_model, a, eps_z.swapaxes(0, 1), np.zeros((3, config.z_dim)), config)[0]
    np.testing.assert_allclose(z_q, z.swapaxes(0, 1), rtol=1e-12)
