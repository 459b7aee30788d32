"""The files of a run directory, read and written atomically (srnn.checkpoint.atomic_write):

    config.json         the model, the training settings, the implementation that ran them,
                        and the data directory the run read
    metrics.jsonl       one record per completed epoch
    learning_curve.png  training and validation ELBO per epoch
    test_metrics.json   at the end: the test split's metrics of best.npz

(best.npz and last.npz are srnn.checkpoint files, written by srnn.loop.)
"""
import contextlib
import fcntl
import json
import os
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: files only, any machine, the caller's backend untouched

from ref.config import Config
from ref.errors import ConfigError, DataError

from . import checkpoint
from .config import TrainConfig


def write_run_config(run_dir, config, tc, implementation, data_dir=None):
    """config.json: the model, the training settings, the implementation (Engine.describe()) and
    the data directory (None for the synthetic data), so that evaluating or resuming the run
    finds its data without being told again."""
    write_json(Path(run_dir) / "config.json", {"model": config.to_dict(), "train": tc.to_dict(),
                                               "implementation": implementation, "data_dir": data_dir})


def recorded_data_dir(run_dir):
    """The data directory a run recorded in its config.json, when it still exists; else None."""
    try:
        data_dir = json.loads((Path(run_dir) / "config.json").read_text()).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return data_dir if data_dir and Path(data_dir).is_dir() else None


@contextlib.contextmanager
def exclusive(run_dir):
    """Hold the run directory for one training: a second one started on it refuses at once.

    The lock is an flock on the directory itself, which the system releases when its process
    ends, however it ends (kill -9 included): no lock file, and no stale lock, is left behind.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{run_dir} is in use by another training; wait for it to end or choose "
                              f"another run directory") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_stray_temporaries(run_dir):
    """Delete the temporary files of atomic writes that a killed process left (call with the lock held)."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


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


def write_json(path, obj):
    checkpoint.atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def write_history(run_dir, history):
    """metrics.jsonl and learning_curve.png of the epoch records so far."""
    lines = "".join(json.dumps(record) + "\n" for record in history)
    checkpoint.atomic_write(Path(run_dir) / "metrics.jsonl", lambda f: f.write(lines.encode()))
    _plot_learning_curve(history, Path(run_dir) / "learning_curve.png")


def _plot_learning_curve(history, path):
    """Training and validation ELBO per epoch: every epoch on the left, and on the right the second
    half of training at its own scale, where runs differ (the first epochs span tens of nats)."""
    fig = Figure(figsize=(11, 4))
    valid = [r for r in history if r["valid"] is not None]
    for ax, start in zip(fig.subplots(1, 2), (0, len(history) // 2)):
        late = [r for r in valid if r["epoch"] > start]
        ax.plot([r["epoch"] for r in history[start:]], [r["train_elbo"] for r in history[start:]],
                label="train (frame-weighted, with KL weight)")
        ax.plot([r["epoch"] for r in late], [r["valid"]["sequence_averaged"] for r in late], "o-",
                label="valid ELBO (sequence-averaged)")
        if valid:  # the checkpoint kept as best.npz
            best = max(valid, key=lambda r: r["valid"]["sequence_averaged"])["epoch"]
            ax.axvline(best, color="gray", linestyle=":", label=f"best on validation (epoch {best})")
        ax.set_title("every epoch" if start == 0 else f"epochs {start + 1}-{len(history)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per step")
        ax.grid(alpha=0.3)
    ax.legend()
    checkpoint.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
