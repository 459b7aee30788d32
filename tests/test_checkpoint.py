"""srnn.checkpoint: exact round trips, contract names readable without srnn, atomic writes.
Bad checkpoints: the census, tests/test_bad_inputs.py."""
import json
import os

import numpy as np
import pytest

import ref
from ref.optim import adam_init
from srnn import checkpoint
from srnn.config import TrainConfig

CONFIG = ref.Config(x_dim=88, d_dim=4, z_dim=2, a_dim=4, h_dim=8, embed_layers=1, mlp_layers=1)


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    return {k: v + rng.standard_normal(v.shape) for k, v in ref.init_params(CONFIG, 0).items()}


def test_round_trip_is_exact(tmp_path, params):
    adam = adam_init(params)
    adam["m"] = {k: v * 0.5 for k, v in params.items()}
    state = {"epoch": 3, "best_valid": -8.25, "adam": {**adam, "step": 7}}
    tc = TrainConfig(epochs=4, lr=3e-3)
    checkpoint.save(tmp_path / "c.npz", params, CONFIG, tc, state)

    loaded = checkpoint.load(tmp_path / "c.npz")
    assert loaded.config == CONFIG and loaded.train_config == tc
    assert set(loaded.params) == set(params)
    for name, value in params.items():
        assert loaded.params[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    assert loaded.state["epoch"] == 3 and loaded.state["best_valid"] == -8.25
    assert loaded.state["adam"]["step"] == 7
    for name in params:
        np.testing.assert_array_equal(loaded.state["adam"]["m"][name], adam["m"][name])
        np.testing.assert_array_equal(loaded.state["adam"]["v"][name], adam["v"][name])


def test_parameters_are_readable_by_plain_numpy_under_spec_names(tmp_path, params):
    checkpoint.save(tmp_path / "c.npz", params, CONFIG)
    with np.load(tmp_path / "c.npz") as archive:
        spec_keys = {k for k in archive.files if not k.startswith(("__", "state/"))}
        assert spec_keys == set(ref.param_shapes(CONFIG))
        np.testing.assert_array_equal(archive["gru_d.W_ih"], params["gru_d.W_ih"])
        assert json.loads(str(archive["__config__"])) == CONFIG.to_dict()


def test_optional_parts_default_to_none_and_empty(tmp_path, params):
    checkpoint.save(tmp_path / "c.npz", params, CONFIG)
    loaded = checkpoint.load(tmp_path / "c.npz")
    assert loaded.train_config is None and loaded.state == {}


def test_crash_during_replace_leaves_old_file_intact(tmp_path, params, monkeypatch):
    path = tmp_path / "last.npz"
    checkpoint.save(path, params, CONFIG, state={"epoch": 1})
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    changed = {k: v + 1.0 for k, v in params.items()}
    with pytest.raises(OSError, match="simulated crash"):
        checkpoint.save(path, changed, CONFIG, state={"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert checkpoint.load(path).state["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"], "temporary file left behind"


def test_crash_while_writing_leaves_old_file_intact(tmp_path, params, monkeypatch):
    path = tmp_path / "last.npz"
    checkpoint.save(path, params, CONFIG)
    before = path.read_bytes()

    def interrupted(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, params, CONFIG)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]
