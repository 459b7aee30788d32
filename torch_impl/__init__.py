"""srnn's PyTorch implementation of the SRNN of SPEC.md: it arrives with issue 4.

Until then this package is empty; `ref` is the implementation the CLI runs.
"""
