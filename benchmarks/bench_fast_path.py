"""The numba fast path against the readable path: one ELBO + gradient evaluation per batch.

    python benchmarks/bench_fast_path.py [--out benchmarks/results/fast_path.json] [--repeats 7]

Measured in one run, on this machine: the time of `autograd.value_and_grad` of ΣL on a
batch (B 16, T 100, every step valid) for both backends, at the tutorial size
(x 88, d 32, z 8, a 32, h 64) and the paper's (d 300, z 100, a 300, h 500), in float32
and float64; the speed-ups; the achieved matrix-multiply GFLOP/s of the fast path as a
fraction of this machine's float32 (and float64) GEMM peak, measured here with a large
NumPy matrix product; and the numba compile time of the first call in a fresh process
(empty cache) and with the cache that `cache=True` writes.

FLOPs are counted, not measured: 2·m·n·k for every matrix product of the forward pass and
of its backward pass (two products per forward product; one where the input is data).
Elementwise work is not counted, so the fraction of peak is a lower bound on the work done.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import autograd
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ref  # noqa: E402
from srnn.provenance import command_line, commit, machine  # noqa: E402

SIZES = {
    "tutorial": dict(x_dim=88, d_dim=32, z_dim=8, a_dim=32, h_dim=64),
    "paper": dict(x_dim=88, d_dim=300, z_dim=100, a_dim=300, h_dim=500),
}
B, T = 16, 100


def matmul_flops(config, B, T):
    """Matrix-multiply FLOPs of one ELBO + gradient evaluation (forward + backward)."""
    c, N = config, B * T
    forward = backward = 0.0

    def product(n_in, n_out, data_input=False):
        nonlocal forward, backward
        f = 2.0 * N * n_in * n_out
        forward += f
        backward += f if data_input else 2 * f  # dW always; dx unless x is data

    def stack(n_in, width, layers, data_input=False):
        for k in range(layers):
            product(n_in, width, data_input and k == 0)
            n_in = width
        return n_in

    for _ in ("u", "x"):  # the shared feature extractor runs on both
        stack(c.x_dim, c.h_dim, c.embed_layers, data_input=True)
    e = c.e_dim
    product(e, 3 * c.d_dim), product(c.d_dim, 3 * c.d_dim)  # gru_d: input projection, recurrence
    if c.inference == "smoothing":
        product(c.d_dim + e, 3 * c.a_dim), product(c.a_dim, 3 * c.a_dim)
    else:
        stack(c.d_dim + e, c.a_dim, c.mlp_layers)
    a = ref.params.a_width(c)
    for n_v in (c.d_dim, c.d_dim, a, a):  # prior_mu, prior_logvar, post_mu, post_logvar
        product(stack(n_v + c.z_dim, c.h_dim, c.mlp_layers), c.z_dim)
    n = stack(c.d_dim + c.z_dim, c.h_dim, c.mlp_layers)  # emission: one head, or mu and logvar
    for _ in range(1 if c.emission == "bernoulli" else 2):
        product(n, c.x_dim)
    return forward + backward


def gemm_peak(dtype, n=2048, repeats=5):
    """Best GFLOP/s of an n x n matrix product with NumPy's BLAS (all its threads)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def time_value_and_grad(config, dtype, backend, repeats):
    """Best (least disturbed) seconds of one value_and_grad of ΣL, after one warm-up call."""
    params = {k: v.astype(dtype) for k, v in ref.init_params(config, 0).items()}
    rng = np.random.default_rng(0)
    x = (rng.random((B, T, config.x_dim)) < 0.1).astype(dtype)
    u = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    mask, eps = np.ones((B, T), dtype), rng.standard_normal((B, T, config.z_dim)).astype(dtype)
    f = autograd.value_and_grad(lambda p: np.sum(ref.elbo(p, u, x, mask, eps, config, backend=backend)))
    f(params)
    return min(_timed(lambda: f(params)) for _ in range(repeats))


COMPILE_SNIPPET = """
import time, numpy as np, autograd, ref
c = ref.Config(x_dim=8, d_dim=4, z_dim=2, a_dim=4, h_dim=4)
p = {k: v.astype(np.DTYPE) for k, v in ref.init_params(c, 0).items()}
x = np.zeros((2, 3, 8), np.DTYPE); m = np.ones((2, 3), np.DTYPE); e = np.zeros((2, 3, 2), np.DTYPE)
f = autograd.value_and_grad(lambda p: np.sum(ref.elbo(p, x, x, m, e, c, backend="numba")))
t = time.perf_counter(); f(p); first = time.perf_counter() - t
t = time.perf_counter(); f(p); second = time.perf_counter() - t
print(first - second)
"""


def compile_seconds(dtype):
    """(first call in a process with an empty numba cache, first call with that cache filled)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        run = lambda: float(subprocess.run([sys.executable, "-c", COMPILE_SNIPPET.replace("DTYPE", dtype)],
                                           env=env, capture_output=True, text=True, check=True).stdout)
        return run(), run()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fast_path.json")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (the best is kept)")
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES))
    args = parser.parse_args(argv)

    peak = {dtype: gemm_peak(dtype) for dtype in ("float32", "float64")}
    print(f"GEMM peak (NumPy, 2048²): float32 {peak['float32']:.1f} GFLOP/s, float64 {peak['float64']:.1f} GFLOP/s")
    results = []
    for size in args.sizes:
        config = ref.Config(**SIZES[size])
        flops = matmul_flops(config, B, T)
        for dtype in ("float32", "float64"):
            seconds = {backend: time_value_and_grad(config, dtype, backend, args.repeats if backend == "numba"
                                                    else max(1, args.repeats // 2))
                       for backend in ("numba", "numpy")}
            gflops = flops / seconds["numba"] / 1e9
            row = dict(size=size, dtype=dtype, B=B, T=T, config=SIZES[size], matmul_gflop=flops / 1e9,
                       seconds=seconds, speedup=seconds["numpy"] / seconds["numba"], numba_gflops=gflops,
                       fraction_of_float32_peak=gflops / peak["float32"], fraction_of_same_dtype_peak=gflops / peak[dtype])
            results.append(row)
            print(f"{size:8} {dtype}: numpy {seconds['numpy'] * 1e3:8.1f} ms  numba {seconds['numba'] * 1e3:7.1f} ms  "
                  f"speed-up {row['speedup']:5.1f}x  {gflops:6.1f} GFLOP/s = {row['fraction_of_float32_peak']:.2f} "
                  f"of the float32 peak ({row['fraction_of_same_dtype_peak']:.2f} of the {dtype} peak)")
    compile_time = {dtype: dict(zip(("empty_cache", "cached"), compile_seconds(dtype))) for dtype in ("float32", "float64")}
    for dtype, c in compile_time.items():
        print(f"numba compile, first call ({dtype}): {c['empty_cache']:.1f} s with an empty cache, "
              f"{c['cached']:.2f} s from the cache")
    report = dict(benchmark="fast_path", commit=commit(), command=command_line(), machine=machine(),
                  gemm_peak_gflops=peak, results=results, compile_seconds=compile_time)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
