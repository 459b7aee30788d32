"""Time of the importance-weighted bound: paths run by sequence, against by padded batch.

    python benchmarks/bench_iw.py [--dataset piano] [--K 8] [--out benchmarks/results/iw_piano_cpu.json]

Measured in one run, on this machine, with the paper's model (d 300, z 100, a 300, h 500;
initial parameters, as the time does not depend on their values) in float64 as evaluation
runs, on the first evaluation batch of `--dataset`'s srnn2016 test split as
`srnn.evaluation.per_sequence_bounds` batches it (Piano: 12 pieces padded to 2,304 steps):
- by sequence: `srnn.evaluation._iw_bound`, the evaluator's way: each sequence trimmed to its
  length, as many paths per call as EVAL_MEMORY holds, so d and a are computed once per call;
- by padded batch: the whole padded batch in every call, the paths in groups that fit the
  same EVAL_MEMORY (one path per call on Piano), so d and a are computed for every group.
Both draw the same noise; the bounds they give are checked to agree. Reported: seconds of
each, their ratio, the largest relative difference of the bounds.
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


def by_padded_batch(engine, batch, K, rng):
    """The baseline: every call runs the whole padded batch for a group of paths."""
    config, (B, T) = engine.config, batch.mask.shape
    group = int(max(1, min(K, evaluation.EVAL_MEMORY // (B * T * evaluation._bytes_per_step(config)))))
    log_w = [engine.log_importance_weights(batch, rng.standard_normal((min(group, K - s), B, T, config.z_dim)),
                                           None, None) for s in range(0, K, group)]
    return logsumexp(np.concatenate(log_w), axis=0) - np.log(K)


def by_sequence(engine, batch, K, rng):
    return evaluation._iw_bound(engine, batch, K, rng, None, None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="piano")
    parser.add_argument("--K", type=int, default=8, help="paths of the bound")
    parser.add_argument("--data-dir", default=os.environ.get("SRNN_DATA_DIR"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    config = ref.Config()  # the paper's model
    test = load_dataset(args.dataset, "srnn2016", args.data_dir).test
    batch = next(test.batches(evaluation._eval_batch_size(config, test.x.shape[1])))
    engine = RefEngine(config, "float64", "numba").load(ref.init_params(config, 0))
    engine.log_importance_weights(batch, np.zeros((1, *batch.mask.shape, config.z_dim)), None, None)  # JIT warm-up
    bounds, seconds = {}, {}
    for name, run in (("by_sequence", by_sequence), ("by_padded_batch", by_padded_batch)):
        start = time.perf_counter()
        bounds[name] = run(engine, batch, args.K, np.random.default_rng(0))
        seconds[name] = time.perf_counter() - start
        print(f"{name:16s} {seconds[name]:8.1f} s", flush=True)
    lengths = batch.mask.sum(axis=1)
    result = dict(dataset=args.dataset, variant="srnn2016", K=args.K, sequences=len(lengths),
                  padded_steps=int(batch.mask.size), valid_steps=int(lengths.sum()), seconds=seconds,
                  speedup=seconds["by_padded_batch"] / seconds["by_sequence"],
                  max_relative_difference=float(np.max(np.abs(bounds["by_sequence"] - bounds["by_padded_batch"])
                                                       / np.abs(bounds["by_padded_batch"]))),
                  commit=commit(), command=command_line(), hardware=machine())
    print(f"by sequence is {result['speedup']:.2f}x faster; bounds agree to {result['max_relative_difference']:.1e}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
