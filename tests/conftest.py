"""Hypothesis settings for the whole suite: no per-example deadline (JIT compilation and
autograd's first calls are slow, not wrong), and failures print how to reproduce them; and a
training loop whose validation says what a test needs it to."""
import os

import pytest
from hypothesis import settings

from srnn import evaluation, loop

settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def scripted_validation(monkeypatch):
    """script(values): the training loop's validation ELBOs are `values` in turn (the test split's,
    whose call passes the teacher, is the real one); returns the list of the validations made."""
    def script(values):
        made = []

        def evaluate(engine, split, iw_samples, seed, *teacher):
            metrics = evaluation.evaluate(engine, split, iw_samples, seed, *teacher)
            if not teacher:
                metrics["elbo"]["sequence_averaged"] = values[len(made)]
                made.append(values[len(made)])
            return metrics

        monkeypatch.setattr(loop, "evaluate", evaluate)
        return made
    return script
