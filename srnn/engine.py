"""Engines: what the loops of `srnn.loop` and `srnn.evaluation` know of an implementation.

The loops own all randomness (data order, noise), the schedules and the files; an engine
holds one model's parameters and Adam's state and computes. `Engine` is the protocol every
implementation meets: `RefEngine` here (ref, gradients by autograd) and
`torch_impl.engine.TorchEngine` (PyTorch on a CPU, a GPU or several processes), both computing
the model of docs/model.md. Because the loops draw the noise, a seed gives the same run on
either, and a run may resume on the other.

`ENGINES` names them for the command line (`--impl`); `make_engine` builds one.
"""
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import autograd.numpy as anp
import numpy as np
from autograd.differential_operators import grad_and_aux
from autograd.tracer import getval

from ref import Config, elbo_and_states, fast, log_importance_weights, sample
from ref.config import check_choice
from ref.errors import ConfigError
from ref.optim import adam_init, adam_update, clip_gradients

from .splits import Batch


@runtime_checkable
class Engine(Protocol):
    """One model in one implementation, as the loops drive it.

    Parameters and Adam's state go in and out as NumPy dicts under the contract's names
    (what checkpoints hold). The carried states (d, z) of truncated BPTT are opaque to the
    loops: whatever `train_batch` or `elbo_and_states` returned is handed back as d_0, z_0.
    `is_main` is False only in the data-parallel worker processes of torch_impl, which train
    but leave files, validation and printing to rank 0.
    """

    config: Config
    is_main: bool

    def describe(self) -> dict:
        """What runs, for config.json: the implementation and its settings."""

    def for_model(self, config: Config, params: dict) -> "Engine":
        """An engine with the same settings holding another model (the best checkpoint, a teacher)."""

    def load(self, params: dict, adam: dict | None = None) -> "Engine":
        """Take parameters and Adam's state (fresh when None); returns self."""

    def state(self) -> tuple[dict, dict]:
        """(params, adam) as NumPy dicts."""

    def train_batch(self, batch: Batch, eps: np.ndarray, kl_weight: float, lr: float, d_0: Any, z_0: Any, *,
                    adam_eps: float, max_grad_norm: float, clip_value: float,
                    weight_decay: float) -> tuple[float, Any, Any]:
        """One Adam step on the batch's loss −ΣL_i/ΣT_i (gradients rescaled to max_grad_norm, then
        clipped to ±clip_value; the parameters decayed by weight_decay, ref.optim.adam_update);
        returns ΣL_i of the batch and the states at each T_i."""

    def elbo_and_states(self, batch: Batch, eps: np.ndarray, d_0: Any, z_0: Any) -> tuple[np.ndarray, Any, Any]:
        """L_i (B,) with β = 1, and the states at each T_i."""

    def any_process(self, flag: bool) -> bool:
        """Whether `flag` holds in any process of the run: the processes of a data-parallel run
        decide together what only rank 0 knows (that validation says stop)."""

    def log_importance_weights(self, batch: Batch, eps: np.ndarray, d_0: Any, z_0: Any) -> np.ndarray:
        """log w_k of each sequence, (K, B), for eps (K, B, T, z_dim)."""

    def sample(self, eps_z: np.ndarray, noise_x: np.ndarray) -> np.ndarray:
        """Pieces (B, T, x_dim) drawn with the given noise (ref.draw_sample_noise)."""


@dataclass(frozen=True)
class EngineOptions:
    """Settings of one implementation: `backend` for ref; `device`, `bf16` and `data_parallel`
    (None: when run by torchrun) for torch."""

    backend: str = "numba"
    device: str | None = None
    bf16: bool = False
    data_parallel: bool | None = None


class RefEngine:
    """ref as an `Engine`: parameters and Adam's state as NumPy dicts, gradients by autograd,
    the recurrences on `backend` ("numba" or "numpy")."""

    is_main = True

    def __init__(self, config, dtype="float64", backend="numba"):
        self.config, self.dtype, self.backend = config, dtype, backend
        self.params = self.adam = None

    def _announce_kernels(self):
        """Say so before the kernels' first call in this process, which may compile them (the VRNN has none)."""
        if self.backend == "numba" and self.config.model != "vrnn" and not fast.kernels_loaded():
            print("srnn: loading the numba kernels (the first run after an install compiles them: about 25 s)",
                  flush=True)

    def describe(self):
        return {"impl": "ref", "backend": self.backend, "dtype": self.dtype}

    def any_process(self, flag):
        return flag

    def for_model(self, config, params):
        return RefEngine(config, self.dtype, self.backend).load(params)

    def load(self, params, adam=None):
        self.params = {name: np.asarray(value, self.dtype) for name, value in params.items()}
        self.adam = adam if adam is not None else adam_init(self.params)
        return self

    def state(self):
        return self.params, self.adam

    def train_batch(self, batch, eps, kl_weight, lr, d_0, z_0, *, adam_eps, max_grad_norm, clip_value, weight_decay):
        self._announce_kernels()
        grads, (L, d_last, z_last) = _loss_grad_and_aux(self.params, batch.u, batch.x, batch.mask, eps, kl_weight,
                                                         d_0, z_0, self.config, self.backend)
        grads, _ = clip_gradients(grads, max_grad_norm, clip_value)
        self.params, self.adam = adam_update(self.params, grads, self.adam, lr, adam_eps, weight_decay=weight_decay)
        # the states become the next batch's constants (truncated BPTT)
        return float(np.sum(getval(L))), getval(d_last), getval(z_last)

    def elbo_and_states(self, batch, eps, d_0, z_0):
        self._announce_kernels()
        return elbo_and_states(self.params, batch.u, batch.x, batch.mask, eps, self.config, 1.0, d_0, z_0,
                               self.backend)

    def log_importance_weights(self, batch, eps, d_0, z_0):
        self._announce_kernels()
        return log_importance_weights(self.params, batch.u, batch.x, batch.mask, eps, self.config, d_0, z_0,
                                      self.backend)

    def sample(self, eps_z, noise_x):
        return sample(self.params, self.config, eps_z, noise_x)


def _loss(params, u, x, mask, eps, kl_weight, d_0, z_0, config, backend):
    """−ΣL_i / ΣT_i of a batch, and (L, d_last, z_last) as the auxiliary output."""
    L, d_last, z_last = elbo_and_states(params, u, x, mask, eps, config, kl_weight, d_0, z_0, backend)
    return -anp.sum(L) / np.sum(mask), (L, d_last, z_last)


# one forward and one backward pass give the gradient and the carried states
_loss_grad_and_aux = grad_and_aux(_loss)


def _ref_engine(config, dtype, options):
    return RefEngine(config, dtype, options.backend)


def _torch_engine(config, dtype, options):
    try:  # PyTorch is optional: imported only when asked for
        from torch_impl.engine import TorchEngine
    except ImportError as e:
        raise ConfigError(f"the torch implementation needs PyTorch ({e}); install it with: "
                          f"pip install 'srnn[torch]'") from None
    return TorchEngine(config, dtype, options.device, options.bf16, options.data_parallel)


ENGINES = {"ref": _ref_engine, "torch": _torch_engine}  # --impl NAME -> a factory (config, dtype, options)


def make_engine(impl, config, dtype, options=EngineOptions()):
    """The engine of implementation `impl` ("ref" or "torch") for `config`, computing in `dtype`."""
    check_choice("implementation", impl, ENGINES)
    return ENGINES[impl](config, dtype, options)
