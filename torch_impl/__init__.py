"""srnn's PyTorch implementation of the SRNN of SPEC.md, for training full-size models fast.

`SRNN(config)` computes exactly what `ref` computes (tests/test_torch.py proves it on the
ELBO and every gradient); `train` holds the training loop behind `srnn train --impl torch`.
"""
from .model import SRNN

__all__ = ["SRNN"]
