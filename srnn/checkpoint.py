"""Checkpoints: one .npz that any implementation of the project can load.

Layout of the archive:
- every parameter under its contract name (docs/model.md §4.6: "gru_d.W_ih", "emit.out.b", ...), so another
  implementation reads the keys without a "__" or "state/" prefix and has the model;
- "__config__": the model `Config` as JSON (a 0-d unicode array, no pickle needed);
- "__train_config__": the `TrainConfig` as JSON, when the checkpoint comes from training;
- "state/...": training state (epoch, best validation score, Adam's step and moments),
  nested dicts flattened with "/" ("state/adam/m/gru_d.W_ih"), which contract names never contain.

Files are written atomically: a crash mid-write leaves the previous file untouched.
"""
import hashlib
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ref.checks import check_param_values, check_params
from ref.config import Config
from ref.errors import DataError, ParamsError

from .config import TrainConfig

CONFIG_KEY = "__config__"
TRAIN_CONFIG_KEY = "__train_config__"
STATE_PREFIX = "state/"


class Checkpoint(NamedTuple):
    params: dict            # name -> np.ndarray, contract names
    config: Config
    train_config: TrainConfig | None
    state: dict             # nested dict of training state; {} when none was saved


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it over `path`.

    os.replace is atomic on POSIX and Windows, so readers see the old file or the new
    one, never a partial one; the temporary file is removed if anything fails.
    """
    path = Path(path)
    # a fresh name per call ("x" fails rather than reuse one); unlike mkstemp's 0600, open() honours the umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path, params, config, train_config=None, state=None):
    """Write params (contract names), config, optional train_config and training state to `path`.

    state: nested dict whose leaves are numbers or arrays, e.g.
        {"epoch": 3, "best_valid": -8.1, "adam": {"step": 120, "m": {...}, "v": {...}}}
    """
    arrays = {name: np.asarray(value) for name, value in params.items()}
    arrays[CONFIG_KEY] = np.array(json.dumps(config.to_dict()))
    if train_config is not None:
        arrays[TRAIN_CONFIG_KEY] = np.array(json.dumps(train_config.to_dict()))
    arrays.update(_flatten(state or {}, STATE_PREFIX))
    atomic_write(path, lambda f: np.savez(f, **arrays))


TRAINING_STATE = ("epoch", "best_valid", "adam")  # what last.npz holds to resume a run


def load(path, training_state=False):
    """Read a checkpoint written by `save` and check its parameters against its Config, and its
    training state (what there is of it; with training_state, all of TRAINING_STATE).

    Returns Checkpoint(params, config, train_config, state). Raises DataError when the
    file is missing or unreadable, or its parameters or state do not fit its Config.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise DataError(f"checkpoint {path} is not an .npz archive (damaged, or not a checkpoint)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"checkpoint {path} is not a readable .npz file ({e})") from None
    if CONFIG_KEY not in arrays:
        raise DataError(f"checkpoint {path} has no {CONFIG_KEY} entry (not written by srnn?)")
    try:
        config = Config.from_dict(json.loads(str(arrays.pop(CONFIG_KEY))))
        train_config = None
        if TRAIN_CONFIG_KEY in arrays:
            train_config = TrainConfig.from_dict(json.loads(str(arrays.pop(TRAIN_CONFIG_KEY))))
    except (ValueError, TypeError, AttributeError) as e:  # bad JSON, not a mapping, bad fields
        raise DataError(f"checkpoint {path} holds an invalid configuration: {e}") from None
    state = _unflatten({k: v for k, v in arrays.items() if k.startswith(STATE_PREFIX)}, STATE_PREFIX)
    params = {k: v for k, v in arrays.items() if not k.startswith(STATE_PREFIX)}
    try:
        check_params(params, config, source=str(path))
        check_param_values(params, source=str(path))
    except ParamsError as e:
        raise ParamsError(f"checkpoint {e}") from None
    _check_state(state, config, path, TRAINING_STATE if training_state else ())
    return Checkpoint(params, config, train_config, state)


def fingerprint(params):
    """SHA-256 of the parameters (names, dtypes, shapes, values): which checkpoint a result is of."""
    digest = hashlib.sha256()
    for name in sorted(params):
        value = np.ascontiguousarray(params[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _check_state(state, config, path, required):
    """The training state's epoch, best validation score and Adam state, where present, are what
    the loop wrote: an epoch count, a number, and moments of the parameters' shapes."""
    missing = [key for key in required if key not in state]
    if missing:
        raise DataError(f"checkpoint {path} lacks the training state {', '.join(missing)} (not a last.npz?)")
    if "epoch" in state and not (isinstance(state["epoch"], int) and state["epoch"] >= 0):
        raise DataError(f"checkpoint {path}: epoch must be a whole number >= 0, got {state['epoch']!r}")
    if "best_valid" in state and not isinstance(state["best_valid"], float):
        raise DataError(f"checkpoint {path}: best_valid must be a number, got {state['best_valid']!r}")
    if "adam" in state:
        adam = state["adam"] if isinstance(state["adam"], dict) else {}
        if not (isinstance(adam.get("step"), int) and adam["step"] >= 0):
            raise DataError(f"checkpoint {path}: adam step must be a whole number >= 0, got {adam.get('step')!r}")
        for moment in ("m", "v"):
            values = adam.get(moment) if isinstance(adam.get(moment), dict) else {}
            source = f"checkpoint {path}: Adam's {moment}"
            check_params(values, config, source)
            check_param_values(values, source)


def _flatten(tree, prefix):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = np.asarray(value)
    return flat


def _unflatten(flat, prefix):
    tree = {}
    for key, value in flat.items():
        *parents, leaf = key[len(prefix):].split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        # 0-d arrays come back as Python scalars (epoch, step, scores)
        node[leaf] = value.item() if value.ndim == 0 else value
    return tree
