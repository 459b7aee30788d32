"""srnn.data and srnn.splits: counts against shared/data/README.md, the u/x shift, batch layouts, the
download path (loopback server, no internet). Bad files: the census, tests/test_bad_inputs.py."""
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ref.errors import ConfigError, DataError
from srnn import data, splits

DATA_DIR = Path(os.environ.get("SRNN_DATA_DIR") or Path(__file__).parents[1] / ".." / "shared" / "data")
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"no data directory at {DATA_DIR}")

JSB_MAT = "boulanger2012/JSB_Chorales.mat"

# shared/data/README.md: pieces (train, valid, test), frames (train, valid, test), longest piece
BOULANGER = {
    "jsb": ((229, 76, 77), (13807, 4602, 4725), 160),
    "nottingham": ((694, 173, 170), (176561, 45513, 44463), 1793),
    "piano": ((87, 12, 25), (75911, 8540, 19036), 3857),
    "muse": ((524, 135, 124), (245202, 82755, 64339), 4273),
}
# shared/data/README.md: train chunks, valid chunks, test pieces, test frames
SRNN2016 = {
    "jsb": (272, 80, 77, 9396),
    "nottingham": (1472, 368, 170, 37062),
    "piano": (704, 96, 25, 17328),
    "muse": (2480, 784, 124, 67391),
}


# Module scope with params: pytest runs every test of one dataset before loading the next.
@pytest.fixture(scope="module", params=data.DATASETS)
def boulanger(request):
    if not DATA_DIR.is_dir():
        pytest.skip(f"no data directory at {DATA_DIR}")
    return data.load_dataset(request.param, "boulanger2012", DATA_DIR)


@pytest.fixture(scope="module", params=data.DATASETS)
def srnn2016(request):
    if not DATA_DIR.is_dir():
        pytest.skip(f"no data directory at {DATA_DIR}")
    return data.load_dataset(request.param, "srnn2016", DATA_DIR)


def three_splits(ds):
    return ds.train, ds.valid, ds.test


# ------------------------------------------------------------------ real data

def test_boulanger2012_counts_match_readme(boulanger):
    pieces, frames, longest = BOULANGER[boulanger.name]
    assert tuple(len(s) for s in three_splits(boulanger)) == pieces
    assert tuple(s.num_frames for s in three_splits(boulanger)) == frames
    assert max(s.lengths.max() for s in three_splits(boulanger)) == longest
    for s in three_splits(boulanger):
        assert s.streams == 0
        assert s.x.shape[1] == s.lengths.max()  # padded to the split's longest piece
        assert s.x.dtype == s.u.dtype == s.mask.dtype == np.float32
    assert boulanger.x_dim == 88


def test_boulanger2012_u_is_x_shifted_with_zero_first_input(boulanger):
    for s in three_splits(boulanger):
        assert not s.u[:, 0].any()
        # piece by piece: the padded arrays are large, their valid prefixes are not
        for u, x, T in zip(s.u, s.x, s.lengths):
            assert np.array_equal(u[1:T], x[:T - 1])


def test_srnn2016_counts_match_readme(srnn2016):
    train_chunks, valid_chunks, test_pieces, test_frames = SRNN2016[srnn2016.name]
    assert (len(srnn2016.train), len(srnn2016.valid)) == (train_chunks, valid_chunks)
    assert (len(srnn2016.test), srnn2016.test.num_frames) == (test_pieces, test_frames)
    for s in (srnn2016.train, srnn2016.valid):
        assert s.streams == 16 and s.x.shape[1:] == (100, 88)
        assert (s.mask == 1).all()
    assert srnn2016.test.streams == 0
    for s in three_splits(srnn2016):
        assert s.x.dtype == s.u.dtype == s.mask.dtype == np.float32


def test_srnn2016_u_is_x_shifted_across_chunks_and_pieces(srnn2016):
    for s in (srnn2016.train, srnn2016.valid):
        assert np.array_equal(s.u[:, 1:], s.x[:, :-1])  # within a chunk
        assert np.array_equal(s.u[16:, 0], s.x[:-16, -1])  # u_train[16+j, 0] == x_train[j, -1]
    test = srnn2016.test
    for u, x, T in zip(test.u, test.x, test.lengths):
        assert np.array_equal(u[1:T], x[:T - 1])
    assert np.isfinite(test.u).all() and not test.u[test.mask == 0].any()  # NaN padding zeroed


@needs_data
def test_srnn2016_stream_batches_are_consecutive_row_blocks_with_carry():
    train = data.load_dataset("jsb", "srnn2016", DATA_DIR).train
    batches = list(train.batches(16, rng=np.random.default_rng(0)))  # rng must not reorder
    assert len(batches) == len(train) // 16
    for k, b in enumerate(batches):
        assert np.array_equal(b.x, train.x[16 * k:16 * k + 16])
        assert np.array_equal(b.u, train.u[16 * k:16 * k + 16])
        assert b.carry == (k > 0)
    with pytest.raises(ConfigError, match="16"):
        train.batches(8)  # fails at the call, not at the first batch


# ------------------------------------------------------------- pieces layout

def pieces_split_of(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return splits.pieces_split([(rng.random((T, 88)) < 0.2).astype(np.uint8) for T in lengths])


@settings(deadline=None, max_examples=40)
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=20),
       batch_size=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_piece_batches_visit_every_piece_once_trimmed_and_left_aligned(lengths, batch_size, seed):
    split = pieces_split_of(lengths)
    seen = []
    for b in split.batches(batch_size, rng=np.random.default_rng(seed)):
        assert not b.carry and 1 <= len(b.x) <= batch_size
        T_b = b.mask.sum(axis=1).astype(int)
        assert b.x.shape[1] == T_b.max()  # trimmed to the batch's longest piece
        assert np.array_equal(b.mask, (np.arange(b.x.shape[1]) < T_b[:, None]).astype(float))
        # identify each row by its content: the pieces are random, so rows are distinct
        for row, T in zip(b.x, T_b):
            matches = [i for i in range(len(split)) if lengths[i] == T
                       and np.array_equal(split.x[i, :T], row[:T])]
            seen.append(matches[0])
    assert sorted(seen) == list(range(len(lengths)))


def test_piece_batches_order_is_determined_by_the_rng():
    split = pieces_split_of(range(1, 31))

    def order(rng):
        return [int(L) for b in split.batches(4, rng=rng) for L in b.mask.sum(axis=1)]

    assert order(None) == list(range(1, 31))
    assert order(np.random.default_rng(3)) == order(np.random.default_rng(3))
    assert order(np.random.default_rng(3)) != order(np.random.default_rng(4))
    assert sorted(order(np.random.default_rng(3))) == list(range(1, 31))


def test_pieces_split_shifts_x_into_u():
    pieces = [np.eye(88, dtype=np.uint8)[:3], np.eye(88, dtype=np.uint8)[5:6]]
    s = splits.pieces_split(pieces)
    assert s.x.shape == (2, 3, 88) and list(s.lengths) == [3, 1]
    assert np.array_equal(s.u[0], np.vstack([np.zeros(88), pieces[0][:2]]))
    assert not s.u[1].any() and np.array_equal(s.x[1, 0], pieces[1][0])
    assert not s.x[1, 1:].any() and np.array_equal(s.mask, [[1, 1, 1], [1, 0, 0]])


@settings(deadline=None, max_examples=60)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=25),
       streams=st.integers(1, 6), chunk=st.integers(1, 9))
def test_as_streams_cuts_the_concatenated_pieces_into_streams_of_chunks(lengths, streams, chunk):
    split = pieces_split_of(lengths)
    frames = sum(lengths)
    if frames < streams:
        with pytest.raises(DataError, match=f"{frames} frames cannot fill {streams} streams"):
            splits.as_streams(split, streams, chunk)
        return
    s = splits.as_streams(split, streams, chunk)
    assert s.streams == streams and s.x.shape[1] == chunk and len(s) % streams == 0
    assert s.lengths.min() >= 1  # no empty row, which the model would reject
    # reading stream j's chunks in order gives part j; the parts in order give the pieces in order
    parts = [[s.x[k * streams + j, :s.lengths[k * streams + j]] for k in range(len(s) // streams)]
             for j in range(streams)]
    for j in range(streams):  # only a stream's last chunk may be padded
        assert all(len(c) == chunk for c in parts[j][:-1])
    read_x = np.concatenate([np.concatenate(p) for p in parts])
    read_u = np.concatenate([s.u[k * streams + j, :s.lengths[k * streams + j]]
                             for j in range(streams) for k in range(len(s) // streams)])
    valid = split.mask.astype(bool)
    dropped = frames - len(read_x)
    assert 0 <= dropped < streams  # only when the rest would leave a stream's last chunk empty
    assert np.array_equal(read_x, split.x[valid][:len(read_x)]) and np.array_equal(read_u, split.u[valid][:len(read_u)])
    part_lengths = [sum(map(len, p)) for p in parts]
    assert max(part_lengths) - min(part_lengths) <= 1
    assert splits.as_streams(s, streams, chunk) is s  # already streams


@needs_data
def test_as_streams_of_boulanger2012_keeps_every_frame_and_the_zero_input_at_each_piece_start():
    train = data.load_dataset("jsb", "boulanger2012", DATA_DIR).train
    s = splits.as_streams(train)
    assert s.num_frames == train.num_frames and len(s) == 16 * 9
    assert not train.u[:, 0].any()  # u_1 = 0 at every piece's start ...

    def zero_inputs(split):
        return int((~split.u.any(axis=2) & (split.mask > 0)).sum())

    assert zero_inputs(s) == zero_inputs(train) >= len(train)  # ... and in the streams too


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_batch_size_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="batch_size"):
        pieces_split_of([3, 4]).batches(bad)


# -------------------------------------------------------- names and directories

def test_synthetic_dataset_is_seeded_masked_piano_rolls_with_its_teacher():
    from srnn.synthetic import LENGTHS, SPLIT_SIZES, TEACHER_CONFIG

    ds, again = data.load_dataset("synthetic"), data.load_dataset("synthetic")
    assert ds.teacher[0] == TEACHER_CONFIG and ds.x_dim == TEACHER_CONFIG.x_dim
    for name, n in SPLIT_SIZES.items():
        s = getattr(ds, name)
        assert len(s) == n and s.streams == 0
        assert np.array_equal(s.x, getattr(again, name).x), "the same data every time"
        assert LENGTHS[0] <= s.lengths.min() and s.lengths.max() <= LENGTHS[1]
        assert set(np.unique(s.x)) == {0.0, 1.0}
        assert np.all(s.x[s.mask == 0] == 0)
        np.testing.assert_array_equal(s.u[:, 0], 0)
        np.testing.assert_array_equal(s.u[:, 1:], s.x[:, :-1])


def test_data_dir_is_argument_then_environment_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SRNN_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("SRNN_DATA_DIR")
    assert "srnn" in str(data.resolve_data_dir())


# ------------------------------------------------- download path, no internet

@pytest.fixture
def server(tmp_path, monkeypatch):
    """(directory, base URL) of a loopback HTTP server serving that directory."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@needs_data
def test_missing_file_is_downloaded_and_verified(server, tmp_path, monkeypatch, capsys):
    served, url = server
    shutil.copy(DATA_DIR / JSB_MAT, served / "JSB_Chorales.mat")
    monkeypatch.setitem(data.URLS, JSB_MAT, url + "JSB_Chorales.mat")
    cache = tmp_path / "cache"
    ds = data.load_dataset("jsb", data_dir=cache)
    assert (cache / JSB_MAT).read_bytes() == (DATA_DIR / JSB_MAT).read_bytes()
    assert len(ds.train) == 229
    err = capsys.readouterr().err
    assert "downloading" in err and str(cache / JSB_MAT) in err


def test_corrupted_download_is_a_checksum_error_naming_the_file(server, tmp_path, monkeypatch):
    served, url = server
    (served / "JSB_Chorales.mat").write_bytes(b"not the published file")
    monkeypatch.setitem(data.URLS, JSB_MAT, url + "JSB_Chorales.mat")
    with pytest.raises(DataError, match="JSB_Chorales.mat.*checksum"):
        data.load_dataset("jsb", data_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / JSB_MAT).exists()


# ------------------------------------------------------------------ srnn2016 padding

def small_srnn2016_arrays():
    rng = np.random.default_rng(0)
    roll = lambda *shape: (rng.random(shape) < 0.3).astype(np.float32)  # noqa: E731
    x_test = roll(2, 5, 88)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    x_test[mask == 0] = 0
    u_test = np.concatenate([roll(2, 1, 88), x_test[:, :-1]], axis=1)
    u_test[mask == 0] = np.nan  # as in the released files
    x_train, x_valid = roll(16, 100, 88), roll(16, 100, 88)
    return dict(x_train=x_train, u_train=x_train.copy(), x_valid=x_valid, u_valid=x_valid.copy(),
                x_test=x_test, u_test=u_test, mask_test=mask)


def test_srnn2016_nan_padding_of_u_test_becomes_zero(tmp_path):
    np.savez(tmp_path / "ok.npz", **small_srnn2016_arrays())
    train, valid, test = data.read_srnn2016(tmp_path / "ok.npz")
    assert train.streams == 16 and list(test.lengths) == [3, 5]
    assert np.isfinite(test.u).all() and not test.u[0, 3:].any()
