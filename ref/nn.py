"""Building blocks of SPEC.md: the nonlinearity, dense layers, MLPs, the variance head, the GRU.

Each function reads its weights from the flat parameter dict by name prefix and acts on
the last axis, so the same code runs one time step (B, F) or all steps at once (T, B, F).
"""
import math

import autograd.numpy as np
import numpy
from autograd.extend import defvjp_argnums, primitive


def clipped_leaky_relu(v, clip):
    """f(v) = clip(max(v, v/3), −clip, clip), the nonlinearity of every hidden dense layer."""
    return np.clip(np.maximum(v, v / 3.0), -clip, clip)


def sigmoid(v):
    """σ(v) = 1 / (1 + exp(−v)), written with tanh so no exp can overflow."""
    return 0.5 * (np.tanh(0.5 * v) + 1.0)


def dense(params, name, v):
    """Dense layer `name`: y = W v + b with W of shape (out, in)."""
    return np.dot(v, params[name + ".W"].T) + params[name + ".b"]


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
    return np.dot(v, params[name + ".W_ih"].T) + params[name + ".b_ih"]


def gru_cell(params, name, h, proj):
    """One step h' = GRU(h, v) in PyTorch's convention, gates (r, z, n), given proj = W_ih v + b_ih.

    h: (B, H) previous state; proj: (B, 3H). Returns h': (B, H).
    """
    H = h.shape[-1]
    hh = np.dot(h, params[name + ".W_hh"].T) + params[name + ".b_hh"]  # (B, 3H)
    r = sigmoid(proj[:, :H] + hh[:, :H])                    # reset gate
    z_gate = sigmoid(proj[:, H:2 * H] + hh[:, H:2 * H])     # update gate
    n = np.tanh(proj[:, 2 * H:] + r * hh[:, 2 * H:])        # candidate state
    return (1.0 - z_gate) * n + z_gate * h


@primitive
def stack_steps(*steps):
    """Stack the per-step arrays of a recurrence along a new leading time axis: (T, ...).

    autograd cannot write A[t] = v, so loops collect steps in a list and stack them once.
    This is numpy.stack with a VJP that hands each step its slice of the cotangent, linear
    in T; autograd's own np.stack gradient rescans all earlier steps for each one, O(T²).
    """
    return numpy.stack(steps)


defvjp_argnums(stack_steps, lambda argnums, ans, args, kwargs: lambda g: tuple(g[i] for i in argnums))
