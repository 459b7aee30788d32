"""Building blocks of the model contract (docs/model.md §3): the nonlinearity, dense layers, MLPs, the variance head, the GRU.

Each function reads its weights from the flat parameter dict by name prefix and acts on
the last axis, so the same code runs one time step (B, F) or all steps at once (T, B, F).
Products go through `linear` (one BLAS matrix product), never np.dot, whose N-d form
does not use BLAS and is many times slower on (T, B, F) arrays.
"""
import math

import autograd.numpy as np
import numpy
from autograd.extend import defvjp, defvjp_argnums, primitive


@primitive
def clipped_leaky_relu(v, clip):
    """f(v) = clip(max(v, v/3), −clip, clip), the nonlinearity of every hidden dense layer."""
    return numpy.clip(numpy.maximum(v, v / 3.0), -clip, clip)


def _clipped_leaky_relu_slope(v, f_v, clip):
    """f'(v) = 1 for v > 0, 1/3 for v ≤ 0 (the left slope at the kink), 0 where f is clipped.

    Written out rather than left to autograd, whose gradient of np.maximum averages the
    two slopes at ties through a float64 mask, turning float32 gradients into float64.
    """
    return (1.0 / 3.0 + (2.0 / 3.0) * (v > 0).astype(v.dtype)) * (numpy.abs(f_v) < clip)


defvjp(clipped_leaky_relu, lambda f_v, v, clip: lambda g: g * _clipped_leaky_relu_slope(v, f_v, clip))


def sigmoid(v):
    """σ(v) = 1 / (1 + exp(−v)), written with tanh so no exp can overflow."""
    return 0.5 * (np.tanh(0.5 * v) + 1.0)


def dense(params, name, v):
    """Dense layer `name`: y = W v + b with W of shape (out, in)."""
    return linear(v, params[name + ".W"]) + params[name + ".b"]


def linear(v, W):
    """W v on the last axis of v (..., in) -> (..., out), as a single matrix product over all
    leading axes (matmul on (T, B, in) would make one small product per step)."""
    return np.reshape(np.reshape(v, (-1, v.shape[-1])) @ W.T, v.shape[:-1] + (W.shape[0],))


def hidden_stack(params, name, v, num_layers, clip):
    """Hidden layers `name.0 … name.{k−1}`, each f(W v + b); the identity when k = 0."""
    for k in range(num_layers):
        v = clipped_leaky_relu(dense(params, f"{name}.{k}", v), clip)
    return v


def mlp(params, name, v, num_layers, clip):
    """MLP `name`: the hidden stack, then the linear output layer `name.out`."""
    return dense(params, name + ".out", hidden_stack(params, name, v, num_layers, clip))


def variance_head(raw, var_floor):
    """logvar = log(exp(raw) + var_floor), as a log-sum-exp so that it never overflows."""
    return np.logaddexp(raw, math.log(var_floor)) if var_floor > 0 else raw


def gru_input_projection(params, name, v):
    """W_ih v + b_ih of GRU `name`: the part that does not recur, for all steps at once."""
    return linear(v, params[name + ".W_ih"]) + params[name + ".b_ih"]


def gru_cell(params, name, h, proj):
    """One step h' = GRU(h, v) in PyTorch's convention, gates (r, z, n), given proj = W_ih v + b_ih.

    h: (B, H) previous state; proj: (B, 3H). Returns h': (B, H).
    """
    H = h.shape[-1]
    hh = h @ params[name + ".W_hh"].T + params[name + ".b_hh"]  # (B, 3H)
    r = sigmoid(proj[:, :H] + hh[:, :H])                    # reset gate
    z_gate = sigmoid(proj[:, H:2 * H] + hh[:, H:2 * H])     # update gate
    n = np.tanh(proj[:, 2 * H:] + r * hh[:, 2 * H:])        # candidate state
    return (1.0 - z_gate) * n + z_gate * h


@primitive
def stack_arrays(*arrays):
    """numpy.stack(arrays) along a new leading axis, with a VJP that hands each input its slice.

    The recurrences collect their steps in a list and stack them once (autograd cannot
    write A[t] = v). autograd's own np.stack gradient costs O(T²) in the number of
    arrays and scatters into each input through np.add.at, which is slow.
    """
    return numpy.stack(arrays)


defvjp_argnums(stack_arrays, lambda argnums, ans, args, kwargs: lambda g: tuple(g[i] for i in argnums))
