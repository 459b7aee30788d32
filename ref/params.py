"""The parameters of every model (docs/model.md §4.6–4.7 for the SRNN, §7.4 the RNN, §8.5 the
VRNN): every name, its shape, and the initialisation of the SRNN paper's released code.

A model's parameters are a flat dict name -> array; these names are what checkpoints hold
and what every implementation loads and exports. GRU weight matrices are initialised
orthogonal per gate block (semi-orthogonal when the block is not square), dense weights
Glorot-normal, biases zero.
"""
import numpy

from .config import Config

Z_MLPS = ("prior_mu", "prior_logvar", "post_mu", "post_logvar")  # the four MLPs of the stochastic layer


def a_width(config: Config) -> int:
    """Width of a_t: a_dim, except filtering with no hidden layer where a_t = [d_t, e(x_t)]."""
    if config.inference == "filtering" and config.mlp_layers == 0:
        return config.d_dim + config.e_dim
    return config.a_dim


def param_shapes(config: Config) -> dict:
    """Every parameter name of docs/model.md §4.6 (SRNN), §7.4 (RNN) or §8.5 (VRNN) for this
    configuration, with its shape."""
    c = config
    shapes = {}

    def add_dense_stack(name, n_in, width, num_layers):
        for k in range(num_layers):
            shapes[f"{name}.{k}.W"], shapes[f"{name}.{k}.b"] = (width, n_in), (width,)
            n_in = width
        return n_in

    def add_mlp(name, n_in, n_out):
        n_hidden = add_dense_stack(name, n_in, c.h_dim, c.mlp_layers)
        shapes[f"{name}.out.W"], shapes[f"{name}.out.b"] = (n_out, n_hidden), (n_out,)

    def add_gru(name, n_in, n_hidden):
        shapes[f"{name}.W_ih"], shapes[f"{name}.W_hh"] = (3 * n_hidden, n_in), (3 * n_hidden, n_hidden)
        shapes[f"{name}.b_ih"], shapes[f"{name}.b_hh"] = (3 * n_hidden,), (3 * n_hidden,)

    add_dense_stack("embed", c.x_dim, c.h_dim, c.embed_layers)
    if c.model == "srnn":
        add_gru("gru_d", c.e_dim, c.d_dim)
        if c.inference == "smoothing":
            add_gru("gru_a", c.d_dim + c.e_dim, c.a_dim)
        else:
            add_dense_stack("filter", c.d_dim + c.e_dim, c.a_dim, c.mlp_layers)
        for name in Z_MLPS:  # the prior's MLPs condition on [d_t, z_{t−1}], the posterior's on [a_t, z_{t−1}]
            add_mlp(name, (c.d_dim if name.startswith("prior") else a_width(c)) + c.z_dim, c.z_dim)
        emit_in = c.d_dim + c.z_dim
    elif c.model == "vrnn":
        add_dense_stack("embed_z", c.z_dim, c.h_dim, c.embed_layers)
        add_gru("gru_h", c.e_dim + c.ez_dim, c.d_dim)
        for name in Z_MLPS:  # the prior's MLPs condition on h_t, the posterior's on [h_t, e(x_t)]
            add_mlp(name, c.d_dim + (c.e_dim if name.startswith("post") else 0), c.z_dim)
        emit_in = c.d_dim + c.ez_dim
    else:
        add_gru("gru_d", c.e_dim, c.d_dim)
        emit_in = c.d_dim
    if c.emission == "bernoulli":
        add_mlp("emit", emit_in, c.x_dim)
    else:
        n_hidden = add_dense_stack("emit", emit_in, c.h_dim, c.mlp_layers)
        for head in ("mu", "logvar"):
            shapes[f"emit.{head}.W"], shapes[f"emit.{head}.b"] = (c.x_dim, n_hidden), (c.x_dim,)
    return shapes


def init_params(config: Config, seed: int) -> dict:
    """Parameters named as in `param_shapes`, initialised as the SRNN paper's code does (float64) — §4.7."""
    rng = numpy.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        if len(shape) == 1:
            params[name] = numpy.zeros(shape)
        elif name.endswith((".W_ih", ".W_hh")):
            params[name] = numpy.concatenate([_orthogonal(rng, shape[0] // 3, shape[1]) for _ in range(3)])
        else:
            params[name] = rng.normal(0.0, numpy.sqrt(2.0 / (shape[0] + shape[1])), size=shape)  # Glorot
    return params


def _orthogonal(rng, rows, cols):
    """A (rows, cols) matrix with orthonormal rows or columns (QR of a Gaussian matrix)."""
    q, r = numpy.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * numpy.sign(numpy.diag(r))  # makes the draw uniform over orthogonal matrices
    return q if rows >= cols else q.T
