"""srnn's PyTorch implementation of the models of docs/model.md (the SRNN, the VRNN, the RNN), for
training full-size models fast.

`model_for(config)` builds the module of `config.model`, which computes exactly what `ref` computes
(tests/test_torch.py proves it on the ELBO and every gradient); `engine.TorchEngine` holds it and
Adam's state for the project's training loop (`srnn train --impl torch`). It imports from `ref` only
the contract: the configuration, the parameter names and shapes, the input checks, and the optimizer
functions.
"""
from ref.checks import check_config

from .model import SRNN, SequenceModel
from .rnn import RNN
from .vrnn import VRNN

MODELS = {"srnn": SRNN, "vrnn": VRNN, "rnn": RNN}  # config.model -> its module (docs/model.md §4, §8, §7)


def model_for(config, seed=0) -> SequenceModel:
    """The module of `config.model`, initialised as `ref.init_params(config, seed)` (docs/model.md §4.7)."""
    check_config(config)
    return MODELS[config.model](config, seed)


__all__ = ["MODELS", "RNN", "SRNN", "VRNN", "SequenceModel", "model_for"]
