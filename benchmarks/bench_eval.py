"""Time of evaluation's two bounds: sequences run alone, trimmed to their length, against the padded batch.

    python benchmarks/bench_eval.py [--dataset piano] [--K 8] [--out benchmarks/results/eval_piano_cpu.json]

Measured in one run, on this machine, with the paper's model (d 300, z 100, a 300, h 500;
initial parameters, as the time does not depend on their values) in float64 as evaluation
runs, on `--dataset`'s srnn2016 test split as `srnn.evaluation.per_sequence_bounds` batches it
(Piano: batches of 12 pieces, the first padded to 2,304 steps):
- the ELBO of every test piece: by sequence, `per_sequence_bounds`'s way, each piece alone with
  its slice of its batch's noise, against the padded batch, which computes every step of the
  batch's longest piece for each piece;
- the IW bound with K paths on the first batch: by sequence, `srnn.evaluation._iw_bound`'s way:
  each sequence trimmed to its length, as many paths per call as EVAL_MEMORY holds, so d and a
  are computed once per call; against the padded batch in every call, the paths in groups that
  fit the same EVAL_MEMORY (one path per call on Piano), so d and a are computed for every group.
Both ways draw the same noise; the bounds they give are checked to agree. Reported: seconds of
each, their ratio, the largest relative difference of the bounds, and the padded and real steps.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import ref  # noqa: E402
from srnn import evaluation  # noqa: E402
from srnn.data import load_dataset  # noqa: E402
from srnn.engine import RefEngine  # noqa: E402
from srnn.provenance import command_line, commit, machine  # noqa: E402


def iw_by_padded_batch(engine, batch, K, rng):
    """The IW baseline: every call runs the whole padded batch for a group of paths."""
    config, (B, T) = engine.config, batch.mask.shape
    group = int(max(1, min(K, evaluation.EVAL_MEMORY // (B * T * evaluation._bytes_per_step(config)))))
    log_w = [engine.log_importance_weights(batch, rng.standard_normal((min(group, K - s), B, T, config.z_dim)),
                                           None, None) for s in range(0, K, group)]
    return logsumexp(np.concatenate(log_w), axis=0) - np.log(K)


def iw_by_sequence(engine, batch, K, rng):
    return evaluation._iw_bound(engine, batch, K, rng, None, None)


def elbo_by_padded_batch(engine, split, seed):
    """The ELBO baseline: each batch as one padded call, with the noise per_sequence_bounds draws."""
    rng, batch_size = np.random.default_rng(seed), evaluation._eval_batch_size(engine.config, split.x.shape[1])
    return np.concatenate([engine.elbo_and_states(b, rng.standard_normal((*b.mask.shape, engine.config.z_dim)),
                                                  None, None)[0] for b in split.batches(batch_size)])


def elbo_by_sequence(engine, split, seed):
    return evaluation.per_sequence_bounds(engine, split, 0, seed)[0]


def compare(ways, arguments):
    """Time each of two ways (by sequence first) on the arguments `arguments()` makes afresh for
    each: {seconds, speedup, max_relative_difference}."""
    bounds, seconds = {}, {}
    for name, run in ways:
        start = time.perf_counter()
        bounds[name] = run(*arguments())
        seconds[name] = time.perf_counter() - start
        print(f"{name:22s} {seconds[name]:8.1f} s", flush=True)
    (fast, a), (slow, b) = bounds.items()
    return dict(seconds=seconds, speedup=seconds[slow] / seconds[fast],
                max_relative_difference=float(np.max(np.abs(a - b) / np.abs(b))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="piano")
    parser.add_argument("--K", type=int, default=8, help="paths of the IW bound")
    parser.add_argument("--data-dir", default=os.environ.get("SRNN_DATA_DIR"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    config = ref.Config()  # the paper's model
    test = load_dataset(args.dataset, "srnn2016", args.data_dir).test
    batches = list(test.batches(evaluation._eval_batch_size(config, test.x.shape[1])))
    engine = RefEngine(config, "float64", "numba").load(ref.init_params(config, 0))
    engine.log_importance_weights(batches[0], np.zeros((1, *batches[0].mask.shape, config.z_dim)), None, None)  # JIT
    elbo = compare((("elbo_by_sequence", elbo_by_sequence), ("elbo_by_padded_batch", elbo_by_padded_batch)),
                   lambda: (engine, test, 0))
    iw = compare((("iw_by_sequence", iw_by_sequence), ("iw_by_padded_batch", iw_by_padded_batch)),
                 lambda: (engine, batches[0], args.K, np.random.default_rng(0)))
    result = dict(dataset=args.dataset, variant="srnn2016",
                  elbo=dict(sequences=len(test), padded_steps=sum(b.mask.size for b in batches),
                            valid_steps=test.num_frames, **elbo),
                  iw=dict(K=args.K, sequences=len(batches[0].mask), padded_steps=batches[0].mask.size,
                          valid_steps=int(batches[0].mask.sum()), **iw),
                  commit=commit(), command=command_line(), hardware=machine())
    for name in ("elbo", "iw"):
        print(f"{name}: by sequence is {result[name]['speedup']:.2f}x faster; bounds agree to "
              f"{result[name]['max_relative_difference']:.1e}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
