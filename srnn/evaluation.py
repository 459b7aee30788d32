"""Evaluation of a trained model on a split: the ELBO and the importance-weighted bound of
every sequence, summarised in both per-step conventions with standard errors over sequences.

Memory stays bounded whatever the split: batches of at most EVAL_BATCH_SIZE sequences, and
the IW bound's paths run one sequence at a time in groups sized by EVAL_MEMORY. The noise
comes from a generator seeded by the caller, so repeated evaluations are comparable.
"""
import re
import sys

import numpy as np
from scipy.special import logsumexp
from tqdm import tqdm

from . import ctrl_c

EVAL_BATCH_SIZE = 16
EVAL_MEMORY = 512 * 2**20  # bytes of per-step model states one evaluation chunk may hold


def evaluate(engine, split, iw_samples, seed, teacher=None):
    """The two per-step metrics (docs/model.md §2) of the ELBO and of the K-path importance-weighted bound on a split.

    engine: the model, loaded in an engine (srnn.engine: `make_engine(impl, config,
    dtype).load(params)`); split: a srnn.splits.Split; iw_samples: K (0 = ELBO only);
    seed: the noise generator's seed, so repeated evaluations are comparable;
    teacher: an engine holding the synthetic data's teacher (Dataset.teacher); when set
    (and K > 0), its own K-path log-likelihood estimate on the same split is added as
    "teacher_iw".

    Returns {"num_sequences", "num_frames", "elbo": {...}, "iw": {..., "K"} (if K > 0),
    "teacher_iw": {..., "K"} (if teacher)}, each {...} holding "sequence_averaged"
    (mean_i L_i/T_i), "frame_weighted" (ΣL_i/ΣT_i), both in nats per step, and their
    standard errors over sequences "sequence_averaged_se", "frame_weighted_se".
    """
    elbos, bounds = per_sequence_bounds(engine, split, iw_samples, seed)
    lengths = split.lengths
    metrics = {"num_sequences": len(split), "num_frames": split.num_frames, "elbo": summarize(elbos, lengths)}
    if iw_samples:
        metrics["iw"] = {"K": iw_samples, **summarize(bounds, lengths)}
    if teacher is not None and iw_samples:
        teacher_bounds = per_sequence_bounds(teacher, split, iw_samples, seed)[1]
        metrics["teacher_iw"] = {"K": iw_samples, **summarize(teacher_bounds, lengths)}
    return metrics


def elbo_over_paths(engine, split, paths, seed):
    """The ELBO of every sequence averaged over `paths` independent noise paths, in both per-step
    metrics with their standard errors over sequences, and "*_path_se": the standard error of
    each metric over the paths, the part of its uncertainty that is the estimate's own noise
    (a one-path ELBO of the same checkpoint moves by about this times sqrt(paths)); and
    "per_sequence" and "lengths", the path-averaged L_i and the T_i of every sequence."""
    L = np.stack([per_sequence_bounds(engine, split, 0, [seed, path])[0] for path in range(paths)])  # (P, N)
    metrics = {"paths": paths, **summarize(L.mean(0), split.lengths)}
    # each L_i and T_i, so that two models scored on the same split compare piece by piece
    metrics["per_sequence"], metrics["lengths"] = L.mean(0).tolist(), [int(T) for T in split.lengths]
    for key in ("sequence_averaged", "frame_weighted"):
        per_path = [summarize(L_path, split.lengths)[key] for L_path in L]
        metrics[key + "_path_se"] = float(np.std(per_path, ddof=1) / np.sqrt(paths))
    return metrics


def per_sequence_bounds(engine, split, iw_samples, seed):
    """The ELBO L_i and the K-path IW bound of every sequence of a split: two (N,) arrays.

    A split in stream layout is evaluated chunk by chunk with states carried across
    batches (each chunk counts as a sequence). A split of whole pieces is evaluated one
    piece at a time, trimmed to its length, with its slice of its batch's noise, so the
    L_i are the padded batch's: a padded batch computes every step of its longest piece
    for each piece (Muse's test split: 2.7 times its own steps; benchmarks/bench_eval.py).
    Memory stays bounded: batches of at most EVAL_BATCH_SIZE sequences, IW paths run one
    sequence at a time in groups sized by EVAL_MEMORY. With iw_samples = 0 the second array is None.
    """
    rng = np.random.default_rng(seed)
    config = engine.config
    batch_size = split.streams or _eval_batch_size(config, split.x.shape[1])
    elbos, bounds = [], []
    d_0 = z_0 = None
    batches = split.batches(batch_size)
    if iw_samples:  # minutes on long pieces: show where it is (on a terminal only)
        batches = tqdm(batches, total=-(-len(split) // batch_size), desc=f"IW bound, K={iw_samples}",
                       leave=False, disable=None, file=sys.stderr)
    for batch in batches:
        if not batch.carry:
            d_0 = z_0 = None
        eps = rng.standard_normal((*batch.mask.shape, config.z_dim))
        if split.streams:  # chunks of one length, whose states carry to the next batch
            L, d_last, z_last = engine.elbo_and_states(batch, eps, d_0, z_0)
        else:  # whole pieces, each alone, trimmed to its length
            L, d_last, z_last = np.concatenate([engine.elbo_and_states(one, eps[row, steps], None, None)[0]
                                                for row, steps, one in batch.each_sequence()]), None, None
        elbos.append(np.asarray(L))
        if iw_samples:
            bounds.append(_iw_bound(engine, batch, iw_samples, rng, d_0, z_0))
        d_0, z_0 = d_last, z_last
        ctrl_c.check()
    return np.concatenate(elbos), (np.concatenate(bounds) if iw_samples else None)


def _eval_batch_size(config, T):
    """Sequences per evaluation batch such that one path's per-step states fit EVAL_MEMORY."""
    return int(max(1, min(EVAL_BATCH_SIZE, EVAL_MEMORY // (T * _bytes_per_step(config)))))


def _bytes_per_step(config):
    """Rough float64 bytes of the states one sequence keeps per step and path (d, a, z's Gaussians, MLPs, x)."""
    return 8 * (config.d_dim + config.a_dim + 5 * config.z_dim + 2 * config.h_dim + 3 * config.x_dim)


def _iw_bound(engine, batch, K, rng, d_0, z_0):
    """log (1/K) Σ_k w_k of each sequence of a batch.

    The noise is drawn group by group as slices of one (K, B, T, z_dim) array, so the
    bound does not depend on the grouping. The paths then run one sequence at a time,
    trimmed to its length, as many per call as EVAL_MEMORY holds: d and a, computed once
    per call, serve all its paths, where a padded batch of long pieces fits one path per
    call and recomputes them for every path (Piano: 7.5x faster, benchmarks/bench_eval.py).
    """
    config, (B, T) = engine.config, batch.mask.shape
    path_bytes = T * (_bytes_per_step(config) + 8 * B * config.z_dim)  # a path's states, and its noise for the batch
    group = int(max(1, min(K, EVAL_MEMORY // path_bytes)))
    sequences = [(row, steps, one, [None if s is None else s[row] for s in (d_0, z_0)])  # with its carried states
                 for row, steps, one in batch.each_sequence()]
    log_w = np.empty((K, B))
    for start in range(0, K, group):
        eps = rng.standard_normal((min(group, K - start), B, T, config.z_dim))
        for i, (row, steps, one, states) in enumerate(sequences):
            log_w[start:start + len(eps), i] = np.asarray(
                engine.log_importance_weights(one, eps[:, row, steps], *states))[:, 0]
    return logsumexp(log_w, axis=0) - np.log(K)


def summarize(L, lengths):
    """Both per-step metrics (docs/model.md §2) for per-sequence values L (N,) over lengths T (N,).

    Standard errors over sequences: of a mean for mean_i L_i/T_i, and the ratio
    estimator's (delta method) for ΣL_i/ΣT_i; None for a single sequence.
    """
    L, T = np.asarray(L, float), np.asarray(lengths, float)
    N = len(L)
    per_step = L / T
    frame_weighted = L.sum() / T.sum()
    se = lambda v: float(np.sqrt(np.sum(v**2) / (N * (N - 1)))) if N > 1 else None
    return {
        "sequence_averaged": float(per_step.mean()),
        "sequence_averaged_se": se(per_step - per_step.mean()),
        "frame_weighted": float(frame_weighted),
        "frame_weighted_se": se(L - frame_weighted * T) / float(T.mean()) if N > 1 else None,
    }


def format_metrics(metrics):
    """Printable lines: each bound, both metrics with their standard errors, nats per step."""
    def fmt(value, se):
        return f"{value:9.4f}" + (f" ± {se:.4f}" if se is not None else "")

    lines = [f"{metrics['num_sequences']} sequences, {metrics['num_frames']} frames; nats per step "
             f"(sequence-averaged = mean_i L_i/T_i, frame-weighted = ΣL_i/ΣT_i)"]
    names = {"elbo": "ELBO", "iw": "IW bound", "teacher_iw": "teacher log-lik. (IW)"}
    for key, m in metrics.items():  # a result file's test metrics name theirs iw_K<K> and elbo_paths<P>
        if isinstance(m, dict) and "sequence_averaged" in m:
            label = (names[re.sub(r"_(K|paths)\d+$", "", key)] + (f", K={m['K']}" if "K" in m else "")
                     + (f", mean of {m['paths']} paths" if "paths" in m else ""))
            lines.append(f"  {label:<30} sequence-averaged {fmt(m['sequence_averaged'], m['sequence_averaged_se'])}"
                         f"   frame-weighted {fmt(m['frame_weighted'], m['frame_weighted_se'])}")
    return "\n".join(lines)
