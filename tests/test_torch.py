"""torch_impl's models (the SRNN, the VRNN, the RNN: `model_for(config)`) compute what ref computes:
the ELBO and every gradient, carried states, the IW bound, sampling, checkpoints both ways, in float64
to round-off and in float32 as accurately as ref; padding changes nothing. On a CUDA GPU (when there
is one): the same in float64 and float32, and a bf16 autocast ELBO close to float32. Bad input fails
as ref fails: tests/test_bad_inputs.py."""
import autograd
import numpy as np
import pytest
from hypothesis import assume, given

torch = pytest.importorskip("torch")  # torch is an optional dependency (pyproject's "torch" extra)

import ref  # noqa: E402
from srnn import checkpoint  # noqa: E402
from tests.strategies import CONFIGS, perturbed_params, problems, random_batch  # noqa: E402
from tests.test_fast import finite, value_and_grad, worst_relative_difference  # noqa: E402
from torch_impl import MODELS, model_for  # noqa: E402
from torch_impl.model import contract_name  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
EPS32 = np.finfo(np.float32).eps


def module(config, params, dtype=torch.float64, device="cpu"):
    """The module of config.model in `dtype` on `device`, holding `params` (contract names)."""
    return model_for(config).to(device=device, dtype=dtype).load_params(params)


def tensors(model, *arrays):
    """NumPy arrays as tensors of the model's dtype and device (the contract's calling convention, docs/model.md §6)."""
    p = next(model.parameters())
    return tuple(torch.as_tensor(np.asarray(a)).to(dtype=p.dtype, device=p.device) for a in arrays)


def numpy_of(t):
    return t.detach().cpu().numpy()


def spec_grads(model):
    """Each parameter's .grad under its contract name (zeros where backward never reached it)."""
    return {contract_name(k): numpy_of(p.grad if p.grad is not None else torch.zeros_like(p))
            for k, p in model.named_parameters()}


def torch_value_and_grad(model, batch, kl_weight=0.7):
    """The per-sequence ELBO and the gradient of Σ L under contract names, as NumPy arrays."""
    model.zero_grad(set_to_none=True)
    L = model.elbo(*tensors(model, *batch), kl_weight=kl_weight)
    L.sum().backward()
    return numpy_of(L), spec_grads(model)


def float32_reference(params, batch, config):
    """ref's float64 result, and ref's own float32 result (parameters cast to float32):
    (L64, g64, L32, g32)."""
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    return (*value_and_grad(params, batch, config, "numpy"), *value_and_grad(p32, batch, config, "numpy"))


def assert_float32_as_accurate_as_ref(reference, L_t, g_t):
    """torch's float32 error against ref's float64 result is at most 4x ref's own float32 error
    plus 200 float32 roundings of the result's scale (test_fast's criterion; see
    test_torch_in_float32_is_as_accurate_as_ref_in_float32)."""
    L64, g64, L32, g32 = reference
    scale = max(np.abs(g).max() for g in g64.values())
    assert L_t.dtype == np.float32 and all(g.dtype == np.float32 for g in g_t.values())
    e_t, e_ref = np.abs(L_t - L64).max(), np.abs(L32 - L64).max()
    assert e_t <= 4 * e_ref + 200 * EPS32 * np.abs(L64).max(), ("elbo", e_t, e_ref, np.abs(L64).max())
    for k in g64:
        e_t, e_ref = np.abs(g_t[k] - g64[k]).max(), np.abs(g32[k] - g64[k]).max()
        assert e_t <= 4 * e_ref + 200 * EPS32 * scale, (k, e_t, e_ref, scale)


# ---------------------------------------------------------------------------------------
# The ELBO and its gradients
# ---------------------------------------------------------------------------------------

@given(problems())
def test_torch_elbo_and_every_gradient_match_ref_in_float64(problem):
    """Same parameters, data, mask and noise: the same per-sequence ELBO and the same gradient
    of Σ L for every parameter, to 1e-8 relative (both paths are float64; what is left is the
    round-off of different but equivalent orders of summation, ~1e-12 in practice)."""
    config, params, batch = problem
    L_ref, g_ref = value_and_grad(params, batch, config, "numpy")
    assume(finite(L_ref, g_ref))
    L_t, g_t = torch_value_and_grad(module(config, params), batch)
    np.testing.assert_allclose(L_t, L_ref, rtol=1e-8)
    assert set(g_t) == set(g_ref)
    assert worst_relative_difference(g_ref, g_t) < 1e-8, worst_relative_difference(g_ref, g_t)


@given(problems())
def test_torch_in_float32_is_as_accurate_as_ref_in_float32(problem):
    """Neither float32 path equals the other bit for bit (torch splits and fuses the products
    of the z loop, computes the Bernoulli term as binary_cross_entropy_with_logits, and sums
    in another order); what must hold is that torch loses no more accuracy than ref does.
    Against ref's float64 result, torch's float32 error may be at most 4x ref's float32
    error, plus 200 float32 roundings of the result's scale (for draws where ref's error is
    ~0); a gradient's scale is that of the whole gradient, since a small entry that is a
    difference of large terms carries their rounding on either path. As in test_fast, draws
    whose float64 results pass 1e10 (runaway z_t, see finite()) overflow float32
    intermediates on both paths and are skipped; so are the rarer draws whose float64
    results stay below 1e10 but whose float32 intermediates still overflow on ref's own
    float32 path (one found: L = −2.9e6, NaN on all three float32 paths): there too there is no
    float32 accuracy to compare."""
    config, params, batch = problem
    reference = L64, g64, L32, g32 = float32_reference(params, batch, config)
    assume(finite(L64, g64))
    assume(max(np.abs(L64).max(), max(np.abs(g).max() for g in g64.values())) < 1e10)
    assume(finite(L32, g32))
    L_t, g_t = torch_value_and_grad(module(config, params, torch.float32), batch)
    assert_float32_as_accurate_as_ref(reference, L_t, g_t)


@pytest.mark.parametrize("name", ["paper-options", "filtering", "gaussian-deep", "no-layers",
                                  "vrnn", "vrnn-gaussian-deep", "rnn", "rnn-gaussian-no-layers"])
def test_torch_carries_initial_and_final_states_like_ref(name):
    """elbo_and_states from given (d_0, z_0): L, d_{T_i} and z_{T_i} agree, and so does the
    gradient of Σ L + r_d·d_last + r_z·z_last for every parameter (the final states enter the
    objective, so their backward paths are checked too). ref takes d_0, z_0 as plain arrays,
    so torch's gradient with respect to them is checked against ref's central differences
    along a random direction, to O(h²) plus the round-off ε|f|/h of the quotient."""
    config = CONFIGS[name]
    rng = np.random.default_rng(1)
    params = perturbed_params(config, seed=2)
    u, x, mask, eps = random_batch(config, 3, 6, rng)
    d_0, z_0 = rng.standard_normal((3, config.d_dim)), rng.standard_normal((3, config.z_dim))
    r_d, r_z = rng.standard_normal((3, config.d_dim)), rng.standard_normal((3, config.z_dim))

    def ref_objective(p, d_0=d_0, z_0=z_0):
        L, d_last, z_last = ref.elbo_and_states(p, u, x, mask, eps, config, 0.7, d_0, z_0)
        return np.sum(L) + np.sum(r_d * d_last) + np.sum(r_z * z_last)

    model = module(config, params)
    d0_t, z0_t = (torch.tensor(v, requires_grad=True) for v in (d_0, z_0))
    L, d_last, z_last = model.elbo_and_states(*tensors(model, u, x, mask, eps), 0.7, d0_t, z0_t)
    (L.sum() + (torch.as_tensor(r_d) * d_last).sum() + (torch.as_tensor(r_z) * z_last).sum()).backward()

    states_ref = ref.elbo_and_states(params, u, x, mask, eps, config, 0.7, d_0, z_0)
    for what, a, b in zip(("L", "d_last", "z_last"), states_ref, (L, d_last, z_last)):
        np.testing.assert_allclose(numpy_of(b), a, rtol=1e-10, atol=1e-14, err_msg=what)
    assert worst_relative_difference(autograd.grad(ref_objective)(params), spec_grads(model)) < 1e-10

    h = 1e-6
    roundoff = 4 * np.finfo(float).eps * abs(ref_objective(params)) / h
    for name_0, value, grad in (("d_0", d_0, d0_t.grad), ("z_0", z_0, z0_t.grad)):
        v = rng.standard_normal(value.shape)
        shifted = lambda s: ref_objective(params, **{name_0: value + s * h * v})
        numeric, analytic = (shifted(1) - shifted(-1)) / (2 * h), np.sum(numpy_of(grad) * v)
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)) + roundoff, (name_0, numeric, analytic)


@pytest.mark.parametrize("name, K, with_states", [
    ("paper-options", 1, False), ("paper-options", 4, True), ("no-layers", 4, False),
    ("gaussian", 4, False), ("filtering-no-layers", 1, False),
    ("vrnn", 1, False), ("vrnn", 4, True), ("vrnn-gaussian-deep", 4, False), ("vrnn-no-layers", 4, True),
    ("rnn", 4, True), ("rnn-gaussian-no-layers", 1, False),
])
def test_torch_iw_bound_log_weights_and_gradient_match_ref(name, K, with_states):
    config = CONFIGS[name]
    rng = np.random.default_rng(3)
    params = perturbed_params(config, seed=4)
    u, x, mask, _ = random_batch(config, 3, 5, rng)
    eps = rng.standard_normal((K, 3, 5, config.z_dim))
    states = (rng.standard_normal((3, config.d_dim)), rng.standard_normal((3, config.z_dim))) if with_states \
        else (None, None)
    model = module(config, params)
    inputs = tensors(model, u, x, mask, eps)
    states_t = tuple(None if s is None else torch.as_tensor(s) for s in states)

    log_w = ref.log_importance_weights(params, u, x, mask, eps, config, *states)
    np.testing.assert_allclose(numpy_of(model.log_importance_weights(*inputs, *states_t)), log_w, rtol=1e-10)
    bound = model.iw_bound(*inputs, *states_t)
    np.testing.assert_allclose(numpy_of(bound), ref.iw_bound(params, u, x, mask, eps, config, *states), rtol=1e-10)
    bound.sum().backward()
    g_ref = autograd.grad(lambda p: np.sum(ref.iw_bound(p, u, x, mask, eps, config, *states)))(params)
    assert worst_relative_difference(g_ref, spec_grads(model)) < 1e-10


# ---------------------------------------------------------------------------------------
# Sampling, parameters and checkpoints
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, primer", [
    ("paper-options", False), ("paper-options", True), ("no-resq", True),
    ("gaussian", False), ("gaussian-deep", True), ("size-one", True),
    ("vrnn", False), ("vrnn", True), ("vrnn-gaussian-deep", True), ("vrnn-no-layers", False),
    ("rnn", True), ("rnn-gaussian-no-layers", False),
])
def test_torch_sampler_draws_the_pieces_ref_draws_from_the_same_noise(name, primer):
    """Same draws in, same piece out: Bernoulli x bit for bit (a note flips only if σ(l) and
    the uniform draw agree to round-off), Gaussian x, and the paths d and z, to round-off."""
    config = CONFIGS[name]
    rng = np.random.default_rng(5)
    params = perturbed_params(config, seed=6)
    eps_z, noise_x = ref.draw_sample_noise(rng, config, 3, 12)
    u_1 = None
    if primer:
        u_1 = (rng.random((3, config.x_dim)) < 0.5).astype(float) if config.emission == "bernoulli" \
            else rng.standard_normal((3, config.x_dim))
    x, d, z = ref.sample(params, config, eps_z, noise_x, u_1, return_states=True)
    model = module(config, params)
    x_t, d_t, z_t = (numpy_of(v) for v in model.sample(*tensors(model, eps_z, noise_x), u_1, return_states=True))
    assert np.all(np.isfinite(x)) and x.shape == x_t.shape == (3, 12, config.x_dim)
    if config.emission == "bernoulli":
        np.testing.assert_array_equal(x_t, x)
    else:
        np.testing.assert_allclose(x_t, x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_t, d, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(z_t, z, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_torch_initialises_as_ref_init_params(name):
    """model_for(config, seed) holds ref.init_params(config, seed), rounded to the module's dtype
    (torch's default, float32) and nothing else; names, shapes and their order are the contract's
    (docs/model.md §4.6, §7.4, §8.5)."""
    config = CONFIGS[name]
    for seed in (0, 7):
        exported, expected = model_for(config, seed).export_params(), ref.init_params(config, seed)
        assert list(exported) == list(ref.param_shapes(config))
        for k, v in expected.items():
            assert exported[k].dtype == np.float32 and exported[k].shape == v.shape, k
            np.testing.assert_array_equal(exported[k], v.astype(np.float32), err_msg=k)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_nonlinearity_and_its_slope_match_ref_at_the_kinks(dtype):
    from ref.nn import clipped_leaky_relu
    from torch_impl.model import clipped_leaky_relu as torch_f

    points = np.array([-10.0, -9.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0, -7.3, 2.9])
    v = torch.tensor(points, dtype=dtype, requires_grad=True)
    f_v = torch_f(v, 3.0)
    f_v.sum().backward()
    as_dtype = numpy_of(v).dtype
    np.testing.assert_allclose(numpy_of(f_v), clipped_leaky_relu(points, 3.0), rtol=np.finfo(as_dtype).eps)
    slopes = autograd.elementwise_grad(lambda a: clipped_leaky_relu(a, 3.0))(points)  # 0, 1/3, 1: exact in dtype
    np.testing.assert_array_equal(numpy_of(v.grad), slopes.astype(as_dtype))


def test_model_for_builds_the_class_of_config_model_and_each_class_refuses_another_model():
    """The factory dispatches on config.model; a class built from another model's config is a ConfigError."""
    for config in (CONFIGS["paper-options"], CONFIGS["vrnn"], CONFIGS["rnn"]):
        assert type(model_for(config)) is MODELS[config.model]
        for other in set(MODELS) - {config.model}:
            with pytest.raises(ref.ConfigError, match=f"computes model '{other}', the config asks for "
                                                      f"'{config.model}'"):
                MODELS[other](config)


@pytest.mark.parametrize("name", ["paper-options", "gaussian-deep", "filtering-no-layers", "vrnn-gaussian-deep",
                                  "rnn"])
def test_ref_checkpoint_loads_into_torch_and_exports_unchanged(tmp_path, name):
    config = CONFIGS[name]
    params = perturbed_params(config, seed=8)
    checkpoint.save(tmp_path / "ref.npz", params, config)
    loaded = checkpoint.load(tmp_path / "ref.npz")
    exported = model_for(loaded.config).double().load_params(loaded.params).export_params()
    assert loaded.config == config and set(exported) == set(params)
    for k, v in params.items():
        assert exported[k].dtype == np.float64, k
        np.testing.assert_array_equal(exported[k], v, err_msg=k)


@pytest.mark.parametrize("name", ["paper-options", "gaussian", "no-layers", "vrnn", "rnn-gaussian-no-layers"])
def test_torch_checkpoint_loads_into_ref_with_the_same_elbo(tmp_path, name):
    """A module trained away from its initialisation (here: seeded noise added in torch),
    exported, saved and loaded by ref, has the ELBO torch computes, and the same parameters."""
    config = CONFIGS[name]
    model = model_for(config, seed=9).double()
    generator = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    checkpoint.save(tmp_path / "torch.npz", model.export_params(), config)
    loaded = checkpoint.load(tmp_path / "torch.npz")
    for k, v in model.export_params().items():
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)
    batch = random_batch(config, 3, 6, np.random.default_rng(11))
    np.testing.assert_allclose(ref.elbo(loaded.params, *batch, loaded.config),
                               numpy_of(model.elbo(*tensors(model, *batch))), rtol=1e-10)


# ---------------------------------------------------------------------------------------
# Padding and bad input
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["paper-options", "filtering", "gaussian", "no-layers", "vrnn",
                                  "vrnn-gaussian-deep", "rnn", "rnn-gaussian-no-layers"])
def test_torch_padded_steps_change_nothing(name):
    """Any finite values of u, x, eps at mask = 0 leave the ELBO, every gradient and the IW
    log-weights bit for bit as they are."""
    config = CONFIGS[name]
    rng = np.random.default_rng(12)
    params = perturbed_params(config, seed=13)
    u, x, mask, eps = random_batch(config, 4, 8, rng)
    mask[0, 2:] = 0  # at least one row with several padded steps
    pad = (mask == 0)[..., None]
    junk = lambda a: np.where(pad, 1e3 * rng.standard_normal(a.shape), a)
    model = module(config, params)
    L1, g1 = torch_value_and_grad(model, (u, x, mask, eps))
    L2, g2 = torch_value_and_grad(model, (junk(u), junk(x), mask, junk(eps)))
    np.testing.assert_array_equal(L2, L1)
    for k in g1:
        np.testing.assert_array_equal(g2[k], g1[k], err_msg=k)
    eps_iw = rng.standard_normal((3, *eps.shape))
    log_w = lambda *b: numpy_of(model.log_importance_weights(*tensors(model, *b)))
    np.testing.assert_array_equal(log_w(junk(u), junk(x), mask, np.where(pad, 1e3, eps_iw)), log_w(u, x, mask, eps_iw))


# ---------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------

CUDA_CONFIGS = ["paper-options", "filtering", "gaussian-deep", "no-layers", "vrnn", "vrnn-gaussian-deep", "rnn"]


@pytest.fixture
def full_float32_on_cuda():
    """IEEE float32 in cuDNN's GRUs and cuBLAS's products for the test's duration.

    By default torch lets cuDNN run float32 GRUs in TF32 (a 10-bit mantissa) on Ampere and
    later GPUs (torch.backends.cudnn.rnn.fp32_precision is "tf32", or the legacy
    torch.backends.cudnn.allow_tf32 is True), which is not float32 accuracy. The newer
    fp32_precision flags are used where torch has them (reading the legacy ones after a mix
    of the two APIs is an error), the legacy allow_tf32 flags otherwise."""
    rnn, matmul = getattr(torch.backends.cudnn, "rnn", None), torch.backends.cuda.matmul
    if hasattr(rnn, "fp32_precision"):
        flags = [(rnn, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
    else:
        flags = [(torch.backends.cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]
    saved = [getattr(obj, attr) for obj, attr, _ in flags]
    for obj, attr, value in flags:
        setattr(obj, attr, value)
    try:
        yield
    finally:
        for (obj, attr, _), value in zip(flags, saved):
            setattr(obj, attr, value)


@needs_cuda
@pytest.mark.parametrize("name", CUDA_CONFIGS)
def test_cuda_float64_elbo_and_every_gradient_match_ref(name):
    config = CONFIGS[name]
    params = perturbed_params(config, seed=18)
    batch = random_batch(config, 4, 7, np.random.default_rng(19))
    L_ref, g_ref = value_and_grad(params, batch, config, "numpy")
    L_t, g_t = torch_value_and_grad(module(config, params, torch.float64, "cuda"), batch)
    np.testing.assert_allclose(L_t, L_ref, rtol=1e-8)
    assert set(g_t) == set(g_ref)
    assert worst_relative_difference(g_ref, g_t) < 1e-8, worst_relative_difference(g_ref, g_t)


@needs_cuda
@pytest.mark.parametrize("name", CUDA_CONFIGS)
def test_cuda_float32_is_as_accurate_as_ref_in_float32(name, full_float32_on_cuda):
    """The CPU float32 criterion above, on the GPU (cuDNN's GRU, cuBLAS's products)."""
    config = CONFIGS[name]
    params = perturbed_params(config, seed=20)
    batch = random_batch(config, 4, 7, np.random.default_rng(21))
    L_t, g_t = torch_value_and_grad(module(config, params, torch.float32, "cuda"), batch)
    assert_float32_as_accurate_as_ref(float32_reference(params, batch, config), L_t, g_t)


BF16_CASES = {  # name -> (config, its parameters): tiny models (SRNN, VRNN, RNN), and a fresh SRNN at piano-roll width
    "paper-options": (CONFIGS["paper-options"], lambda c: perturbed_params(c, seed=22, scale=0.1)),
    "gaussian-deep": (CONFIGS["gaussian-deep"], lambda c: perturbed_params(c, seed=22, scale=0.1)),
    "vrnn": (CONFIGS["vrnn"], lambda c: perturbed_params(c, seed=22, scale=0.1)),
    "rnn": (CONFIGS["rnn"], lambda c: perturbed_params(c, seed=22, scale=0.1)),
    "small-preset": (ref.preset("small", x_dim=88), lambda c: ref.init_params(c, 22)),
}


@needs_cuda
@pytest.mark.parametrize("case", list(BF16_CASES))
def test_cuda_bf16_autocast_elbo_is_finite_and_close_to_float32(case, full_float32_on_cuda):
    """Under torch.autocast(bfloat16) the products and the GRUs run in bf16 (an 8-bit
    mantissa, relative rounding 2^-8 ≈ 4e-3 per operation) while the log-densities, exp and
    sums stay float32; the per-sequence ELBO stays within 5e-2 of float32's (CPU autocast,
    which leaves the GRUs in float32, gives ~2e-3), and it and every gradient are finite."""
    config, make_params = BF16_CASES[case]
    batch = random_batch(config, 4, 20, np.random.default_rng(23))
    model = module(config, make_params(config), torch.float32, "cuda")
    L32 = numpy_of(model.elbo(*tensors(model, *batch)))
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        L_bf16 = model.elbo(*tensors(model, *batch))
    L_bf16.sum().backward()
    L_bf16 = numpy_of(L_bf16.float())
    assert np.all(np.isfinite(L_bf16)) and all(np.all(np.isfinite(g)) for g in spec_grads(model).values())
    np.testing.assert_allclose(L_bf16, L32, rtol=5e-2)
