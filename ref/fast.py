"""The fast path: the three recurrences of `model.py` as numba kernels with hand-derived gradients.

They compute what docs/model.md §4.3–4.4 defines, to the agreement stated in its §5.

Same signatures as their readable twins in `model.py`, selected by `backend="numba"`:

    deterministic_layer(params, e_u, d_0)                   d_t = GRU_d(d_{t−1}, e(u_t))      eq. (2)
    inference_network(params, d, e_x, mask, config)         a_t = GRU_a(a_{t+1}, [d_t, e(x_t)])  eq. (5)
    stochastic_layer(params, d, a, eps, z_0, config)        z_t ~ q(z_t | z_{t−1}, a_t), p(z_t | z_{t−1}, d_t)

Only the loops over time are kernels. Everything that does not recur stays in autograd
around them, exactly as on the readable path: the GRUs' input projections W_ih v + b_ih,
and the parts of the first layer of each prior / posterior MLP that act on d_t or a_t.
Each kernel is one autograd primitive whose VJP is registered with `defvjp_argnums`, so
one backward pass through time serves every argument that needs a gradient.

Kernels are plain index loops plus matrix products, time-major like `model.py`, and run
as Python under NUMBA_DISABLE_JIT=1. The forward kernels return what their backward
passes need (gate values, pre-activations), so nothing is recomputed; weight gradients
are summed over all steps by one matrix product after the loop, not one per step.
"""
import math
import os
import signal
import threading

import autograd.numpy as np
import numpy
from autograd.extend import defvjp_argnums, primitive
from numba import njit

from . import model
from .params import Z_MLPS
from .nn import gru_input_projection, linear, stack_arrays

def _one_thread_for_kernel_blas():
    """numba's matrix products call SciPy's BLAS. With the PyPI wheels that is a second
    OpenBLAS beside NumPy's, with its own thread pool, and on a few cores the idle
    threads of the two pools spin against each other (measured here: 2x slower steps).
    The kernels' products have B rows, too small to gain from threads: give every BLAS
    but NumPy's own one thread. With a single shared BLAS (conda) nothing changes."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that numba calls)
    from threadpoolctl import ThreadpoolController

    blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    if len(blas) > 1:
        for lib in blas:
            if not os.path.basename(os.path.dirname(lib.filepath)).startswith("numpy"):  # numpy.libs/
                lib.set_num_threads(1)


_one_thread_for_kernel_blas()


def kernels_loaded():
    """Whether this process has compiled or loaded a kernel yet (the first call does, from
    numba's on-disk cache beside this file when there is one: about 25 s without). Any, not
    all: the RNN uses only the GRU's kernels."""
    return any(k.signatures for k in (_gru_forward, _gru_backward, _stochastic_forward, _stochastic_backward))


def _call(kernel, *args):
    """kernel(*args), with a Ctrl-C held until it returns, then handed to the SIGINT handler in
    place (Python's raises KeyboardInterrupt). A Ctrl-C while numba loads or compiles the kernel
    lands in llvmlite's ctypes callbacks, which print it and swallow it (the run goes on); a
    compiled kernel cannot be interrupted anyway."""
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        return kernel(*args)  # only the main thread sets handlers; an ignored Ctrl-C stays ignored
    held = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        result = kernel(*args)
    finally:
        signal.signal(signal.SIGINT, handler)
    if held:
        handler(signal.SIGINT, held[0])
    return result


def _contiguous(*arrays):
    """C-ordered arrays, so each kernel compiles once per dtype (not once per memory layout)."""
    return tuple(numpy.ascontiguousarray(a) for a in arrays)


# ---------------------------------------------------------------------------------------
# Scalar pieces, shared by the kernels
# ---------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _sigmoid(v):
    """σ(v) = 1 / (1 + e^{−v}); one exp costs a quarter of libm's tanh. e^{−v} = inf gives 0."""
    return 1.0 / (1.0 + math.exp(-v))


@njit(cache=True, inline="always")
def _tanh(v):
    """tanh(v) = −t / (t + 2) with t = expm1(−2|v|) ∈ (−1, 0], sign restored: exact near 0,
    no overflow, and about twice as fast as libm's tanh."""
    t = math.expm1(-2.0 * abs(v))
    return math.copysign(-t / (t + 2.0), v)


@njit(cache=True, inline="always")
def _f(v, clip):
    """f(v) = clip(max(v, v/3), −clip, clip), as nn.clipped_leaky_relu."""
    return min(max(v if v > 0.0 else v / 3.0, -clip), clip)


@njit(cache=True, inline="always")
def _df(v, clip):
    """f'(v) as nn._clipped_leaky_relu_slope: 1 for v > 0, 1/3 for v ≤ 0, 0 where clipped."""
    if abs(_f(v, clip)) >= clip:
        return 0.0
    return 1.0 if v > 0.0 else 1.0 / 3.0


# ---------------------------------------------------------------------------------------
# GRU over time: d (forwards) and a (backwards)
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def _gru_forward(proj, W_hh, b_hh, h_0, keep, reverse):
    """h_t = GRU(keep_t ⊙ h_prev, v_t) over all steps, given proj_t = W_ih v_t + b_ih.

    Forwards in time h_prev = h_{t−1}; with reverse, backwards in time h_prev = h_{t+1}.
    proj: (T, B, 3H); W_hh: (3H, H); b_hh: (3H,); h_0: (B, H), the state before the first
    step taken; keep: (T, B), 0 restarts a row from the zero state. Returns h: (T, B, H)
    and the gates (T, B, 4, H) as (r, z, n, W_hn h_prev + b_hn), which the backward pass reuses.
    """
    T, B, H3 = proj.shape
    H = H3 // 3
    h = numpy.empty((T, B, H), proj.dtype)
    gates = numpy.empty((T, B, 4, H), proj.dtype)
    h_prev = numpy.empty((B, H), proj.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        for b in range(B):
            for j in range(H):
                h_prev[b, j] = keep[t, b] * (h_0[b, j] if s == 0 else h[t + 1 if reverse else t - 1, b, j])
        hh = h_prev @ W_hh.T  # (B, 3H)
        for b in range(B):
            for j in range(H):
                r = _sigmoid(proj[t, b, j] + hh[b, j] + b_hh[j])
                z = _sigmoid(proj[t, b, H + j] + hh[b, H + j] + b_hh[H + j])
                hn = hh[b, 2 * H + j] + b_hh[2 * H + j]
                n = _tanh(proj[t, b, 2 * H + j] + r * hn)
                h[t, b, j] = (1.0 - z) * n + z * h_prev[b, j]
                gates[t, b, 0, j], gates[t, b, 1, j], gates[t, b, 2, j], gates[t, b, 3, j] = r, z, n, hn
    return h, gates


@njit(cache=True)
def _gru_backward(g_h, h, gates, W_hh, h_0, keep, reverse):
    """Backpropagation through time of `_gru_forward`: the cotangents of proj, W_hh, b_hh, h_0.

    g_h: (T, B, H), the cotangent of every output h_t. Visiting the steps in the opposite
    order of the forward pass, dh is the total cotangent of the current state: its own
    g_h[t] plus what the next step taken, GRU(keep ⊙ h, ·), sends back.
    """
    T, B, H = g_h.shape
    d_proj = numpy.empty((T, B, 3 * H), g_h.dtype)   # = the cotangent of the pre-activations
    d_hh = numpy.empty((T, B, 3 * H), g_h.dtype)     # of W_hh h_prev + b_hh, step by step
    h_prev = numpy.empty((T, B, H), g_h.dtype)       # keep_t ⊙ h_prev, the input of step t
    dh = numpy.zeros((B, H), g_h.dtype)
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        for b in range(B):
            for j in range(H):
                h_prev[t, b, j] = keep[t, b] * (h_0[b, j] if s == 0 else h[t + 1 if reverse else t - 1, b, j])
                r, z, n, hn = gates[t, b, 0, j], gates[t, b, 1, j], gates[t, b, 2, j], gates[t, b, 3, j]
                g = dh[b, j] + g_h[t, b, j]
                # h_t = (1 − z) n + z h_prev:  ∂/∂n = 1 − z,  ∂/∂z = h_prev − n,  ∂/∂h_prev = z
                d_n = g * (1.0 - z)
                d_z = g * (h_prev[t, b, j] - n)
                dh[b, j] = g * z
                # n = tanh(p_n + r ⊙ hn):  tanh' = 1 − n²;  the pre-activation splits into p_n and r ⊙ hn
                d_an = d_n * (1.0 - n * n)
                d_r = d_an * hn
                # r = σ(p_r + hh_r), z = σ(p_z + hh_z):  σ' = σ (1 − σ)
                d_ar = d_r * r * (1.0 - r)
                d_az = d_z * z * (1.0 - z)
                d_proj[t, b, j], d_proj[t, b, H + j], d_proj[t, b, 2 * H + j] = d_ar, d_az, d_an
                # hh = W_hh h_prev + b_hh enters r and z directly, and n through r ⊙ hn
                d_hh[t, b, j], d_hh[t, b, H + j], d_hh[t, b, 2 * H + j] = d_ar, d_az, d_an * r
        dh += d_hh[t] @ W_hh  # h_prev reaches hh through W_hh: ∂hh/∂h_prev = W_hh
        for b in range(B):
            for j in range(H):
                dh[b, j] *= keep[t, b]  # h_prev = keep_t ⊙ (the state before)
    # W_hh and b_hh are shared by all steps: sum over t and b, as one product each
    d_hh_flat = d_hh.reshape(T * B, 3 * H)
    d_W_hh = d_hh_flat.T @ h_prev.reshape(T * B, H)
    d_b_hh = d_hh_flat.sum(axis=0)
    return d_proj, d_W_hh, d_b_hh, dh


@primitive
def _gru_scan(proj, W_hh, b_hh, h_0, keep, reverse):
    return _call(_gru_forward, *_contiguous(proj, W_hh, b_hh, h_0, keep), reverse)


def _gru_scan_vjp(argnums, ans, args, kwargs):
    h, gates = ans
    _, W_hh, _, h_0, keep, reverse = args

    def vjp(g):
        grads = _call(_gru_backward, *_contiguous(g[0], h, gates, W_hh, h_0, keep), reverse)
        return tuple(grads[i] for i in argnums)  # (proj, W_hh, b_hh, h_0); keep is a mask
    return vjp


defvjp_argnums(_gru_scan, _gru_scan_vjp)


def _gru(params, name, proj, h_0, keep, reverse=False):
    """GRU `name` over all steps of proj = W_ih v + b_ih (computed outside, by autograd)."""
    return _gru_scan(proj, params[name + ".W_hh"], params[name + ".b_hh"], h_0, keep, reverse)[0]


def deterministic_layer(params, e_u, d_0):
    """d_t = GRU_d(d_{t−1}, e(u_t)) — eq. (2); the kernel twin of model.deterministic_layer."""
    proj = gru_input_projection(params, "gru_d", e_u)  # (T, B, 3·d_dim)
    return _gru(params, "gru_d", proj, d_0, numpy.ones(proj.shape[:2], proj.dtype))


def inference_network(params, d, e_x, mask, config):
    """a_t of q(z_t | z_{t−1}, a_t) — eq. (5); the kernel twin of model.inference_network.

    Smoothing runs the GRU kernel backwards in time; `keep` restarts each sequence from
    a_{T_i+1} = 0 at its own last valid step T_i.
    """
    if config.inference == "filtering":  # no loop over time: the readable code is all there is
        return model.inference_network(params, d, e_x, mask, config)
    v = np.concatenate([d, e_x], axis=-1)
    proj = gru_input_projection(params, "gru_a", v)  # (T, B, 3·a_dim)
    mask_next = numpy.concatenate([mask[1:], numpy.zeros_like(mask[:1])])
    a_0 = numpy.zeros((proj.shape[1], config.a_dim), proj.dtype)
    return _gru(params, "gru_a", proj, a_0, mask_next, reverse=True)


# ---------------------------------------------------------------------------------------
# The stochastic layer: four MLPs and the reparameterised sample, over time
# ---------------------------------------------------------------------------------------
#
# The four MLPs of a step, in this order: prior_mu, prior_logvar (input [d_t, z_{t−1}]),
# post_mu, post_logvar (input [a_t, z_{t−1}]). Each has L = mlp_layers hidden layers.
# Its first layer (layer 0, or the output layer when L = 0) is split as
# W [v; z_{t−1}] + b = (W_v v + b) + W_z z_{t−1}: the first term, `pre`, is computed for
# all steps outside the loop; only W_z z_{t−1} recurs. Packed for the kernel:
#   pre (4, T, B, n1), W_z (4, n1, Z)                   the first layer, n1 = h if L > 0 else Z
#   W_h (4, L−1, h, h), b_h (4, L−1, h)                  hidden layers 1 .. L−1
#   W_o (4, Z, h), b_o (4, Z)                            the output layer, when L > 0


@njit(cache=True)
def _stochastic_forward(pre, W_z, W_h, b_h, W_o, b_o, eps, z_0, L, residual, var_floor, clip):
    """z_t = mu_q + exp(logvar_q / 2) ⊙ eps_t for t = 0..T−1, with the prior and posterior of each step.

    Returns z, mu_p, logvar_p, mu_q, logvar_q (each (T, B, Z)) and, for the backward pass,
    acts (4, L, T, B, h), the pre-activations of every hidden layer, and raw (2, T, B, Z),
    the outputs of the two log-variance MLPs before the variance head.
    """
    _, T, B, n1 = pre.shape
    Z = eps.shape[2]
    h_dim = W_h.shape[2] if L > 1 else (W_o.shape[2] if L > 0 else 1)
    z = numpy.empty((T, B, Z), eps.dtype)
    out = numpy.empty((4, T, B, Z), eps.dtype)  # mu_p, logvar_p, mu_q, logvar_q
    raw = numpy.empty((2, T, B, Z), eps.dtype)
    acts = numpy.empty((4, L, T, B, h_dim), eps.dtype)
    z_tm1 = z_0.copy()
    W_z_all = W_z.reshape(4 * n1, Z)  # the four W_z stacked: one product per step serves all MLPs
    for t in range(T):
        zW = z_tm1 @ W_z_all.T  # (B, 4·n1)
        for m in range(4):
            v = pre[m, t] + zW[:, m * n1:(m + 1) * n1]  # first layer: (W_v v + b) + W_z z_{t−1}
            for k in range(L):
                acts[m, k, t] = v
                for b in range(B):
                    for j in range(h_dim):
                        v[b, j] = _f(v[b, j], clip)
                v = v @ (W_h[m, k].T if k < L - 1 else W_o[m].T) + (b_h[m, k] if k < L - 1 else b_o[m])
            if m % 2 == 1:  # logvar = log(exp(raw) + var_floor), the variance head
                raw[m // 2, t] = v
                for b in range(B):
                    for j in range(Z):
                        v[b, j] = numpy.logaddexp(v[b, j], math.log(var_floor)) if var_floor > 0 else v[b, j]
            out[m, t] = v
        for b in range(B):
            for j in range(Z):
                if residual:
                    out[2, t, b, j] += out[0, t, b, j]  # Resq: mu_q = mu_p + MLP output
                z[t, b, j] = out[2, t, b, j] + math.exp(0.5 * out[3, t, b, j]) * eps[t, b, j]
        z_tm1 = z[t]
    return z, out[0], out[1], out[2], out[3], acts, raw


@njit(cache=True)
def _stochastic_backward(g_z, g_out, z, out, acts, raw, W_z, W_h, W_o, eps, z_0, L, residual, clip):
    """Backpropagation through time of `_stochastic_forward`.

    g_z: (T, B, Z) and g_out: (4, T, B, Z), the cotangents of z and of (mu_p, logvar_p,
    mu_q, logvar_q). Going backwards, dz is the total cotangent of z_t: g_z[t] plus what
    the four MLPs of step t+1 send back through W_z. Returns the cotangents of
    pre, W_z, W_h, b_h, W_o, b_o, z_0 and eps.
    """
    _, T, B, Z = g_out.shape
    n1 = W_z.shape[1]
    h_dim = acts.shape[4]
    d_out = numpy.empty((4, T, B, Z), z.dtype)       # cotangent of each MLP's output, per step
    d_acts = numpy.empty((4, L, T, B, h_dim), z.dtype)  # and of each hidden pre-activation
    d_pre = numpy.empty((4, T, B, n1), z.dtype)
    dz = numpy.zeros((B, Z), z.dtype)
    d_eps = numpy.empty((T, B, Z), z.dtype)
    W_z_all = W_z.reshape(4 * n1, Z)
    g_all = numpy.empty((B, 4 * n1), z.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(Z):
                g = dz[b, j] + g_z[t, b, j]
                # z = mu_q + exp(logvar_q / 2) eps:  ∂/∂mu_q = 1,  ∂/∂logvar_q = exp(logvar_q / 2) eps / 2
                d_mu_q = g_out[2, t, b, j] + g
                d_lv_q = g_out[3, t, b, j] + g * 0.5 * math.exp(0.5 * out[3, t, b, j]) * eps[t, b, j]
                d_eps[t, b, j] = g * math.exp(0.5 * out[3, t, b, j])  # ∂z/∂eps = exp(logvar_q / 2)
                # Resq: mu_q = mu_p + post_mu(·), so mu_p also receives d_mu_q
                d_mu_p = g_out[0, t, b, j] + (d_mu_q if residual else 0.0)
                # head: ∂ log(exp(raw) + floor) / ∂raw = exp(raw) / (exp(raw) + floor) = exp(raw − logvar)
                d_out[0, t, b, j] = d_mu_p
                d_out[1, t, b, j] = g_out[1, t, b, j] * math.exp(raw[0, t, b, j] - out[1, t, b, j])
                d_out[2, t, b, j] = d_mu_q
                d_out[3, t, b, j] = d_lv_q * math.exp(raw[1, t, b, j] - out[3, t, b, j])
        for m in range(4):
            g = d_out[m, t]
            for k in range(L - 1, -1, -1):
                # v_{k+1} = W_{k+1} f(a_k) + b_{k+1}:  ∂/∂a_k = W_{k+1}ᵀ · f'(a_k)
                g = g @ (W_h[m, k] if k < L - 1 else W_o[m])
                for b in range(B):
                    for j in range(h_dim):
                        g[b, j] *= _df(acts[m, k, t, b, j], clip)
                d_acts[m, k, t] = g
            d_pre[m, t] = g
            g_all[:, m * n1:(m + 1) * n1] = g
        dz = g_all @ W_z_all  # the first layers saw z_{t−1} through W_z, all four in one product
    # shared weights: sum over steps and rows as one product per matrix
    TB = T * B
    z_prev = numpy.empty((T, B, Z), z.dtype)
    z_prev[0] = z_0
    z_prev[1:] = z[:-1]
    d_W_z = numpy.empty(W_z.shape, z.dtype)
    d_W_h = numpy.empty(W_h.shape, z.dtype)
    d_b_h = numpy.empty((4, max(L - 1, 0), h_dim), z.dtype)
    d_W_o = numpy.zeros(W_o.shape, z.dtype)
    d_b_o = numpy.zeros((4, Z), z.dtype)
    for m in range(4):
        d_W_z[m] = d_pre[m].reshape(TB, n1).T @ z_prev.reshape(TB, Z)
        for k in range(L):
            h_k = numpy.empty((TB, h_dim), z.dtype)  # f(a_k), the input of layer k+1
            a_k = acts[m, k].reshape(TB, h_dim)
            for i in range(TB):
                for j in range(h_dim):
                    h_k[i, j] = _f(a_k[i, j], clip)
            g_next = d_acts[m, k + 1].reshape(TB, h_dim) if k < L - 1 else d_out[m].reshape(TB, Z)
            if k < L - 1:
                d_W_h[m, k] = g_next.T @ h_k
                d_b_h[m, k] = g_next.sum(axis=0)
            else:
                d_W_o[m] = g_next.T @ h_k
                d_b_o[m] = g_next.sum(axis=0)
    return d_pre, d_W_z, d_W_h, d_b_h, d_W_o, d_b_o, d_eps, dz


@primitive
def _stochastic_scan(pre, W_z, W_h, b_h, W_o, b_o, eps, z_0, L, residual, var_floor, clip):
    return _call(_stochastic_forward, *_contiguous(pre, W_z, W_h, b_h, W_o, b_o, eps, z_0), L, residual, var_floor,
                 clip)


def _stochastic_scan_vjp(argnums, ans, args, kwargs):
    z, mu_p, logvar_p, mu_q, logvar_q, acts, raw = ans
    _, W_z, W_h, _, W_o, _, eps, z_0, L, residual, _, clip = args
    out = numpy.stack([mu_p, logvar_p, mu_q, logvar_q])

    def vjp(g):
        g_out = numpy.stack(g[1:5])
        grads = _call(_stochastic_backward, *_contiguous(g[0], g_out, z, out, acts, raw, W_z, W_h, W_o, eps, z_0),
                      L, residual, clip)
        by_arg = dict(zip((0, 1, 2, 3, 4, 5, 6, 7), grads))
        return tuple(by_arg[i] for i in argnums)
    return vjp


defvjp_argnums(_stochastic_scan, _stochastic_scan_vjp)


def stochastic_layer(params, d, a, eps, z_0, config):
    """One sampled path z_{1:T} ~ Π_t q(z_t | z_{t−1}, a_t) with the prior of each step — eq. (5)–(7).

    The kernel twin of model.stochastic_layer: same arguments, same returns
    (z, mu_p, logvar_p, mu_q, logvar_q), each (T, B, z_dim).
    """
    L = config.mlp_layers
    first = "0" if L > 0 else "out"
    pre, W_z = [], []
    for name in Z_MLPS:
        v = d if name.startswith("prior") else a  # the part of the input that does not recur
        # np.split, not slices: its VJP is one concatenate rather than an np.add.at per slice
        W_v, W_zm = np.split(params[f"{name}.{first}.W"], [v.shape[-1]], axis=1)
        pre.append(linear(v, W_v) + params[f"{name}.{first}.b"])  # (T, B, n1)
        W_z.append(W_zm)                                              # (n1, z_dim)
    dtype, h = eps.dtype, config.h_dim
    hidden = lambda name, part: stack_arrays(*(params[f"{name}.{k}.{part}"] for k in range(1, L)))
    W_h = stack_arrays(*(hidden(name, "W") if L > 1 else numpy.zeros((0, h, h), dtype) for name in Z_MLPS))
    b_h = stack_arrays(*(hidden(name, "b") if L > 1 else numpy.zeros((0, h), dtype) for name in Z_MLPS))
    W_o = stack_arrays(*(params[f"{name}.out.W"] if L > 0 else numpy.zeros((config.z_dim, 0), dtype) for name in Z_MLPS))
    b_o = stack_arrays(*(params[f"{name}.out.b"] if L > 0 else numpy.zeros(config.z_dim, dtype) for name in Z_MLPS))
    outs = _stochastic_scan(stack_arrays(*pre), stack_arrays(*W_z), W_h, b_h, W_o, b_o, eps, z_0,
                            L, config.residual_q, config.var_floor, config.clip)
    return tuple(outs[i] for i in range(5))
