"""Training, evaluation and generation loops: with the CLI, the only code that owns generators.

Training follows the paper's code: Adam (lr 1e-3, eps 1e-4), total-norm gradient
rescaling to 1 then element-wise clipping to ±10, the KL weight annealed linearly from
0.2 to 1 over 20 epochs (updated every batch), and the learning rate kept for 21 epochs,
then divided by 1.2 every epoch (ref/optim.py). Departures, each for a stated reason:
- the loss is −ΣL_i / Σ T_i over the batch (the paper's code averages L_i / T_i over
  the batch); for srnn2016's equal-length chunks the two are the same;
- the best checkpoint is chosen by the validation ELBO (sequence-averaged);
- every epoch's randomness (batch order, noise) comes from a generator seeded by
  (seed, epoch), so a resumed run reproduces an uninterrupted one exactly.

The loops are shared by both implementations: what computes is an engine (RefEngine
here, torch_impl.train.TorchEngine for PyTorch, on a CPU, a GPU or several processes),
and the loops own everything else: data order, noise, schedules, files.

A run directory holds: config.json (with the implementation that ran), metrics.jsonl (one line per epoch), best.npz,
last.npz (with the optimizer state, for `resume`), learning_curve.png and, at the end,
test_metrics.json. Checkpoints and JSON files are replaced atomically, so after Ctrl-C
or a crash the last completed epoch is intact.
"""
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import autograd.numpy as anp
from matplotlib.figure import Figure  # no pyplot: files only, any machine, the caller's backend untouched
import numpy as np
from autograd.differential_operators import grad_and_aux
from autograd.tracer import getval
from scipy.special import logsumexp
from tqdm import tqdm

from . import checkpoint
from .config import Config, TrainConfig
from .data import Batch, as_streams, load_dataset
from .bounds import elbo_and_states, log_importance_weights
from .errors import ConfigError, DataError
from .model import init_params
from .optim import adam_init, adam_update, clip_gradients, kl_weight, learning_rate
from .sample import draw_sample_noise, sample

EVAL_BATCH_SIZE = 16
EVAL_MEMORY = 512 * 2**20  # bytes of per-step model states one evaluation chunk may hold
RESUMABLE_CHANGES = ("epochs", "backend", "iw_samples")  # a resumed run may change these and still train the same


class RefEngine:
    """ref's side of the loops in this module: parameters and Adam's state as NumPy dicts
    under SPEC.md's names, gradients by autograd, the recurrences on `backend`.

    An engine is all the loops know of an implementation; torch_impl.train.TorchEngine
    has the same methods. `load` / `state` move parameters and Adam's state in and out
    as NumPy dicts (what checkpoints hold); `train_batch` takes one optimizer step and
    returns ΣL_i of the batch with the states to carry; `elbo_and_states`,
    `log_importance_weights` and `sample` use the current parameters. The carried states
    (d, z) are opaque to the loops. `is_main` is False only in the data-parallel worker
    processes of torch_impl, which train but leave files, validation and printing to rank 0.
    """

    is_main = True

    def __init__(self, config, dtype="float64", backend="numba"):
        self.config, self.dtype, self.backend = config, dtype, backend
        self.params = self.adam = None

    def describe(self):
        """What ran, for config.json."""
        return {"impl": "ref", "backend": self.backend, "dtype": self.dtype}

    def like(self, config, params):
        """An engine with the same settings for another model (the synthetic data's teacher)."""
        return RefEngine(config, self.dtype, self.backend).load(params)

    def load(self, params, adam=None):
        self.params = {name: np.asarray(value, self.dtype) for name, value in params.items()}
        self.adam = adam if adam is not None else adam_init(self.params)
        return self

    def state(self):
        return self.params, self.adam

    def train_batch(self, batch, eps, beta, lr, d_0, z_0, tc):
        grads, (L, d_last, z_last) = _loss_grad_and_aux(self.params, batch.u, batch.x, batch.mask, eps, beta,
                                                         d_0, z_0, self.config, self.backend)
        grads, _ = clip_gradients(grads, tc.max_grad_norm, tc.clip_value)
        self.params, self.adam = adam_update(self.params, grads, self.adam, lr, tc.adam_eps)
        # the states become the next batch's constants (truncated BPTT)
        return float(np.sum(getval(L))), getval(d_last), getval(z_last)

    def elbo_and_states(self, batch, eps, d_0, z_0):
        return elbo_and_states(self.params, batch.u, batch.x, batch.mask, eps, self.config, 1.0, d_0, z_0,
                               self.backend)

    def log_importance_weights(self, batch, eps, d_0, z_0):
        return log_importance_weights(self.params, batch.u, batch.x, batch.mask, eps, self.config, d_0, z_0,
                                      self.backend)

    def sample(self, eps_z, noise_x):
        return sample(self.params, self.config, eps_z, noise_x)


def train(run_dir, config, train_config, data_dir=None, resume=False, engine=None):
    """Train an SRNN in `run_dir`, then evaluate its best checkpoint on the test split.

    config: the model's Config; train_config: a TrainConfig; data_dir: where the data
    files are (see ref.data.resolve_data_dir). resume: continue the run in `run_dir`
    from last.npz; `config` must be the run's and only RESUMABLE_CHANGES may differ.
    engine: the implementation that computes (default: RefEngine with the TrainConfig's
    dtype and backend; torch_impl.train.TorchEngine for PyTorch). A run may resume on
    another engine: checkpoints hold the same arrays whichever wrote them.
    Returns the test metrics (as written to test_metrics.json), None in worker processes.
    """
    run_dir, tc = Path(run_dir), train_config
    engine = engine or RefEngine(config, tc.dtype, tc.backend)
    dataset = load_dataset(tc.dataset, tc.variant, data_dir)
    dataset = dataclasses.replace(dataset, train=train_split(dataset.train, tc))
    _check_fits(config, tc, dataset)
    params, adam, start, best_valid, history = _start(run_dir, config, tc, resume, engine)
    engine.load(params, adam)
    main = engine.is_main
    if main:
        print(f"srnn: training {tc.dataset} ({dataset.variant}) in {run_dir}, epochs {start + 1}..{tc.epochs}")
    last_path = run_dir / "last.npz"
    try:
        for epoch in range(start, tc.epochs):
            seconds = time.perf_counter()
            stats = _train_epoch(engine, tc, dataset.train, epoch)
            if not main:
                continue
            record = {"epoch": epoch + 1, **stats, "valid": None}
            params, adam = engine.state()
            if (epoch + 1) % tc.valid_every == 0 or epoch + 1 == tc.epochs:
                record["valid"] = evaluate(engine, dataset.valid, 0, tc.seed)["elbo"]
                if record["valid"]["sequence_averaged"] > best_valid:
                    best_valid = record["valid"]["sequence_averaged"]
                    checkpoint.save(run_dir / "best.npz", params, config, tc, {"epoch": epoch + 1})
            record["seconds"] = time.perf_counter() - seconds
            history.append(record)
            _write_history(run_dir, history)
            # last.npz goes last: when it holds epoch e, everything else of epoch e is written
            checkpoint.save(last_path, params, config, tc,
                            {"epoch": epoch + 1, "best_valid": best_valid, "adam": adam})
            print(_epoch_line(record, tc.epochs))
    except (KeyboardInterrupt, SystemError) as error:
        # numba turns a Ctrl-C inside a compiled kernel into a SystemError raised from it
        if not isinstance(error, KeyboardInterrupt) and not isinstance(error.__cause__, KeyboardInterrupt):
            raise
        done = checkpoint.load(last_path).state["epoch"] if last_path.exists() else 0
        saved = f"epoch {done} is saved in {last_path}" if done else "no epoch had finished"
        raise KeyboardInterrupt(
            f"interrupted; {saved}; continue with: srnn train --run-dir {run_dir} --resume") from None
    if not main:
        return None
    best = checkpoint.load(run_dir / "best.npz")
    teacher = engine.like(*dataset.teacher) if dataset.teacher else None
    metrics = evaluate(engine.like(config, best.params), dataset.test, tc.iw_samples, tc.seed, teacher)
    metrics["epoch"] = best.state["epoch"]
    _write_json(run_dir / "test_metrics.json", metrics)
    print(f"test split, best checkpoint (epoch {metrics['epoch']}):")
    print(format_metrics(metrics))
    return metrics


def train_split(split, tc):
    """The train split as `tc.train_layout` lays it out: as stored, or cut into tc.batch_size
    streams (ref.data.as_streams). Validation keeps whole pieces: early stopping on the metric reported."""
    return as_streams(split, streams=tc.batch_size) if tc.train_layout == "streams" else split


def _check_fits(config, tc, dataset):
    """Catch a model/data mismatch before any file is written."""
    if config.x_dim != dataset.x_dim:
        raise ConfigError(f"the model's x_dim is {config.x_dim} but {tc.dataset} has {dataset.x_dim} dimensions")
    streams = dataset.train.streams
    if streams and tc.batch_size != streams:
        raise ConfigError(f"{tc.dataset} ({tc.variant}) is laid out as {streams} streams for truncated "
                          f"backpropagation through time; use batch size {streams}, not {tc.batch_size}")


def _start(run_dir, config, tc, resume, engine):
    """A fresh run (config.json written by the main process) or the state of the one in run_dir.

    Returns (params, adam_state, first_epoch, best_valid, history).
    """
    last_path = run_dir / "last.npz"
    if resume:
        if not last_path.exists():
            raise DataError(f"nothing to resume: {last_path} does not exist")
        last = checkpoint.load(last_path)
        _check_same_run(last.config, last.train_config, config, tc)
        _write_run_config(run_dir, config, tc, engine)
        done = last.state["epoch"]
        history = [r for r in read_history(run_dir) if r["epoch"] <= done]
        return last.params, last.state["adam"], done, last.state["best_valid"], history
    if last_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume or choose another run directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_run_config(run_dir, config, tc, engine)
    params = {name: value.astype(tc.dtype) for name, value in init_params(config, tc.seed).items()}
    return params, None, 0, -math.inf, []


def _write_run_config(run_dir, config, tc, engine):
    """config.json: the model, the training settings, and the implementation that runs them."""
    if engine.is_main:
        _write_json(run_dir / "config.json",
                    {"model": config.to_dict(), "train": tc.to_dict(), "implementation": engine.describe()})


def changed_settings(run_config, run_tc, config, tc):
    """Names of the model fields, and of the training fields outside RESUMABLE_CHANGES, in
    which a run (run_config, run_tc) differs from (config, tc): two lists."""
    model = [k for k, v in run_config.to_dict().items() if getattr(config, k) != v]
    training = [k for k, v in run_tc.to_dict().items() if k not in RESUMABLE_CHANGES and getattr(tc, k) != v]
    return model, training


def _check_same_run(run_config, run_tc, config, tc):
    model, training = changed_settings(run_config, run_tc, config, tc)
    if model:
        diff = [f"{k} ({getattr(run_config, k)} in the run, {getattr(config, k)} now)" for k in model]
        raise ConfigError(f"cannot resume with a different model: {', '.join(diff)}")
    diff = [f"{k} ({getattr(run_tc, k)} in the run, {getattr(tc, k)} now)" for k in training]
    if diff:
        raise ConfigError(f"cannot resume with different training settings (only {' and '.join(RESUMABLE_CHANGES)} "
                          f"may change): {', '.join(diff)}")


def _loss(params, u, x, mask, eps, beta, d_0, z_0, config, backend):
    """−ΣL_i / ΣT_i of a batch, and (L, d_last, z_last) as the auxiliary output."""
    L, d_last, z_last = elbo_and_states(params, u, x, mask, eps, config, beta, d_0, z_0, backend)
    return -anp.sum(L) / np.sum(mask), (L, d_last, z_last)


# one forward and one backward pass give the gradient and the carried states
_loss_grad_and_aux = grad_and_aux(_loss)


def _train_epoch(engine, tc, split, epoch):
    """One pass of `engine` over the training split. Returns the epoch's stats:
    "train_elbo", ΣL/ΣT of the training objective (with each batch's KL weight, so
    the ELBO once annealing is over), the last batch's "kl_weight", and the epoch's "lr".
    """
    rng = np.random.default_rng([tc.seed, epoch])  # (seed, epoch): resuming replays the same draws
    lr = learning_rate(epoch, tc.lr, tc.lr_decay_start, tc.lr_decay)
    num_batches = -(-len(split) // tc.batch_size)
    total_L = total_T = beta = 0.0
    d_0 = z_0 = None
    with tqdm(split.batches(tc.batch_size, rng), total=num_batches, desc=f"epoch {epoch + 1}/{tc.epochs}",
              leave=False, disable=None if engine.is_main else True, file=sys.stderr) as bar:
        for b, batch in enumerate(bar):
            if not batch.carry:
                d_0 = z_0 = None  # a new piece or a new epoch starts from zero states
            beta = kl_weight(epoch, b, num_batches, tc.kl_start, tc.kl_anneal_epochs)
            eps = rng.standard_normal((*batch.mask.shape, engine.config.z_dim))
            sum_L, d_0, z_0 = engine.train_batch(batch, eps, beta, lr, d_0, z_0, tc)
            total_L, total_T = total_L + sum_L, total_T + float(np.sum(batch.mask))
            bar.set_postfix(elbo=f"{total_L / total_T:.4f}")
    if not math.isfinite(total_L):
        raise ConfigError(f"the training ELBO became {total_L} in epoch {epoch + 1}; try a smaller learning rate")
    return {"train_elbo": total_L / total_T, "kl_weight": beta, "lr": lr}


def evaluate(engine, split, iw_samples, seed, teacher=None):
    """SPEC.md's two metrics of the ELBO and of the K-path importance-weighted bound on a split.

    engine: the model, loaded in an engine (RefEngine(config, dtype, backend).load(params),
    or torch_impl's TorchEngine); split: a ref.data.Split; iw_samples: K (0 = ELBO only);
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


def per_sequence_bounds(engine, split, iw_samples, seed):
    """The ELBO L_i and the K-path IW bound of every sequence of a split: two (N,) arrays.

    A split in stream layout is evaluated chunk by chunk with states carried across
    batches (each chunk counts as a sequence). Memory stays bounded: batches of at most
    EVAL_BATCH_SIZE sequences, IW paths run one sequence at a time in groups sized by
    EVAL_MEMORY. With iw_samples = 0 the second array is None.
    """
    rng = np.random.default_rng(seed)
    config = engine.config
    batch_size = split.streams or _eval_batch_size(config, split.x.shape[1])
    elbos, bounds = [], []
    d_0 = z_0 = None
    for batch in split.batches(batch_size):
        if not batch.carry:
            d_0 = z_0 = None
        eps = rng.standard_normal((*batch.mask.shape, config.z_dim))
        L, d_last, z_last = engine.elbo_and_states(batch, eps, d_0, z_0)
        elbos.append(np.asarray(L))
        if iw_samples:
            bounds.append(_iw_bound(engine, batch, iw_samples, rng, d_0, z_0))
        d_0, z_0 = d_last, z_last
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
    call and recomputes them for every path (Piano: 6x faster, benchmarks/bench_iw.py).
    """
    config, (B, T) = engine.config, batch.mask.shape
    path_bytes = T * (_bytes_per_step(config) + 8 * B * config.z_dim)  # a path's states, and its noise for the batch
    group = int(max(1, min(K, EVAL_MEMORY // path_bytes)))
    sequences = []  # each sequence alone, trimmed to its length, with its carried states
    for i, T_i in enumerate(batch.mask.sum(axis=1).astype(int)):
        row, steps = slice(i, i + 1), slice(0, T_i)
        sequences.append((row, steps, Batch(batch.u[row, steps], batch.x[row, steps], batch.mask[row, steps]),
                          [None if s is None else s[row] for s in (d_0, z_0)]))
    log_w = np.empty((K, B))
    for start in range(0, K, group):
        eps = rng.standard_normal((min(group, K - start), B, T, config.z_dim))
        for i, (row, steps, one, states) in enumerate(sequences):
            log_w[start:start + len(eps), i] = np.asarray(
                engine.log_importance_weights(one, eps[:, row, steps], *states))[:, 0]
    return logsumexp(log_w, axis=0) - np.log(K)


def summarize(L, lengths):
    """Both per-step metrics of SPEC.md for per-sequence values L (N,) over lengths T (N,).

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
    for key, name in names.items():
        if key in metrics:
            m = metrics[key]
            label = f"{name}" + (f", K={m['K']}" if "K" in m else "")
            lines.append(f"  {label:<30} sequence-averaged {fmt(m['sequence_averaged'], m['sequence_averaged_se'])}"
                         f"   frame-weighted {fmt(m['frame_weighted'], m['frame_weighted_se'])}")
    return "\n".join(lines)


def generate(engine, num, length, seed):
    """`num` piano rolls of `length` steps sampled from the model in `engine`; (num, length, x_dim)."""
    rng = np.random.default_rng(seed)
    return np.asarray(engine.sample(*draw_sample_noise(rng, engine.config, num, length)))


def read_history(run_dir):
    """The records of metrics.jsonl in `run_dir` ([] when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_run_config(run_dir):
    """(Config, TrainConfig) from a run directory's config.json."""
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())
        return Config.from_dict(saved["model"]), TrainConfig.from_dict(saved["train"])
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; is {run_dir} a run directory?") from None
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
        raise DataError(f"{path} is not a valid run configuration ({e})") from None


def _write_json(path, obj):
    checkpoint.atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def _write_history(run_dir, history):
    lines = "".join(json.dumps(record) + "\n" for record in history)
    checkpoint.atomic_write(run_dir / "metrics.jsonl", lambda f: f.write(lines.encode()))
    _plot_learning_curve(history, run_dir / "learning_curve.png")


def _plot_learning_curve(history, path):
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot([r["epoch"] for r in history], [r["train_elbo"] for r in history], label="train (frame-weighted, with KL weight)")
    valid = [r for r in history if r["valid"] is not None]
    ax.plot([r["epoch"] for r in valid], [r["valid"]["sequence_averaged"] for r in valid], "o-",
            label="valid ELBO (sequence-averaged)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per step")
    ax.legend()
    ax.grid(alpha=0.3)
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))


def _epoch_line(record, epochs):
    valid = record["valid"]
    valid_text = (f"valid {valid['sequence_averaged']:.4f} (seq-avg) {valid['frame_weighted']:.4f} (frame)"
                  if valid else "valid -")
    return (f"epoch {record['epoch']}/{epochs}  train {record['train_elbo']:.4f}/frame  {valid_text}  "
            f"kl_weight {record['kl_weight']:.3f}  lr {record['lr']:.2e}  {record['seconds']:.1f}s")
