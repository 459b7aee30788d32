"""The input checks of the model contract (docs/model.md §2), one home for both implementations.

Every problem is an `InputError` (arrays) or a `ParamsError` (a parameter mapping) whose
message names the argument; settings are checked where they are defined (`config.py`). Shape checks act on shape tuples. Value checks are written once with operators
and `.all()`, which NumPy arrays and torch tensors share, so `ref` and `torch_impl` raise the
same messages; torch_impl gathers all of them in one transfer from its device.
"""
import numpy

from .config import Config
from .errors import ConfigError, InputError, ParamsError
from .params import param_shapes

MASK_NOT_BINARY = "mask must hold only 0 and 1"
MASK_EMPTY_ROW = "every mask row needs at least one valid step (mask[:, 0] == 1)"
MASK_NOT_PREFIX = "mask rows must be a left-aligned valid prefix: ones, then only zeros"
X_NOT_BINARY = "x must be a binary piano roll (0/1) on valid steps for Bernoulli emission"


def not_finite(name):
    return f"{name} holds NaN or inf values (padded steps too must be finite)"


# ---------------------------------------------------------------------------------------
# Arrays: shapes
# ---------------------------------------------------------------------------------------

def check_batch_shapes(u, x, mask, eps, config):
    """u, x: (B, T, x_dim); mask: (B, T); eps: (B, T, z_dim). Arguments are shape tuples."""
    if len(x) != 3 or x[2] != config.x_dim:
        raise InputError(f"x must have shape (B, T, x_dim={config.x_dim}), got {x}")
    B, T, _ = x
    if u != x:
        raise InputError(f"u must have the shape of x {x}, got {u}")
    if eps != (B, T, config.z_dim):
        raise InputError(f"eps must have shape (B, T, z_dim) = {(B, T, config.z_dim)}, got {eps}")
    if mask != (B, T):
        raise InputError(f"mask must have shape {(B, T)}, got {mask}")
    if T == 0:
        raise InputError(MASK_EMPTY_ROW)


def check_state_shape(name, shape, expected):
    if tuple(shape) != tuple(expected):
        raise InputError(f"{name} must have shape {tuple(expected)}, got {tuple(shape)}")


def check_paths_shape(eps):
    """eps of the importance-weighted bound: (K, B, T, z_dim), one noise sequence per path, K ≥ 1."""
    if len(eps) != 4:
        raise InputError(f"eps must have shape (K, B, T, z_dim) for the importance-weighted bound, got {eps}")
    if eps[0] < 1:
        raise InputError(f"the importance-weighted bound needs at least one path (K >= 1), got eps of shape {eps}")


def check_kl_weight(kl_weight):
    """β of the ELBO: a finite number ≥ 0 (1 for evaluation, annealed from below during training)."""
    if isinstance(kl_weight, bool) or not (0 <= kl_weight < float("inf")):  # NaN fails the comparison
        raise InputError(f"kl_weight must be a finite number >= 0, got {kl_weight!r}")


def check_sample_shapes(eps_z, noise_x, u_1, config):
    """Noise of ancestral sampling, eps_z: (B, T, z_dim), noise_x: (B, T, x_dim); u_1: (B, x_dim) or None."""
    B, T = eps_z[:2] if len(eps_z) >= 2 else (None, None)
    if eps_z != (B, T, config.z_dim) or noise_x != (B, T, config.x_dim):
        raise InputError(f"sample noise must have shapes (B, T, z_dim={config.z_dim}) and "
                         f"(B, T, x_dim={config.x_dim}), got {eps_z} and {noise_x}")
    if u_1 is not None and u_1 != (B, config.x_dim):
        raise InputError(f"u_1 must have shape {(B, config.x_dim)}, got {u_1}")


# ---------------------------------------------------------------------------------------
# Arrays: values
# ---------------------------------------------------------------------------------------

def _finite(v):
    with numpy.errstate(invalid="ignore"):  # inf − inf is the NaN looked for, not a warning
        return (v - v == 0).all()  # v − v is NaN exactly where v is NaN or ±inf


def mask_checks(mask):
    """The conditions on a (B, T) mask, as (holds, message) pairs."""
    return [(((mask == 0) | (mask == 1)).all(), MASK_NOT_BINARY),
            ((mask[:, 0] == 1).all(), MASK_EMPTY_ROW),
            ((mask[:, 1:] <= mask[:, :-1]).all(), MASK_NOT_PREFIX)]


def value_checks(u, x, mask, eps, d_0, z_0, config):
    """Every value condition of a batch, as (holds, message) pairs in the order they are reported.

    The arrays are all NumPy or all torch, of the shapes `check_batch_shapes` admits; `holds`
    is a bool or a 0-d bool tensor, so the caller decides when to read it.
    """
    checks = mask_checks(mask) + [(_finite(v), not_finite(name)) for name, v in
                                  (("u", u), ("x", x), ("eps", eps), ("d_0", d_0), ("z_0", z_0))]
    if config.emission == "bernoulli":
        valid = mask[..., None] == 1
        checks.append((((x == 0) | (x == 1) | ~valid).all(), X_NOT_BINARY))
    return checks


def raise_first_failure(checks, holds):
    """Raise InputError with the message of the first check whose `holds` is false."""
    for (_, message), ok in zip(checks, holds):
        if not ok:
            raise InputError(message)


def check_mask(mask):
    """A (B, T) NumPy mask of 0/1 with a non-empty left-aligned valid prefix in every row."""
    if mask.ndim != 2:
        raise InputError(f"mask must have shape (B, T), got {mask.shape}")
    if mask.shape[1] == 0:
        raise InputError(MASK_EMPTY_ROW)
    checks = mask_checks(mask)
    raise_first_failure(checks, [ok for ok, _ in checks])


def check_finite(name, v):
    if not _finite(v):
        raise InputError(not_finite(name))


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

def check_config(config):
    if not isinstance(config, Config):
        raise ConfigError(f"config must be a ref.Config, got {type(config).__name__}")


def check_params(params, config, source="parameters"):
    """Raise ParamsError unless `params` is a mapping with exactly the names and shapes of
    `config`'s model (docs/model.md §4.6), and ConfigError unless `config` is a Config."""
    check_config(config)
    if not callable(getattr(params, "items", None)):
        raise ParamsError(f"{source} must be a mapping of contract names to arrays, got {type(params).__name__}")
    shapes = {name: numpy.shape(value) for name, value in params.items()}
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        raise ParamsError(
            f"{source} does not match its Config: missing {missing or 'none'}, unexpected {extra or 'none'}")
    for name, shape in expected.items():
        if tuple(shapes[name]) != tuple(shape):
            raise ParamsError(f"{source}: {name} has shape {tuple(shapes[name])}, its Config needs {shape}")


def _is_floating(v):
    """A floating-point array: a torch tensor says so itself, anything else is asked through NumPy."""
    is_floating_point = getattr(v, "is_floating_point", None)
    return is_floating_point() if callable(is_floating_point) else numpy.issubdtype(numpy.asarray(v).dtype, numpy.floating)


def check_param_values(params, source="parameters"):
    """Raise ParamsError unless every parameter is a floating-point array of finite values.
    NumPy arrays and torch tensors alike."""
    def refuse(problem, names):
        if names:
            raise ParamsError(f"{source} {problem}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")

    refuse("are not floating-point arrays", [k for k, v in params.items() if not _is_floating(v)])
    refuse("hold NaN or inf values", [k for k, v in params.items() if not _finite(v)])
