"""Data in memory: splits of masked, batch-first piano rolls, their minibatches, and the
truncated-BPTT stream layout.

Arrays are batch-first: ``u``, ``x`` (N, T, x_dim), ``mask`` (N, T), with a left-aligned valid
prefix in every row (docs/model.md §2). A split holds either N independent pieces or the
stream layout of the srnn2016 files (``Split.streams``), where the state at the end of batch
k starts batch k+1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ref.config import Config
from ref.errors import ConfigError, DataError, InputError

SRNN2016_STREAMS = 16  # parallel streams of the srnn2016 train/valid layout
SRNN2016_CHUNK = 100  # steps per chunk of the srnn2016 train/valid layout


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

    def each_sequence(self) -> list[tuple[slice, slice, Batch]]:
        """Each sequence alone, trimmed to its length: [(row, steps, Batch)], where ``row`` and
        ``steps`` are the slices that cut it (and its noise) out of the batch. A padded batch
        computes every step of its longest sequence for each of its sequences; these compute
        only their own."""
        sequences = []
        for i, T_i in enumerate(self.mask.sum(axis=1).astype(int)):
            row, steps = slice(i, i + 1), slice(0, T_i)
            sequences.append((row, steps, Batch(self.u[row, steps], self.x[row, steps], self.mask[row, steps])))
        return sequences


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
