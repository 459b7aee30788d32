"""The embedded default dataset: piano rolls sampled from a fixed, seeded "teacher" SRNN.

It needs no files, so a newcomer can train at once, and because the teacher is known its
own importance-weighted bound with many paths estimates the data's true log-likelihood,
the number a trained student's test ELBO can be held against (`srnn.evaluation.evaluate` reports
it beside the student's when given `Dataset.teacher`).

The teacher is a small SRNN whose posterior equals its prior (post_mu outputs zero with
Resq, and both log-variances are the same constant). Its IW bound is then prior-proposal
importance sampling, which the 2-dimensional z with variance 0.1 keeps tight: on the
first 32 test sequences it is −17.062 nats per step at K = 1, −17.002 at K = 100 and
−17.001 at K = 1000, so a few hundred paths give log p(x) to about 0.002 nats per step.
"""
import numpy

from ref import Config, draw_sample_noise, init_params, sample

from .splits import Dataset, Split

TEACHER_CONFIG = Config(x_dim=88, d_dim=16, z_dim=2, a_dim=16, h_dim=32, embed_layers=1, mlp_layers=1)
TEACHER_SEED = 1
DATA_SEED = 2016
SPLIT_SIZES = {"train": 256, "valid": 64, "test": 64}
VARIANT = "teacher"  # in place of a preprocessing variant: the data come from the teacher
LENGTHS = (20, 60)  # each sequence's length is uniform on this range, so batches carry masks


def teacher_params() -> dict:
    """The teacher's parameters: the seeded initialisation, made sparse, sharp and with q = p."""
    p = init_params(TEACHER_CONFIG, TEACHER_SEED)
    p["emit.out.W"] *= 4.0           # notes depend strongly on d_t and z_t ...
    p["emit.out.b"][:] = -3.0        # ... and are sparse, about 4 of 88 keys per frame
    p["prior_mu.out.W"] *= 2.0       # z_t moves with z_{t−1} and d_t
    log_var = numpy.log(0.1)
    for name in ("prior_logvar", "post_logvar"):
        p[f"{name}.out.W"][:] = 0.0
        p[f"{name}.out.b"][:] = log_var
    p["post_mu.out.W"][:] = 0.0      # with Resq, mu_q = mu_p: the teacher's q is its prior
    return p


def load_synthetic():
    """The synthetic `Dataset`: whole sequences of 20–60 steps, u_1 = 0, teacher attached."""
    params = teacher_params()
    rng = numpy.random.default_rng(DATA_SEED)
    splits = {}
    for name, n in SPLIT_SIZES.items():
        lengths = rng.integers(LENGTHS[0], LENGTHS[1] + 1, size=n)
        T = int(lengths.max())
        x = sample(params, TEACHER_CONFIG, *draw_sample_noise(rng, TEACHER_CONFIG, n, T))
        mask = (numpy.arange(T)[None, :] < lengths[:, None]).astype(float)
        x = x * mask[..., None]
        u = numpy.concatenate([numpy.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
        splits[name] = Split(u=u, x=x, mask=mask)
    return Dataset(name="synthetic", variant=VARIANT, teacher=(TEACHER_CONFIG, params), **splits)

