"""The training loop, shared by every implementation: what computes is an `Engine`
(srnn.engine), and the loop owns everything else: data order, noise, schedules, files.

Training follows the paper's code: Adam (lr 1e-3, eps 1e-4), total-norm gradient
rescaling to 1 then element-wise clipping to ±10, the KL weight annealed linearly from
0.2 to 1 over 20 epochs (updated every batch), and the learning rate kept for 21 epochs,
then divided by 1.2 every epoch (ref/optim.py). Departures, each for a stated reason:
- the loss is −ΣL_i / Σ T_i over the batch (the paper's code averages L_i / T_i over
  the batch); for srnn2016's equal-length chunks the two are the same;
- the best checkpoint is chosen by the validation ELBO (sequence-averaged);
- every epoch's randomness (batch order, noise) comes from a generator seeded by
  (seed, epoch), so a resumed run reproduces an uninterrupted one exactly.

A run directory (srnn.rundir) receives config.json, metrics.jsonl, learning_curve.png,
best.npz, last.npz (with the optimizer state, for `resume`) and, at the end,
test_metrics.json. Files are replaced atomically, so after Ctrl-C or a crash the last
completed epoch is intact.
"""
import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ref import init_params
from ref.errors import ConfigError, DataError, DivergedError
from ref.optim import kl_weight, learning_rate

from . import checkpoint, ctrl_c
from .data import dataset_dir, load_dataset
from .engine import EngineOptions, make_engine
from .evaluation import evaluate, format_metrics
from .rundir import exclusive, read_history, remove_stray_temporaries, write_history, write_json, write_run_config
from .splits import as_streams

# a resumed run may change these and still train the same epochs
RESUMABLE_CHANGES = ("epochs", "patience", "backend", "iw_samples")


def train(run_dir, config, train_config, data_dir=None, resume=False, engine=None):
    """Train a model in `run_dir`, then evaluate its best checkpoint on the test split.

    config: the model's Config; train_config: a TrainConfig; data_dir: where the data
    files are (see srnn.data.resolve_data_dir). resume: continue the run in `run_dir`
    from last.npz; `config` must be the run's and only RESUMABLE_CHANGES may differ.
    engine: the Engine that computes (default: ref's, with the TrainConfig's dtype and
    backend). A run may resume on another engine: checkpoints hold the same arrays
    whichever wrote them.
    Returns the test metrics (as written to test_metrics.json), None in worker processes.
    """
    run_dir, tc = Path(run_dir), train_config
    engine = engine or make_engine("ref", config, tc.dtype, EngineOptions(backend=tc.backend))
    dataset = load_dataset(tc.dataset, tc.variant, data_dir)
    dataset = dataclasses.replace(dataset, train=train_split(dataset.train, tc))
    _check_fits(config, tc, dataset)
    if resume and not (run_dir / "last.npz").exists():  # before the lock: a mistyped directory is not created
        raise DataError(f"nothing to resume: {run_dir / 'last.npz'} does not exist")
    # one training per run directory: rank 0 holds the lock for every process of a data-parallel run
    with exclusive(run_dir) if engine.is_main else contextlib.nullcontext(), ctrl_c.remembered():
        remove_stray_temporaries(run_dir)
        run = _resumed_run(run_dir, config, tc, engine) if resume else _new_run(run_dir, config, tc, engine)
        if engine.is_main:
            write_run_config(run_dir, config, tc, engine.describe(), dataset_dir(tc.dataset, data_dir))
        return _train_and_test(run_dir, config, tc, dataset, run, engine)


def _train_and_test(run_dir, config, tc, dataset, run, engine):
    """Epochs run.first_epoch + 1 .. tc.epochs, then the test metrics of the best checkpoint."""
    engine.load(run.params, run.adam)
    best_valid, history = run.best_valid, run.history
    main = engine.is_main
    if main:
        print(f"srnn: training {config.model.upper()} on {tc.dataset} ({dataset.variant}) in {run_dir}, "
              f"epochs {run.first_epoch + 1}..{tc.epochs}")
    last_path = run_dir / "last.npz"
    try:
        for epoch in range(run.first_epoch, tc.epochs):
            # early stopping, decided by rank 0 (which validates) for every process; a stopped run resumed stops again
            if tc.patience and engine.any_process(main and patience_spent(history, tc.patience)):
                if main:
                    print(f"srnn: stopping early: no better validation ELBO since epoch {best_epoch(history)} "
                          f"(patience {tc.patience})")
                break
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
            write_history(run_dir, history)
            # last.npz goes last: when it holds epoch e, everything else of epoch e is written
            checkpoint.save(last_path, params, config, tc,
                            {"epoch": epoch + 1, "best_valid": best_valid, "adam": adam})
            print(_epoch_line(record, tc.epochs))
    except BaseException as error:
        interrupt = ctrl_c.caused(error)
        if interrupt is None:
            raise
        done = checkpoint.load(last_path).state["epoch"] if last_path.exists() else 0
        saved = f"epoch {done} is saved in {last_path}" if done else "no epoch had finished"
        raise type(interrupt)(
            f"{ctrl_c.ended(interrupt)[0]}; {saved}; continue with: srnn train --run-dir {run_dir} --resume") from None
    if not main:
        return None
    best = checkpoint.load(run_dir / "best.npz")
    teacher = engine.for_model(*dataset.teacher) if dataset.teacher else None
    metrics = evaluate(engine.for_model(config, best.params), dataset.test, tc.iw_samples, tc.seed, teacher)
    metrics["epoch"] = best.state["epoch"]
    write_json(run_dir / "test_metrics.json", metrics)
    print(f"test split, best checkpoint (epoch {metrics['epoch']}):")
    print(format_metrics(metrics))
    return metrics


def best_epoch(history):
    """The epoch of the best validation ELBO in the epoch records `history` (the first of equals,
    as best.npz keeps it); 0 before any validation."""
    validated = [r for r in history if r["valid"] is not None]
    return max(validated, key=lambda r: r["valid"]["sequence_averaged"])["epoch"] if validated else 0


def patience_spent(history, patience):
    """Whether `patience` (> 0) epochs have passed since the best validation ELBO in the epoch
    records `history`: the rule that stops training early."""
    best = best_epoch(history)
    return bool(patience and best and history[-1]["epoch"] - best >= patience)


def train_split(split, tc):
    """The train split as `tc.train_layout` lays it out: as stored, or cut into tc.batch_size
    streams (srnn.splits.as_streams). Validation keeps whole pieces: early stopping on the metric reported."""
    return as_streams(split, streams=tc.batch_size) if tc.train_layout == "streams" else split


def _check_fits(config, tc, dataset):
    """Catch a model/data mismatch before any file is written."""
    if config.x_dim != dataset.x_dim:
        raise ConfigError(f"the model's x_dim is {config.x_dim} but {tc.dataset} has {dataset.x_dim} dimensions")
    streams = dataset.train.streams
    if streams and tc.batch_size != streams:
        raise ConfigError(f"{tc.dataset} ({tc.variant}) is laid out as {streams} streams for truncated "
                          f"backpropagation through time; use batch size {streams}, not {tc.batch_size}")


class RunStart(NamedTuple):
    """Where training starts: the parameters and Adam's state (None: fresh), the first epoch
    to train (counted from 0), the best validation ELBO so far and the epoch records so far."""
    params: dict
    adam: dict | None
    first_epoch: int
    best_valid: float
    history: list


def _new_run(run_dir, config, tc, engine):
    """A fresh run: parameters initialised (the run directory exists and is ours)."""
    if (run_dir / "last.npz").exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume or choose another run directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    params = {name: value.astype(tc.dtype) for name, value in init_params(config, tc.seed).items()}
    return RunStart(params, None, 0, -math.inf, [])


def _resumed_run(run_dir, config, tc, engine):
    """The state of the run in run_dir at its last completed epoch, after checking that
    (config, tc) are its settings up to RESUMABLE_CHANGES."""
    last_path = run_dir / "last.npz"
    if not last_path.exists():
        raise DataError(f"nothing to resume: {last_path} does not exist")
    last = checkpoint.load(last_path, training_state=True)
    _check_same_run(last.config, last.train_config, config, tc)
    done = last.state["epoch"]
    if tc.epochs < done:
        raise ConfigError(f"the run in {run_dir} has completed {done} epochs; --epochs gives the new total, "
                          f"so it must be at least {done}, not {tc.epochs}")
    history = [r for r in read_history(run_dir) if r["epoch"] <= done]
    return RunStart(last.params, last.state["adam"], done, last.state["best_valid"], history)


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
            try:
                sum_L, d_0, z_0 = engine.train_batch(batch, eps, beta, lr, d_0, z_0, **tc.step_options())
                if not math.isfinite(sum_L):
                    raise DivergedError(f"the batch's ELBO is {sum_L}")
            except DivergedError as e:
                raise DivergedError(
                    f"training diverged in epoch {epoch + 1}, batch {b + 1} (learning rate {lr:.3g}, KL weight "
                    f"{beta:.3g}): {e}; the last completed epoch is saved. Lower --lr, or train in --dtype float64 "
                    f"if float32 overflowed") from None
            ctrl_c.check()
            total_L, total_T = total_L + sum_L, total_T + float(np.sum(batch.mask))
            bar.set_postfix(elbo=f"{total_L / total_T:.4f}")
    return {"train_elbo": total_L / total_T, "kl_weight": beta, "lr": lr}


def _epoch_line(record, epochs):
    valid = record["valid"]
    valid_text = (f"valid {valid['sequence_averaged']:.4f} (seq-avg) {valid['frame_weighted']:.4f} (frame)"
                  if valid else "valid -")
    return (f"epoch {record['epoch']}/{epochs}  train {record['train_elbo']:.4f}/frame  {valid_text}  "
            f"kl_weight {record['kl_weight']:.3f}  lr {record['lr']:.2e}  {record['seconds']:.1f}s")
