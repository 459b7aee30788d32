"""Optimisation as pure functions over parameter dicts: Adam, gradient clipping and the
two schedules (KL annealing, learning-rate decay) of the paper's training code.

Parameters, gradients and Adam's moments are all `dict[str, np.ndarray]` with the
parameter names of the model contract (docs/model.md §4.6), so an optimizer state can be checkpointed next to the
parameters under the same names. Nothing here mutates its arguments. The updates use
only arithmetic operators and array methods, so the same code steps torch tensors too
(torch_impl's trainer), on whatever device they live.

The schedules count epochs from 0 and batches from 0 within an epoch.
"""
import math

import numpy as np

from .errors import DivergedError


def adam_init(params):
    """Adam's initial state (Kingma & Ba 2015, Algorithm 1): step 0, zero moments.

    params: dict name -> array
    Returns {"step": 0, "m": {...zeros}, "v": {...zeros}}.
    """
    zeros = {name: np.zeros_like(value) for name, value in params.items()}
    return {"step": 0, "m": zeros, "v": dict(zeros)}


def adam_update(params, grads, state, lr, eps=1e-4, beta1=0.9, beta2=0.999, weight_decay=0.0):
    """One Adam step (Kingma & Ba 2015) in Lasagne's form, the optimizer of the paper's code,
    with AdamW's decoupled weight decay (Loshchilov & Hutter 2019) when weight_decay > 0.

    params, grads: dict name -> array (same names and shapes)
    state: {"step": int, "m": dict, "v": dict} from `adam_init` or a previous update
    lr: the step size of this update (the schedule's value)
    eps: added to sqrt(v); the paper's code uses 1e-4 rather than Adam's usual 1e-8
    weight_decay: lambda of the decay; 0 (the paper's training) takes Adam's step alone
    Returns (new_params, new_state).

    With t = step + 1:
        m_t = beta1 m + (1 - beta1) g,   v_t = beta2 v + (1 - beta2) g^2
        theta_t = (1 - lr * lambda) theta - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m_t / (sqrt(v_t) + eps)
    (Lasagne folds both bias corrections into the step size, so eps meets the
    uncorrected sqrt(v_t): this is Algorithm 1's "more efficient" ordering.)
    The decay is decoupled from the gradient, as torch.optim.AdamW's: an L2 penalty added to the
    loss would be rescaled by Adam's 1/sqrt(v_t), and clipped with the gradient, so that its
    strength would differ from parameter to parameter.
    """
    t = state["step"] + 1
    # a Python float, so that float32 parameters stay float32 (NumPy 2 promotes with np.float64)
    step_size = float(lr * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t))
    new_params, m, v = {}, {}, {}
    for name, g in grads.items():
        m[name] = beta1 * state["m"][name] + (1.0 - beta1) * g
        v[name] = beta2 * state["v"][name] + (1.0 - beta2) * g * g
        # a Python float again, and exactly 1 without decay
        new_params[name] = float(1.0 - lr * weight_decay) * params[name] - step_size * m[name] / (v[name] ** 0.5 + eps)
    return new_params, {"step": t, "m": m, "v": v}


def global_norm(grads):
    """The Euclidean norm of all gradients taken together, sqrt(sum_i ||g_i||^2)."""
    return float(sum((g * g).sum() for g in grads.values())) ** 0.5  # one transfer from a GPU


def clip_gradients(grads, max_norm=1.0, clip_value=10.0):
    """Gradient clipping of the paper's code: total-norm rescaling, then element-wise clipping.

    grads: dict name -> array
    max_norm: rescale all gradients jointly so that their global norm is <= max_norm
        (Lasagne's `total_norm_constraint`; direction kept)
    clip_value: then clip every element to [-clip_value, clip_value]
    Returns (clipped_grads, norm_before) — the norm is logged as in the paper's code.
    Raises DivergedError when the norm is NaN or infinite: such a step is never taken.
    """
    norm = global_norm(grads)
    if not math.isfinite(norm):
        raise DivergedError(f"the gradients hold NaN or inf values (global norm {norm})")
    # max(norm, max_norm) keeps the scale at 1 below the threshold and avoids 0/0
    scale = max_norm / max(norm, max_norm)
    clipped = {name: (g * scale).clip(-clip_value, clip_value) for name, g in grads.items()}
    return clipped, norm


def kl_weight(epoch, batch, batches_per_epoch, kl_start=0.2, anneal_epochs=20):
    """KL annealing ("temperature" of the paper's code): the weight beta of the KL term.

    beta rises linearly, once per batch, from `kl_start` at the first batch of epoch 0
    to 1 after `anneal_epochs` epochs, and stays at 1 from then on; anneal_epochs = 0
    means no annealing. This is the paper's LinearDecaySchedule(reverse=True,
    y_range=(kl_start, 1)) over iterations.
    """
    if anneal_epochs == 0:
        return 1.0
    progress = (epoch * batches_per_epoch + batch) / (anneal_epochs * batches_per_epoch)
    return min(1.0, kl_start + (1.0 - kl_start) * progress)


def learning_rate(epoch, lr=1e-3, decay_start=20, decay=1.2):
    """Learning-rate schedule of the paper's code: constant, then exponential decay.

    Epochs 0 .. decay_start run at `lr`; epoch decay_start + k runs at lr / decay^k.
    (The paper's code sets the next epoch's rate after training epoch e with factor
    decay^-(e - decay_start + 1) from e = decay_start on; this is the same sequence.)
    """
    return lr / decay ** max(0, epoch - decay_start)
