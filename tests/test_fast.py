"""The numba fast path computes what the readable path computes: ELBO, every gradient,
carried states, the IW bound, in float64 to round-off and in float32 as accurately."""
import os
import subprocess
import sys

import autograd
import numpy as np
import pytest
from hypothesis import assume, given

import ref
from tests.strategies import CONFIGS, perturbed_params, problems, random_batch


def value_and_grad(params, batch, config, backend, kl_weight=0.7):
    f = lambda p: np.sum(ref.elbo(p, *batch, config, kl_weight=kl_weight, backend=backend))
    with np.errstate(over="ignore", invalid="ignore"):  # see finite() below
        return ref.elbo(params, *batch, config, kl_weight=kl_weight, backend=backend), autograd.grad(f)(params)


def finite(L, grads):
    """Random weights with no hidden layer (mlp_layers = 0) can make z_t grow without
    bound, z_t ∝ exp(c z_{t−1}); such draws overflow on both paths and are skipped."""
    return np.all(np.isfinite(L)) and all(np.all(np.isfinite(g)) for g in grads.values())


def worst_relative_difference(a, b):
    """max over arrays of ‖a − b‖∞ / ‖a‖∞, each array measured against its own size, or
    against 1e-8 of the largest array where its own is ~0 (an all-zero gradient must match
    to that absolute level)."""
    floor = 1e-8 * max(np.abs(v).max() for v in a.values())
    return max(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), floor) for k in a)


@given(problems())
def test_numba_elbo_and_every_gradient_match_the_readable_path_in_float64(problem):
    config, params, batch = problem
    L_np, g_np = value_and_grad(params, batch, config, "numpy")
    assume(finite(L_np, g_np))
    L_nb, g_nb = value_and_grad(params, batch, config, "numba")
    np.testing.assert_allclose(L_nb, L_np, rtol=1e-10)
    assert set(g_nb) == set(g_np)
    assert worst_relative_difference(g_np, g_nb) < 1e-10


@given(problems())
def test_numba_in_float32_is_as_accurate_as_the_readable_path_in_float32(problem):
    """Both float32 paths round differently, so neither equals the other bit for bit; what
    must hold is that the kernels lose no more accuracy than the readable loops do. Against
    the float64 result, the kernel's error may be at most 4x the readable path's, plus
    200 float32 roundings of the result's scale (for draws where the readable error is ~0).
    A gradient's scale is that of the whole gradient: a small entry that is a difference of
    large terms carries their rounding, on either path. Draws whose float64 results pass
    1e10 (the runaway z_t of finite() above, short of overflow in float64) overflow float32's
    intermediates on both paths and are skipped: there is no float32 accuracy to compare."""
    config, params, batch = problem
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    L64, g64 = value_and_grad(params, batch, config, "numpy")
    assume(finite(L64, g64))
    scale = max(np.abs(g).max() for g in g64.values())
    assume(max(np.abs(L64).max(), scale) < 1e10)
    (L_np, g_np), (L_nb, g_nb) = (value_and_grad(p32, batch, config, be) for be in ("numpy", "numba"))
    assume(finite(L_np, g_np))  # below 1e10 too, a runaway draw can overflow the readable float32 path
    assert L_nb.dtype == np.float32 and all(g.dtype == np.float32 for g in g_nb.values())
    eps32 = np.finfo(np.float32).eps
    err = lambda L: np.abs(L - L64).max()
    assert err(L_nb) <= 4 * err(L_np) + 200 * eps32 * np.abs(L64).max()
    for k in g64:
        e_nb, e_np = np.abs(g_nb[k] - g64[k]).max(), np.abs(g_np[k] - g64[k]).max()
        assert e_nb <= 4 * e_np + 200 * eps32 * scale, (k, e_nb, e_np, scale)


@pytest.mark.parametrize("name", ["paper-options", "filtering", "gaussian-deep"])
def test_numba_carries_initial_and_final_states_like_the_readable_path(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(1)
    params = perturbed_params(config, seed=2)
    u, x, mask, eps = random_batch(config, 3, 6, rng)
    d_0, z_0 = rng.standard_normal((3, config.d_dim)), rng.standard_normal((3, config.z_dim))

    def run(backend):
        f = lambda p: ref.elbo_and_states(p, u, x, mask, eps, config, 1.0, d_0, z_0, backend)
        return f(params), autograd.grad(lambda p: np.sum(f(p)[0]))(params)

    (states_np, g_np), (states_nb, g_nb) = run("numpy"), run("numba")
    for a, b in zip(states_np, states_nb):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
    assert worst_relative_difference(g_np, g_nb) < 1e-10


@pytest.mark.parametrize("name", ["paper-options", "no-layers", "gaussian"])
def test_numba_iw_bound_and_its_gradient_match(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(3)
    params = perturbed_params(config, seed=4)
    u, x, mask, _ = random_batch(config, 3, 5, rng)
    eps = rng.standard_normal((6, 3, 5, config.z_dim))
    f = lambda p, be: np.sum(ref.iw_bound(p, u, x, mask, eps, config, backend=be))
    np.testing.assert_allclose(ref.iw_bound(params, u, x, mask, eps, config, backend="numba"),
                               ref.iw_bound(params, u, x, mask, eps, config), rtol=1e-10)
    assert worst_relative_difference(autograd.grad(f)(params, "numpy"), autograd.grad(f)(params, "numba")) < 1e-10


def test_kernel_nonlinearity_and_its_slope_match_the_readable_ones_at_the_kinks():
    from ref.fast import _df, _f
    from ref.nn import clipped_leaky_relu

    points = np.array([-10.0, -9.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0])
    np.testing.assert_array_equal([_f(v, 3.0) for v in points], clipped_leaky_relu(points, 3.0))
    slopes = autograd.elementwise_grad(lambda v: clipped_leaky_relu(v, 3.0))(points)
    np.testing.assert_array_equal(slopes, [0, 0, 1 / 3, 1 / 3, 1 / 3, 1, 0, 0])
    np.testing.assert_array_equal([_df(v, 3.0) for v in points], slopes)


def test_unknown_backend_is_a_config_error():
    config = CONFIGS["paper-options"]
    with pytest.raises(ref.ConfigError, match="unknown backend 'cuda'"):
        ref.elbo(ref.init_params(config, 0), *random_batch(config, 2, 3, np.random.default_rng(0)), config,
                 backend="cuda")


def test_kernels_run_as_plain_python_with_the_jit_disabled():
    """NUMBA_DISABLE_JIT=1 turns the kernels into debuggable Python that computes the same."""
    code = ("import numpy as np, ref; from tests.strategies import CONFIGS, perturbed_params, random_batch\n"
            "c = CONFIGS['paper-options']; p = perturbed_params(c, 0)\n"
            "b = random_batch(c, 2, 4, np.random.default_rng(0))\n"
            "np.testing.assert_allclose(ref.elbo(p, *b, c, backend='numba'), ref.elbo(p, *b, c), rtol=1e-12)\n"
            "import ref.fast; assert not hasattr(ref.fast._gru_forward, 'signatures')\n")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
