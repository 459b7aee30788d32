"""The numba fast path computes what the readable path computes: ELBO, every gradient,
carried states, the IW bound, in float64 to round-off and in float32 as accurately; and
each kernel's VJP, one output at a time, against autograd through the readable loop."""
import os
import subprocess
import sys

import autograd
import numpy as np
import pytest
from hypothesis import assume, given

import ref
from tests.strategies import CONFIGS, TINY, perturbed_params, problems, random_batch


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


# ---------------------------------------------------------------------------------------
# Per-kernel VJPs: one random cotangent on one output at a time, against autograd through
# the readable loop, so that a wrong backward term is pinned to its kernel and output
# ---------------------------------------------------------------------------------------


def assert_close(name, got, want, rtol=1e-10, floor=0.0):
    """‖got − want‖∞ ≤ rtol · max(‖want‖∞, floor): the measure of worst_relative_difference
    above, for one array. On failure the message names the array and gives the largest
    absolute difference, where it is, and the largest relative difference, both against
    ‖want‖∞ (what is tested) and entry by entry (for orientation)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{name}: numba gives {got.shape} {got.dtype}, the readable path {want.shape} {want.dtype}"
    assert np.all(np.isfinite(want)), f"{name}: the readable path is not finite; draw other inputs"
    diff = np.abs(got - want)
    scale = max(np.abs(want).max(initial=0.0), floor)
    if diff.max(initial=0.0) <= rtol * scale:  # False where got has a NaN
        return
    i = np.unravel_index(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative, elementwise = diff[i] / scale, np.nanmax(diff / np.abs(want))
    raise AssertionError(
        f"{name}: largest |numba − readable| = {diff[i]:.3e} at index {tuple(int(j) for j in i)} "
        f"(numba {got[i]:.17g}, readable {want[i]:.17g}); relative to max|readable| = {scale:.3e}: "
        f"{relative:.3e} > rtol {rtol:g}; largest elementwise relative difference {elementwise:.3e}")


def assert_vjps_match(fast_fn, readable_fn, inputs, outputs, k, rng):
    """fast_fn and readable_fn map the dict `inputs` (parameters and arrays) to a tuple of
    arrays named `outputs`. For output k alone, one random cotangent g of its shape: the
    forward values and the VJP ∂<g, output_k>/∂input for every entry of `inputs` must
    agree, each to 1e-10 of its own size (the tolerance of the gradient tests above), or
    to 1e-8 of the largest where it is ~0, as worst_relative_difference measures. A failure
    lists every input whose VJP differs."""
    out_fast, out_readable = fast_fn(inputs), readable_fn(inputs)
    assert_close(f"{outputs[k]} (forward)", out_fast[k], out_readable[k])
    g = rng.standard_normal(out_readable[k].shape)
    vjp = lambda fn: autograd.grad(lambda x: np.sum(g * fn(x)[k]))(inputs)
    got, want = vjp(fast_fn), vjp(readable_fn)
    assert set(got) == set(want) == set(inputs)
    floor = 1e-8 * max(np.abs(v).max() for v in want.values())
    assert floor > 0, f"every cotangent of {outputs[k]} is zero: the test would pin nothing"
    failures = []
    for name in inputs:  # every input that fails, not just the first: together they locate the bad term
        try:
            assert_close(f"∂<g, {outputs[k]}>/∂{name}", got[name], want[name], rtol=1e-10, floor=floor)
        except AssertionError as failure:
            failures.append(str(failure))
    if failures:
        raise AssertionError(f"{len(failures)} of {len(inputs)} inputs differ:\n" + "\n".join(failures))


def reads(params, *prefixes):
    """The parameters named `prefix.…`: exactly those a layer reads (it raises KeyError on any other)."""
    return {k: v for k, v in params.items() if k.startswith(tuple(p + "." for p in prefixes))}


def ragged_mask(lengths, T):
    """A (T, B) time-major mask, as model.py takes it, for sequences of the given lengths."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(float)


@pytest.mark.parametrize("d_0", ["zero-d_0", "random-d_0"])
def test_numba_deterministic_layer_vjp_matches_loop(d_0):
    config = CONFIGS["paper-options"]
    rng = np.random.default_rng(10 + (d_0 == "random-d_0"))
    T, B = 6, 3
    inputs = {**reads(perturbed_params(config, seed=5), "gru_d"),
              "e_u": rng.standard_normal((T, B, config.e_dim)),
              "d_0": rng.standard_normal((B, config.d_dim)) if d_0 == "random-d_0" else np.zeros((B, config.d_dim))}
    layer = lambda module: lambda x: (module.deterministic_layer(x, x["e_u"], x["d_0"]),)
    assert_vjps_match(layer(ref.fast), layer(ref.model), inputs, ("d",), 0, rng)


@pytest.mark.parametrize("inference, lengths", [("smoothing", (6, 1, 3)), ("smoothing", (6, 6, 6)), ("filtering", (6, 1, 3))],
                         ids=["smoothing-ragged", "smoothing-full", "filtering"])
def test_numba_inference_network_vjp_matches_loop(inference, lengths):
    """Smoothing runs the GRU kernel backwards with keep = the mask of step t+1, so ragged
    lengths restart rows at their own last step. Filtering goes through no kernel (fast.py
    hands it to model.py); its case pins that it stays so or stays right."""
    config = ref.Config(**TINY, inference=inference)
    rng = np.random.default_rng(len(inference) + sum(lengths))
    T, B = 6, len(lengths)
    inputs = {**reads(perturbed_params(config, seed=6), "gru_a", "filter"),
              "d": rng.standard_normal((T, B, config.d_dim)), "e_x": rng.standard_normal((T, B, config.e_dim))}
    mask = ragged_mask(lengths, T)
    layer = lambda module: lambda x: (module.inference_network(x, x["d"], x["e_x"], mask, config),)
    assert_vjps_match(layer(ref.fast), layer(ref.model), inputs, ("a",), 0, rng)


STOCHASTIC_OUTPUTS = ("z", "mu_p", "logvar_p", "mu_q", "logvar_q")


@pytest.mark.parametrize("output", STOCHASTIC_OUTPUTS)
@pytest.mark.parametrize("var_floor", [0.0, 0.3])
@pytest.mark.parametrize("residual_q", [True, False], ids=["resq", "no-resq"])
@pytest.mark.parametrize("mlp_layers", [0, 1, 2])
def test_numba_stochastic_layer_vjp_of_each_output_matches_loop(mlp_layers, residual_q, var_floor, output):
    """The kernel's code paths: no hidden layer (the first layer is the output layer), one,
    two (the hidden layers W_h); Resq (mu_q = mu_p + MLP); the variance head with and
    without a floor. Differentiated in every prior_* / post_* parameter, d, a and z_0 ≠ 0.
    Not in eps: see test_numba_stochastic_layer_vjp_in_eps_matches_loop."""
    config = ref.Config(**TINY, mlp_layers=mlp_layers, residual_q=residual_q, var_floor=var_floor)
    k = STOCHASTIC_OUTPUTS.index(output)
    rng = np.random.default_rng([mlp_layers, residual_q, int(10 * var_floor), k])
    T, B = 5, 3
    params = reads(perturbed_params(config, seed=7), "prior_mu", "prior_logvar", "post_mu", "post_logvar")
    inputs = {**params, "d": rng.standard_normal((T, B, config.d_dim)), "a": rng.standard_normal((T, B, config.a_dim)),
              "z_0": rng.standard_normal((B, config.z_dim))}
    eps = rng.standard_normal((T, B, config.z_dim))
    layer = lambda module: lambda x: module.stochastic_layer({n: x[n] for n in params}, x["d"], x["a"], eps,
                                                             x["z_0"], config)
    assert_vjps_match(layer(ref.fast), layer(ref.model), inputs, STOCHASTIC_OUTPUTS, k, rng)


def test_numba_stochastic_layer_vjp_in_eps_matches_loop():
    config = CONFIGS["paper-options"]
    rng = np.random.default_rng(8)
    T, B = 4, 2
    params = perturbed_params(config, seed=8)
    d, a = rng.standard_normal((T, B, config.d_dim)), rng.standard_normal((T, B, config.a_dim))
    inputs = {"eps": rng.standard_normal((T, B, config.z_dim))}
    layer = lambda module: lambda x: module.stochastic_layer(params, d, a, x["eps"], np.zeros((B, config.z_dim)),
                                                             config)
    assert_vjps_match(layer(ref.fast), layer(ref.model), inputs, STOCHASTIC_OUTPUTS, 0, rng)


def gru_cell_loop(proj, W_hh, b_hh, h_0, keep, reverse):
    """The readable twin of fast._gru_scan's h: h_t = gru_cell(keep_t ⊙ h_prev, proj_t), forwards
    or backwards in time, from h_0."""
    p, T = {"g.W_hh": W_hh, "g.b_hh": b_hh}, len(proj)
    h, out = h_0, [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        h = ref.nn.gru_cell(p, "g", h * keep[t][:, None], proj[t])
        out[t] = h
    return ref.nn.stack_arrays(*out)


@pytest.mark.parametrize("reverse", [False, True], ids=["forwards", "backwards"])
def test_numba_gru_scan_vjp_matches_a_gru_cell_loop_with_restarts_and_an_initial_state(reverse):
    """The primitive itself, in what the public layers never ask of it: restarts (keep = 0)
    anywhere, going forwards, and a nonzero initial state going backwards. Its second
    output, the gates, is the backward pass's record, not a result: not differentiated."""
    from ref.fast import _gru_scan

    rng = np.random.default_rng(20 + reverse)
    T, B, H = 6, 3, 4
    keep = (rng.random((T, B)) < 0.7).astype(float)
    keep[:, 0] = 1.0  # one row never restarts
    inputs = {"proj": rng.standard_normal((T, B, 3 * H)), "W_hh": 0.5 * rng.standard_normal((3 * H, H)),
              "b_hh": 0.3 * rng.standard_normal(3 * H), "h_0": rng.standard_normal((B, H))}
    args = lambda x: (x["proj"], x["W_hh"], x["b_hh"], x["h_0"], keep, reverse)
    assert_vjps_match(lambda x: (_gru_scan(*args(x))[0],), lambda x: (gru_cell_loop(*args(x)),), inputs, ("h",), 0,
                      rng)
