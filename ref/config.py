"""The model's configuration (docs/model.md §4.2, §7.2, §8.2): one dataclass of the contract's fields.

Both implementations share `Config`; every checkpoint stores the `Config` it was trained
with. The checks of settings live here too, for the application's training settings
(`srnn.config.TrainConfig`) to use.
"""
from dataclasses import asdict, dataclass, fields

from .errors import ConfigError

MODELS = ("srnn", "vrnn", "rnn")  # docs/model.md §4, §8, §7
INFERENCE = ("smoothing", "filtering")
EMISSION = ("bernoulli", "gaussian")


class DictFields:
    """Conversion of a configuration dataclass to a dict and back (the JSON of run directories
    and checkpoints); unknown fields are refused by name."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict):
        unknown = set(mapping) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**mapping)


@dataclass(frozen=True)
class Config(DictFields):
    """A model's architecture; defaults are the SRNN paper's (docs/model.md §4.2). The VRNN
    (§8.2) and the RNN (§7.2) read the fields they have and ignore the others."""

    model: str = "srnn"
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
            check_int(name, getattr(self, name), minimum=1)
        for name in ("embed_layers", "mlp_layers"):
            check_int(name, getattr(self, name), minimum=0)
        check_choice("model", self.model, MODELS)
        check_choice("inference", self.inference, INFERENCE)
        check_choice("emission", self.emission, EMISSION)
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

    @property
    def ez_dim(self) -> int:
        """Width of the VRNN's feature extractor of z_t, φ_z(z_t) (docs/model.md §8.2)."""
        return self.h_dim if self.embed_layers > 0 else self.z_dim


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(what, value, choices):
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {tuple(choices)}")


def is_real(value):
    """A number that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
