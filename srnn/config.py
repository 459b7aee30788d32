"""Training settings: how a model is trained and evaluated (`TrainConfig`), beside the model's
own `ref.Config`. Both are saved in every run directory and checkpoint.
"""
import math
from dataclasses import dataclass

from ref.bounds import BACKENDS
from ref.config import DictFields, check_choice, check_int, is_real
from ref.errors import ConfigError

from .data import DATASETS, VARIANTS
from .synthetic import VARIANT as SYNTHETIC_VARIANT

DTYPES = ("float64", "float32")
TRAIN_LAYOUTS = ("as_stored", "streams")  # the train split as its files hold it, or srnn.splits.as_streams of it


@dataclass(frozen=True)
class TrainConfig(DictFields):
    """How a model is trained and evaluated; defaults are the paper's code's settings.

    Epochs count from 0 inside the schedules (see ref/optim.py).
    """

    dataset: str = "synthetic"      # "synthetic" or one of srnn.data.DATASETS
    variant: str = "boulanger2012"  # one of srnn.data.VARIANTS ("teacher" for "synthetic", whatever is given)
    train_layout: str = "as_stored"  # or "streams": whole train pieces as truncated-BPTT streams
    epochs: int = 50
    batch_size: int = 16            # srnn2016 needs 16: its streams are laid out for it
    lr: float = 1e-3
    adam_eps: float = 1e-4
    max_grad_norm: float = 1.0
    clip_value: float = 10.0
    weight_decay: float = 0.0       # AdamW's decoupled decay (ref/optim.py); 0: the paper's Adam
    kl_start: float = 0.2
    kl_anneal_epochs: int = 20
    lr_decay_start: int = 20
    lr_decay: float = 1.2
    valid_every: int = 1
    patience: int = 0               # stop once this many epochs pass without a better validation ELBO (0: never)
    iw_samples: int = 100           # K of the importance-weighted bound on the test split
    seed: int = 0
    dtype: str = "float64"
    backend: str = "numba"          # the recurrences as numba kernels, or "numpy" (readable, slower): ref.BACKENDS

    def __post_init__(self):
        check_choice("dataset", self.dataset, ("synthetic", *DATASETS))
        check_choice("variant", self.variant, VARIANTS + (SYNTHETIC_VARIANT,) if self.dataset == "synthetic" else VARIANTS)
        if self.dataset == "synthetic":  # no preprocessing variant: the data come from the teacher
            object.__setattr__(self, "variant", SYNTHETIC_VARIANT)
        for name in ("epochs", "batch_size", "valid_every", "iw_samples"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("kl_anneal_epochs", "lr_decay_start", "seed", "patience"):
            check_int(name, getattr(self, name), minimum=0)
        for name in ("lr", "adam_eps", "max_grad_norm", "clip_value"):
            value = getattr(self, name)
            if not is_real(value) or not 0 < value < math.inf:
                raise ConfigError(f"{name} must be a positive number (and finite), got {value!r}")
        if self.lr > 1:
            raise ConfigError(f"lr must be at most 1 (Adam moves each parameter by about lr per step), got {self.lr!r}")
        if not is_real(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"weight_decay must be a number >= 0 (and finite), got {self.weight_decay!r}")
        if self.lr * self.weight_decay >= 1:
            raise ConfigError(f"lr * weight_decay must be below 1 (each step multiplies the parameters by "
                              f"1 - lr * weight_decay), got {self.lr!r} * {self.weight_decay!r}")
        if not is_real(self.kl_start) or not 0 <= self.kl_start <= 1:
            raise ConfigError(f"kl_start must be in [0, 1], got {self.kl_start!r}")
        if not is_real(self.lr_decay) or not self.lr_decay >= 1:
            raise ConfigError(f"lr_decay must be a number >= 1, got {self.lr_decay!r}")
        if 0 < self.patience < self.valid_every:
            raise ConfigError(f"patience ({self.patience}) must be at least valid_every ({self.valid_every}): "
                              f"the epochs without a better validation ELBO are counted between validations")
        check_choice("train_layout", self.train_layout, TRAIN_LAYOUTS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("backend", self.backend, BACKENDS)

    def step_options(self) -> dict:
        """The settings of each optimizer step, as srnn.engine.Engine.train_batch takes them."""
        return dict(adam_eps=self.adam_eps, max_grad_norm=self.max_grad_norm, clip_value=self.clip_value,
                    weight_decay=self.weight_decay)
