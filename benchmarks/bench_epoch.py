"""Time per training epoch: torch_impl against the ref trainer, on real data at the paper's size.

    python benchmarks/bench_epoch.py [--dataset jsb] [--device cpu] [--out benchmarks/results/epoch_jsb_cpu.json]
    python benchmarks/bench_epoch.py --models srnn vrnn rnn --variants srnn2016 --dtypes float32   # the baselines

Measured in one run, on this machine: one pass of the project's trainer
(`srnn.loop._train_epoch`: batches, noise, gradient, clipping, Adam) over the training
split of `--dataset`, in both data variants (on JSB, boulanger2012: 15 batches of whole pieces,
padded to each batch's longest, or with `--train-layout streams` as `srnn reproduce` trains
it, 9 batches of 16 streams × 100 steps; srnn2016: 17 batches of 16 streams × 100 steps), with
the paper's model (d 300, z 100, a 300, h 500, two-layer feature extractor) and training
settings, in float32 and float64, for each implementation: ref (its numba fast path) and
torch_impl on `--device`. Every measurement runs in a fresh process, so that no thread
pool of one library competes with another's, after one warm-up batch (JIT caches, lazy
initialisation) from which the parameters are reset. Reported: seconds per epoch, the
ratio ref/torch, and the achieved matrix-multiply GFLOP/s (FLOPs counted as in
bench_fast_path.py over the padded batches) as a fraction of this machine's float32 GEMM
peak, measured in the same run (NumPy on the CPU, torch on a GPU). With `--models`, the VRNN
and RNN of docs/model.md §8, §7 at the SRNN paper's sizes are timed beside the SRNN, and each
row gives its time over the SRNN's (FLOPs are counted for the SRNN only).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import ref  # noqa: E402
from bench_fast_path import gemm_peak, matmul_flops  # noqa: E402
from srnn import loop  # noqa: E402
from srnn.config import TRAIN_LAYOUTS, TrainConfig  # noqa: E402
from srnn.data import load_dataset  # noqa: E402
from srnn.engine import EngineOptions, make_engine  # noqa: E402
from srnn.provenance import command_line, commit, machine  # noqa: E402

VARIANTS = ("boulanger2012", "srnn2016")
DTYPES = ("float32", "float64")
IMPLS = ("ref", "torch")
MODELS = ("srnn", "vrnn", "rnn")


def engine_for(impl, config, dtype, device):
    return make_engine(impl, config, dtype, EngineOptions(backend="numba", device=None if impl == "ref" else device))


def time_one_epoch(impl, dataset_name, variant, dtype, device, data_dir, train_layout, model="srnn"):
    """Seconds of one training epoch of `impl`, and the epoch's matrix-multiply FLOPs (the SRNN's)."""
    config = ref.Config(model=model)  # the paper's sizes
    tc = TrainConfig(dataset=dataset_name, variant=variant, dtype=dtype, epochs=1, train_layout=train_layout)
    split = loop.train_split(load_dataset(dataset_name, variant, data_dir).train, tc)
    engine = engine_for(impl, config, dtype, device)
    params = ref.init_params(config, tc.seed)
    batch = next(split.batches(tc.batch_size, np.random.default_rng(0)))
    engine.load(params).train_batch(batch, np.zeros((*batch.mask.shape, config.z_dim)), 1.0, tc.lr, None, None,
                                    **tc.step_options())
    engine.load(params)  # the warm-up step is undone
    _synchronize(device)
    start = time.perf_counter()
    stats = loop._train_epoch(engine, tc, split, epoch=0)
    _synchronize(device)
    seconds = time.perf_counter() - start
    flops = sum(matmul_flops(config, *b.mask.shape) for b in split.batches(tc.batch_size, np.random.default_rng(0)))
    return dict(seconds=seconds, matmul_gflop=flops / 1e9 if model == "srnn" else None, train_elbo=stats["train_elbo"],
                batches=-(-len(split) // tc.batch_size))


def _synchronize(device):
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def peak_gflops(device):
    """float32 GEMM peak: NumPy's BLAS on the CPU, torch.matmul on a GPU."""
    if not device.startswith("cuda"):
        return gemm_peak("float32")
    import torch
    a = torch.randn(8192, 8192, device=device)
    a @ a
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * 8192**3 / best / 1e9


def measure(impl, variant, dtype, model, args):
    """time_one_epoch in a fresh process (no thread pool of one library competing with another's)."""
    child = [sys.executable, __file__, "--one", impl, variant, dtype, model, "--dataset", args.dataset,
             "--device", args.device, "--train-layout", args.train_layout] + (
        ["--data-dir", args.data_dir] if args.data_dir else [])
    out = subprocess.run(child, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{impl} {variant} {dtype} {model} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _describe(m):
    share = (f"{m['fraction_of_float32_peak']:.2f} of the float32 peak" if m["fraction_of_float32_peak"]
             else f"{m['over_srnn']:.2f} x the SRNN's time" if "over_srnn" in m else "")
    return f"{m['seconds']:7.1f} s/epoch ({m['batches']} batches{', ' + share if share else ''})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="jsb")
    parser.add_argument("--device", default="cpu", help="torch_impl's device (ref always runs on the CPU)")
    parser.add_argument("--data-dir", default=os.environ.get("SRNN_DATA_DIR"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["srnn"])
    parser.add_argument("--train-layout", choices=TRAIN_LAYOUTS, default="as_stored")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", nargs=4, metavar=("IMPL", "VARIANT", "DTYPE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child process: one measurement, as JSON on stdout
        impl, variant, dtype, model = args.one
        print(json.dumps(time_one_epoch(impl, args.dataset, variant, dtype, args.device, args.data_dir,
                                        args.train_layout, model)))
        return

    peak = peak_gflops(args.device)
    print(f"float32 GEMM peak ({args.device}): {peak:.1f} GFLOP/s")
    results = []
    for variant in args.variants:
        for dtype in args.dtypes:
            srnn_row = None
            for model in args.models:
                row = dict(dataset=args.dataset, variant=variant, train_layout=args.train_layout, dtype=dtype,
                           model=model)
                for impl in args.impls:
                    row[impl] = m = measure(impl, variant, dtype, model, args)
                    m["fraction_of_float32_peak"] = m["matmul_gflop"] and m["matmul_gflop"] / m["seconds"] / peak
                    if srnn_row is not None and impl in srnn_row:
                        m["over_srnn"] = m["seconds"] / srnn_row[impl]["seconds"]
                if "ref" in row and "torch" in row:
                    row["ref_over_torch"] = row["ref"]["seconds"] / row["torch"]["seconds"]
                srnn_row = row if model == "srnn" else srnn_row
                results.append(row)
                print(f"{args.dataset} {variant:13} {dtype} {model:4}: "
                      + "   ".join(f"{impl} {_describe(row[impl])}" for impl in args.impls))
    import torch  # noqa: F401  (loaded, so that the machine's record names torch's version and device)
    report = dict(benchmark="epoch", commit=commit(), command=command_line(), machine=machine(args.device),
                  float32_gemm_peak_gflops=peak, model="the paper's sizes (ref.Config(model=...))", results=results)
    layout = "_streams" if args.train_layout == "streams" else ""
    models = "" if args.models == ["srnn"] else "_" + "_".join(args.models)
    out = args.out or ROOT / "benchmarks" / "results" / (f"epoch_{args.dataset}_{args.device.replace(':', '')}"
                                                         f"{layout}{models}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
