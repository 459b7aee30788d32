"""srnn's PyTorch implementation of the SRNN of docs/model.md, for training full-size models fast.

`SRNN(config)` computes exactly what `ref` computes (tests/test_torch.py proves it on the
ELBO and every gradient); `engine.TorchEngine` holds it and Adam's state for the project's
training loop (`srnn train --impl torch`). It imports from `ref` only the contract: the
configuration, the parameter names and shapes, the input checks, and the optimizer functions.
"""
from .model import SRNN

__all__ = ["SRNN"]
