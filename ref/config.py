"""Configuration: one dataclass for the model (SPEC.md's fields), one for training.

Both implementations share `Config`; the CLI's defaults come from these classes and
every checkpoint stores the `Config` it was trained with.
"""
from dataclasses import asdict, dataclass, fields

from .errors import ConfigError

INFERENCE = ("smoothing", "filtering")
EMISSION = ("bernoulli", "gaussian")


class _Fields:
    """to_dict / from_dict for the configuration dataclasses (JSON in run directories and checkpoints)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict):
        unknown = set(mapping) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**mapping)


@dataclass(frozen=True)
class Config(_Fields):
    """The SRNN's architecture; defaults are the paper's (SPEC.md, "Configuration")."""

    x_dim: int = 88
    d_dim: int = 300
    z_dim: int = 100
    a_dim: int = 300
    h_dim: int = 500
    embed_layers: int = 2
    mlp_layers: int = 1
    inference: str = "smoothing"
    residual_q: bool = True
    emission: str = "bernoulli"
    clip: float = 3.0
    var_floor: float = 1e-6

    def __post_init__(self):
        for name in ("x_dim", "d_dim", "z_dim", "a_dim", "h_dim"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("embed_layers", "mlp_layers"):
            _check_int(name, getattr(self, name), minimum=0)
        if self.inference not in INFERENCE:
            raise ConfigError(f"unknown inference {self.inference!r}; choose one of {INFERENCE}")
        if self.emission not in EMISSION:
            raise ConfigError(f"unknown emission {self.emission!r}; choose one of {EMISSION}")
        if not isinstance(self.residual_q, bool):
            raise ConfigError(f"residual_q must be True or False, got {self.residual_q!r}")
        if not self.clip > 0:
            raise ConfigError(f"clip must be positive, got {self.clip!r}")
        if not self.var_floor >= 0:
            raise ConfigError(f"var_floor must be non-negative, got {self.var_floor!r}")

    @property
    def e_dim(self) -> int:
        """Width of the feature extractor's output e(u_t), e(x_t)."""
        return self.h_dim if self.embed_layers > 0 else self.x_dim



def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


# Named model sizes. "paper" is the paper's; "small" trains in minutes on a laptop CPU.
PRESETS = {
    "paper": {},
    "small": dict(d_dim=64, z_dim=16, a_dim=64, h_dim=128, embed_layers=1, mlp_layers=1),
}


def preset(name: str, **overrides) -> Config:
    """The model `Config` of a named preset, with `overrides` applied."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides})


DTYPES = ("float64", "float32")
BACKENDS = ("numba", "numpy")  # ref/fast.py's kernels, or the readable loops of ref/model.py
TRAIN_LAYOUTS = ("as_stored", "streams")  # the train split as its files hold it, or ref.data.as_streams of it


@dataclass(frozen=True)
class TrainConfig(_Fields):
    """How a model is trained and evaluated; defaults are the paper's code's settings.

    Epochs count from 0 inside the schedules (see ref/optim.py).
    """

    dataset: str = "synthetic"      # "synthetic" or one of ref.data.DATASETS
    variant: str = "boulanger2012"  # one of ref.data.VARIANTS (ignored by "synthetic")
    train_layout: str = "as_stored"  # or "streams": whole train pieces as truncated-BPTT streams
    epochs: int = 50
    batch_size: int = 16            # srnn2016 needs 16: its streams are laid out for it
    lr: float = 1e-3
    adam_eps: float = 1e-4
    max_grad_norm: float = 1.0
    clip_value: float = 10.0
    kl_start: float = 0.2
    kl_anneal_epochs: int = 20
    lr_decay_start: int = 20
    lr_decay: float = 1.2
    valid_every: int = 1
    iw_samples: int = 100           # K of the importance-weighted bound on the test split
    seed: int = 0
    dtype: str = "float64"
    backend: str = "numba"          # the recurrences as numba kernels, or "numpy" (readable, slower)

    def __post_init__(self):
        from .data import DATASETS, VARIANTS  # here, not at the top: ref.data imports this module

        if self.dataset not in ("synthetic", *DATASETS):
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {('synthetic', *DATASETS)}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        for name in ("epochs", "batch_size", "valid_every", "iw_samples"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("kl_anneal_epochs", "lr_decay_start", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("lr", "adam_eps", "max_grad_norm", "clip_value"):
            if not _is_real(getattr(self, name)) or not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not _is_real(self.kl_start) or not 0 <= self.kl_start <= 1:
            raise ConfigError(f"kl_start must be in [0, 1], got {self.kl_start!r}")
        if not _is_real(self.lr_decay) or not self.lr_decay >= 1:
            raise ConfigError(f"lr_decay must be a number >= 1, got {self.lr_decay!r}")
        if self.train_layout not in TRAIN_LAYOUTS:
            raise ConfigError(f"unknown train_layout {self.train_layout!r}; choose one of {TRAIN_LAYOUTS}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {DTYPES}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")



def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
