"""Hypothesis settings for the whole suite: no per-example deadline (JIT compilation and
autograd's first calls are slow, not wrong), and failures print how to reproduce them."""
import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
