"""The census of bad inputs: every way we know of handing the project something wrong, one table
per class, each case asserting the exception class (the Python API) or the exit status (the
`srnn` command) and that the message names the problem.

    settings          Config and TrainConfig fields                   ConfigError
    CLI flags         `srnn ...` command lines                        exit 2, one line "srnn: error: ..."
    data files        the music files and the data directory          DataError
    arrays            u, x, mask, eps, states, sample noise, rolls    InputError, ref and torch_impl, every model
    params            parameter mappings, kl_weight, K               ParamsError / InputError, ref and torch_impl, every model
    checkpoints       .npz files that are not what `save` wrote       DataError
    signals           Ctrl-C in training, in a kernel, swallowed  exit 130, one line
                      where it lands, in the imports
    concurrent runs   two trainings on one run directory, and what    exit 2 for the second, the first intact
                      a killed one left

Kills at random moments and the resumes after them: tests/test_faults.py.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import ref
import srnn.engine
from ref import fast, optim
from ref.errors import ConfigError, DataError, InputError, ParamsError
from srnn import checkpoint, cli, ctrl_c, data, loop, music
from srnn.config import TrainConfig
from tests.strategies import CONFIGS, perturbed_params, random_batch
from tests.test_data import small_srnn2016_arrays

ROOT = Path(__file__).parents[1]
DATA_DIR = Path(os.environ.get("SRNN_DATA_DIR") or ROOT / ".." / "shared" / "data")
TINY_FLAGS = ["--preset", "small", "--d-dim", "4", "--z-dim", "2", "--a-dim", "4", "--h-dim", "8",
              "--embed-layers", "1", "--mlp-layers", "1"]
FAST_FLAGS = ["--batch-size", "256", "--iw-samples", "2", "--kl-anneal-epochs", "2"]  # one batch per epoch


def srnn_command(*args, **kwargs):
    """`python -m srnn ARGS` from the repository root, as the installed `srnn` runs."""
    return subprocess.run([sys.executable, "-m", "srnn", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, **kwargs)


def assert_one_error_line(err, fragment, prefix="srnn: error: "):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err and fragment in lines[0], err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-epoch run of a tiny model on the synthetic data."""
    run = tmp_path_factory.mktemp("census") / "run"
    assert cli.main(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "2", "--run-dir", str(run)]) == 0
    return run


def snapshot(run_dir):
    return {p.name: p.read_bytes() for p in sorted(Path(run_dir).iterdir())}


# ---------------------------------------------------------------------------------------
# Settings: Config and TrainConfig
# ---------------------------------------------------------------------------------------

SETTINGS = [
    pytest.param(ref.Config, dict(model="lstm"), "unknown model 'lstm'; choose one of ('srnn', 'vrnn', 'rnn')",
                 id="config-model"),
    pytest.param(ref.Config, dict(inference="smooth"), "unknown inference", id="config-inference"),
    pytest.param(ref.Config, dict(emission="poisson"), "unknown emission", id="config-emission"),
    pytest.param(ref.Config, dict(z_dim=0), "z_dim must be an integer >= 1", id="config-z_dim-0"),
    pytest.param(ref.Config, dict(d_dim=2.5), "d_dim must be an integer", id="config-d_dim-fraction"),
    pytest.param(ref.Config, dict(mlp_layers=-1), "mlp_layers must be an integer >= 0", id="config-mlp_layers"),
    pytest.param(ref.Config, dict(residual_q="yes"), "residual_q must be True or False", id="config-residual_q"),
    pytest.param(TrainConfig, dict(epochs=0), "epochs", id="train-epochs-0"),
    pytest.param(TrainConfig, dict(batch_size=1.5), "batch_size", id="train-batch_size-fraction"),
    pytest.param(TrainConfig, dict(lr=-1.0), "lr must be a positive number", id="train-lr-negative"),
    pytest.param(TrainConfig, dict(lr=float("inf")), "lr must be a positive number (and finite)", id="train-lr-inf"),
    pytest.param(TrainConfig, dict(lr=1e30), "lr must be at most 1", id="train-lr-huge"),
    pytest.param(TrainConfig, dict(lr=float("nan")), "lr must be a positive number", id="train-lr-nan"),
    pytest.param(TrainConfig, dict(max_grad_norm=float("inf")), "max_grad_norm must be a positive number",
                 id="train-max_grad_norm-inf"),
    pytest.param(TrainConfig, dict(clip_value=float("nan")), "clip_value", id="train-clip_value-nan"),
    pytest.param(TrainConfig, dict(adam_eps=0.0), "adam_eps", id="train-adam_eps-0"),
    pytest.param(TrainConfig, dict(weight_decay=-0.1), "weight_decay must be a number >= 0", id="train-weight_decay-negative"),
    pytest.param(TrainConfig, dict(weight_decay=float("nan")), "weight_decay", id="train-weight_decay-nan"),
    pytest.param(TrainConfig, dict(lr=0.1, weight_decay=10.0), "lr * weight_decay must be below 1",
                 id="train-weight_decay-too-large"),
    pytest.param(TrainConfig, dict(kl_start=1.5), "kl_start", id="train-kl_start"),
    pytest.param(TrainConfig, dict(lr_decay=0.5), "lr_decay", id="train-lr_decay"),
    pytest.param(TrainConfig, dict(dataset="mnist"), "dataset", id="train-dataset"),
    pytest.param(TrainConfig, dict(dataset="jsb", variant="raw"), "variant", id="train-variant"),
    pytest.param(TrainConfig, dict(dtype="float16"), "dtype", id="train-dtype"),
    pytest.param(TrainConfig, dict(backend="cuda"), "backend", id="train-backend"),
    pytest.param(TrainConfig, dict(iw_samples=0), "iw_samples", id="train-iw_samples-0"),
    pytest.param(TrainConfig, dict(seed=-1), "seed", id="train-seed-negative"),
    pytest.param(TrainConfig, dict(patience=-1), "patience", id="train-patience-negative"),
    pytest.param(TrainConfig, dict(valid_every=2, patience=1), "patience (1) must be at least valid_every (2)",
                 id="train-patience-below-valid_every"),
]


@pytest.mark.parametrize("kind, fields, message", SETTINGS)
def test_settings(kind, fields, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        kind(**fields)


@pytest.mark.parametrize("kind", [ref.Config, TrainConfig])
def test_settings_unknown_field_from_a_file(kind):
    with pytest.raises(ConfigError, match="unknown .*field"):
        kind.from_dict({**kind().to_dict(), "momentum": 0.9})


# ---------------------------------------------------------------------------------------
# CLI flags: exit status 2 and one line; a refused command changes nothing in the run
# ---------------------------------------------------------------------------------------

def _diverge_with_nan_elbo(monkeypatch):
    monkeypatch.setattr(srnn.engine.RefEngine, "train_batch", lambda self, batch, *a, **k: (float("nan"), None, None))


def _diverge_with_inf_gradients(monkeypatch):
    clip = optim.clip_gradients
    monkeypatch.setattr(srnn.engine, "clip_gradients",
                        lambda grads, *a: clip({k: v * np.inf for k, v in grads.items()}, *a))


NEW = "{tmp}/new"  # a run directory that does not exist yet
CLI_FLAGS = [
    pytest.param([], "required", None, id="no-command"),
    pytest.param(["fly"], "invalid choice", None, id="unknown-command"),
    pytest.param(["train", "--bogus"], "unrecognized arguments: --bogus", None, id="unknown-flag"),
    pytest.param(["train", "--epochs", "zero"], "invalid int value", None, id="epochs-not-a-number"),
    pytest.param(["train", "--epochs", "0"], "epochs must be an integer >= 1", None, id="epochs-0"),
    pytest.param(["train", "--dataset", "foo"], "invalid choice", None, id="unknown-dataset"),
    pytest.param(["train", "--model", "lstm"], "argument --model: invalid choice: 'lstm'", None, id="unknown-model"),
    pytest.param(["train", "--d-dim", "-3"], "d_dim", None, id="d-dim-negative"),
    pytest.param(["train", "--z-dim", "-3"], "z_dim", None, id="z-dim-negative"),
    pytest.param(["train", "--lr", "-1"], "lr must be a positive number", None, id="lr-negative"),
    pytest.param(["train", "--lr", "nan"], "lr must be a positive number", None, id="lr-nan"),
    pytest.param(["train", "--lr", "inf"], "lr must be a positive number (and finite)", None, id="lr-inf"),
    pytest.param(["train", "--lr", "1e30"], "lr must be at most 1", None, id="lr-huge"),
    pytest.param(["train", "--max-grad-norm", "inf"], "max_grad_norm must be a positive number (and finite)",
                 None, id="max-grad-norm-inf"),
    pytest.param(["train", "--impl", "numpy"], "invalid choice", None, id="unknown-impl"),
    pytest.param(["train", "--device", "cuda"], "--device and --bf16 are options of --impl torch", None,
                 id="device-without-torch"),
    pytest.param(["train", "--impl", "torch", "--device", "tpu"], "unknown device 'tpu'", None, id="unknown-device"),
    pytest.param(["train", "--run-dir", "{run}"], "already holds a run", None, id="run-dir-taken"),
    pytest.param(["train", "--run-dir", "{run}", "--resume", "--epochs", "1"], "has completed 2 epochs", None,
                 id="resume-below-done"),
    pytest.param(["train", "--run-dir", "{run}", "--resume", "--lr", "0.01"], "cannot resume with different", None,
                 id="resume-other-settings"),
    pytest.param(["train", "--run-dir", "{tmp}/none", "--resume"], "config.json does not exist; is", None,
                 id="resume-nothing"),
    pytest.param(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "1", "--run-dir", NEW],
                 "training diverged in epoch 1, batch 1", _diverge_with_nan_elbo, id="diverged-nan-elbo"),
    pytest.param(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "1", "--run-dir", NEW],
                 "the gradients hold NaN or inf values", _diverge_with_inf_gradients, id="diverged-inf-gradient"),
    pytest.param(["evaluate"], "one of the arguments --run-dir --checkpoint is required", None,
                 id="evaluate-no-source"),
    pytest.param(["evaluate", "--run-dir", "a", "--checkpoint", "b"], "not allowed with", None,
                 id="evaluate-two-sources"),
    pytest.param(["evaluate", "--checkpoint", "{tmp}/missing.npz"], "does not exist", None, id="evaluate-missing"),
    pytest.param(["evaluate", "--checkpoint", "{tmp}/junk.npz"], "junk.npz", None, id="evaluate-junk"),
    pytest.param(["evaluate", "--run-dir", "{run}", "--iw-samples", "0"], "--iw-samples must be at least 1", None,
                 id="evaluate-iw-0"),
    pytest.param(["sample", "--checkpoint", "nope.npz"], "does not exist", None, id="sample-missing"),
    pytest.param(["sample", "--run-dir", "{run}", "--num", "0", "--out", "{tmp}"], "--num and --length", None,
                 id="sample-num-0"),
    pytest.param(["reproduce"], "name the run", None, id="reproduce-no-name"),
    pytest.param(["reproduce", "jsb-srnn2017"], "jsb-srnn2017", None, id="reproduce-unknown-run"),
    pytest.param(["reproduce", "jsb-srnn2016", "--iw-samples", "0"], "--iw-samples must be at least 1", None,
                 id="reproduce-iw-0"),
    pytest.param(["reproduce", "jsb-srnn2016", "--seed", "-1"], "--seed must be an integer >= 0", None,
                 id="reproduce-seed-negative"),
    pytest.param(["reproduce", "jsb-srnn2099-seed3"], "unknown run 'jsb-srnn2099-seed3'", None,
                 id="reproduce-unknown-run-with-seed"),
]


@pytest.mark.parametrize("argv, fragment, patch", CLI_FLAGS)
def test_cli_flags(argv, fragment, patch, run, tmp_path, monkeypatch, capsys):
    (tmp_path / "junk.npz").write_bytes(b"junk")
    if patch:
        patch(monkeypatch)
    before = snapshot(run)
    assert cli.main([a.format(run=run, tmp=tmp_path) for a in argv]) == 2
    assert_one_error_line(capsys.readouterr().err, fragment)
    assert snapshot(run) == before
    assert not (tmp_path / "none").exists()  # a mistyped run directory is not created


def test_cli_error_in_a_subprocess_is_one_line_without_traceback():
    result = srnn_command("train", "--epochs", "zero")
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "invalid int value")


@pytest.mark.skipif(not (DATA_DIR / "srnn2016").is_dir(), reason=f"no data at {DATA_DIR}")
def test_cli_stream_layout_with_another_batch_size_writes_nothing(tmp_path, capsys):
    argv = ["train", "--dataset", "jsb", "--variant", "srnn2016", "--batch-size", "8",
            "--data-dir", str(DATA_DIR), "--run-dir", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    assert_one_error_line(capsys.readouterr().err, "use batch size 16, not 8")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------------------

JSB_MAT = "boulanger2012/JSB_Chorales.mat"


def write_mat(path, pieces, **variables):
    cell = np.empty((1, len(pieces)), dtype=object)
    cell[0, :] = pieces
    scipy.io.savemat(path, {"traindata": cell, "validdata": cell, "testdata": cell, **variables})


def _mat(pieces=None, **variables):
    def write(path):
        write_mat(path, [np.zeros((3, 88), np.uint8)] if pieces is None else pieces, **variables)
    return write, data.read_boulanger2012


def _srnn2016(corrupt):
    def write(path):
        arrays = small_srnn2016_arrays()
        corrupt(arrays)
        np.savez(path, **arrays)
    return write, data.read_srnn2016


def _bytes(content, reader):
    return (lambda path: path.write_bytes(content)), reader


DATA_FILES = [
    pytest.param(*_bytes(b"damaged", data.read_boulanger2012), "cannot read it as a MATLAB file", id="mat-junk"),
    pytest.param(*_mat(pieces=[np.zeros((4, 87), np.uint8)]), "(T, 88) piano roll", id="mat-87-keys"),
    pytest.param(*_mat(pieces=[np.zeros((4, 88, 1), np.uint8)]), "(T, 88) piano roll", id="mat-rank-3"),
    pytest.param(*_mat(pieces=[np.zeros((0, 88), np.uint8)]), "T >= 1", id="mat-empty-piece"),
    pytest.param(*_mat(pieces=[np.full((4, 88), 2, np.uint8)]), "only 0 and 1", id="mat-not-binary"),
    pytest.param(*_bytes(b"damaged", data.read_srnn2016), "cannot read it as a NumPy .npz file", id="npz-junk"),
    pytest.param(*_srnn2016(lambda a: a.pop("mask_test")), "missing array(s) mask_test", id="npz-missing-array"),
    pytest.param(*_srnn2016(lambda a: a["u_test"].__setitem__((0, 1, 5), np.nan)), "NaN at a valid",
                 id="npz-nan-at-valid-step"),
    pytest.param(*_srnn2016(lambda a: a["x_train"].__setitem__((3, 4, 5), 0.5)), "only 0 and 1", id="npz-not-binary"),
    pytest.param(*_srnn2016(lambda a: a["mask_test"].__setitem__((1, 2), 0)), "left-aligned", id="npz-mask-hole"),
    pytest.param(*_srnn2016(lambda a: a.update(x_valid=a["x_valid"][:15], u_valid=a["u_valid"][:15])),
                 "expected two arrays of shape", id="npz-15-streams"),
]


@pytest.mark.parametrize("write, read, message", DATA_FILES)
def test_data_files(write, read, message, tmp_path):
    path = tmp_path / ("bad.mat" if read is data.read_boulanger2012 else "bad.npz")
    write(path)
    with pytest.raises(DataError, match=re.escape(message)) as error:
        read(path)
    assert str(path) in str(error.value)


def test_data_file_with_a_wrong_checksum_names_it(tmp_path):
    (tmp_path / JSB_MAT).parent.mkdir()
    (tmp_path / JSB_MAT).write_bytes(b"damaged")
    with pytest.raises(DataError, match="JSB_Chorales.mat: sha256 checksum mismatch"):
        data.load_dataset("jsb", data_dir=tmp_path)


def test_data_dir_mistyped_gets_no_folders_and_a_message_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(data.URLS, JSB_MAT, "http://127.0.0.1:1/JSB_Chorales.mat")  # nothing listens there
    with pytest.raises(DataError, match="JSB_Chorales.mat.*(SRNN_DATA_DIR.*--data-dir|--data-dir.*SRNN_DATA_DIR)"):
        data.load_dataset("jsb", data_dir=tmp_path / "dta")
    assert not (tmp_path / "dta").exists()


def test_data_unknown_dataset_or_variant_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'; choose one of"):
        data.load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown data variant 'raw'; choose one of"):
        data.load_dataset("jsb", "raw", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------
# Arrays: ref and torch_impl raise the same InputError, word for word
# ---------------------------------------------------------------------------------------

def torch_model(config, params):
    """torch_impl's module of the model in float64 holding `params`, and a function making tensors of arrays."""
    torch = pytest.importorskip("torch")
    from torch_impl import model_for
    model = model_for(config).double().load_params(params)
    return model, lambda *arrays: tuple(torch.as_tensor(np.asarray(a, dtype=float)) for a in arrays)


def _rows_1(m):
    return np.arange(len(m))[:, None] == 1


ARRAYS = [  # (u, x, mask, eps) -> bad arguments, the message
    pytest.param(lambda u, x, m, e: (u, x[..., :-1], m, e), "x must have shape (B, T, x_dim=5)", id="x-shape"),
    pytest.param(lambda u, x, m, e: (u[:, :-1], x, m, e), "u must have the shape of x", id="u-shape"),
    pytest.param(lambda u, x, m, e: (u, x, m, e[..., :-1]), "eps must have shape (B, T, z_dim)", id="eps-shape"),
    pytest.param(lambda u, x, m, e: (u, x, m[:, :-1], e), "mask must have shape (3, 5)", id="mask-shape"),
    pytest.param(lambda u, x, m, e: (u, x, m[..., None], e), "mask must have shape", id="mask-rank-3"),
    pytest.param(lambda u, x, m, e: (u, x * 0.5, m, e), "binary piano roll", id="x-not-binary"),
    pytest.param(lambda u, x, m, e: (u, np.where(m[..., None] == 1, np.nan, x), m, e), "x holds NaN",
                 id="x-nan"),
    pytest.param(lambda u, x, m, e: (np.where(m[..., None] == 0, np.nan, u), x, m, e), "u holds NaN",
                 id="u-nan-padded"),
    pytest.param(lambda u, x, m, e: (u, x, m, np.where(m[..., None] == 1, np.inf, e)), "eps holds NaN or inf",
                 id="eps-inf"),
    pytest.param(lambda u, x, m, e: (u, x, np.where(np.arange(m.shape[1]) == 1, 0.0, m), e), "left-aligned",
                 id="mask-hole"),
    pytest.param(lambda u, x, m, e: (u, x, np.where(_rows_1(m), 0.0, m), e), "at least one valid step",
                 id="mask-empty-row"),
    pytest.param(lambda u, x, m, e: (u, x, m * 0.5, e), "mask must hold only 0 and 1", id="mask-not-0-1"),
    pytest.param(lambda u, x, m, e: (u[:, :0], x[:, :0], m[:, :0], e[:, :0]), "at least one valid step",
                 id="no-steps"),
]


@pytest.fixture(params=["paper-options", "vrnn", "rnn"])  # every model checks its input alike
def problem(request):
    config = CONFIGS[request.param]
    params = perturbed_params(config, seed=14)
    u, x, mask, eps = random_batch(config, 3, 5, np.random.default_rng(15))
    mask[0, 3:] = 0
    return config, params, (u, x, mask, eps)


@pytest.mark.parametrize("change, message", ARRAYS)
def test_arrays(change, message, problem):
    config, params, batch = problem
    bad = change(*batch)
    with pytest.raises(InputError, match=re.escape(message)):
        ref.elbo(params, *bad, config)
    model, tensors = torch_model(config, params)
    with pytest.raises(InputError, match=re.escape(message)):
        model.elbo(*tensors(*bad))


def _path_1(e):
    return np.arange(len(e))[:, None, None] == 1


IW_ARRAYS = [  # (u, x, mask, eps (K, B, T, z_dim), d_0, z_0) -> bad arguments, the message
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, e[0], d, z), "eps must have shape (K, B, T, z_dim)",
                 id="eps-3d"),
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, e[..., :-1], d, z), "eps must have shape (B, T, z_dim)",
                 id="eps-z_dim"),
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, np.where(_path_1(e)[..., None], np.nan, e), d, z),
                 "eps holds NaN", id="eps-nan-in-path-1"),
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, np.where((_path_1(e) & (m == 0))[..., None], np.inf, e), d, z),
                 "eps holds NaN", id="eps-inf-padded-in-path-1"),
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, e[:0], d, z), "at least one path (K >= 1)", id="K-0"),
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, e, d[:, :-1], z), "d_0 must have shape", id="d_0-shape"),
    pytest.param(lambda u, x, m, e, d, z: (u, x, m, e, d, z * np.nan), "z_0 holds NaN", id="z_0-nan"),
]


@pytest.mark.parametrize("change, message", IW_ARRAYS)
def test_iw_arrays_and_states(change, message, problem):
    """ref checks every path's noise, padded steps included; so does torch."""
    config, params, (u, x, mask, _) = problem
    rng = np.random.default_rng(17)
    bad = change(u, x, mask, rng.standard_normal((2, 3, 5, config.z_dim)),
                 np.zeros((3, config.d_dim)), np.zeros((3, config.z_dim)))
    with pytest.raises(InputError, match=re.escape(message)):
        ref.iw_bound(params, *bad[:4], config, *bad[4:])
    model, tensors = torch_model(config, params)
    with pytest.raises(InputError, match=re.escape(message)):
        model.iw_bound(*tensors(*bad))


@pytest.mark.parametrize("eps_z, noise_x", [((2, 4, 2), (2, 4, 5)), ((2, 4, 3), (2, 3, 5)), ((4, 3), (4, 5))],
                         ids=["eps_z-z_dim", "noise_x-T", "eps_z-2d"])
def test_sample_noise(eps_z, noise_x, problem):
    config, params, _ = problem
    with pytest.raises(InputError, match=re.escape("sample noise must have shapes")):
        ref.sample(params, config, np.zeros(eps_z), np.zeros(noise_x))
    model, tensors = torch_model(config, params)
    with pytest.raises(InputError, match=re.escape("sample noise must have shapes")):
        model.sample(*tensors(np.zeros(eps_z), np.zeros(noise_x)))


@pytest.mark.parametrize("roll", [np.zeros((5, 87)), np.zeros(88), np.full((3, 88), 0.5)],
                         ids=["87-keys", "1d", "not-binary"])
def test_piano_rolls_written_as_music(roll, tmp_path):
    with pytest.raises(InputError, match="piano roll"):
        music.write_midi(roll, tmp_path / "x.mid")
    with pytest.raises(InputError, match="piano roll"):
        music.piano_roll_png(roll, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------
# Params: a mapping checked against the Config at every entry point of both implementations
# ---------------------------------------------------------------------------------------

def _set(name, value):
    return lambda p: {**p, name: value(p[name]) if callable(value) else value}


PARAMS = [  # params -> bad params, the error class, the message (ref's and torch's)
    pytest.param(lambda p: {k: v for k, v in p.items() if k != "emit.out.b"}, ParamsError,
                 "missing ['emit.out.b']", id="missing"),
    pytest.param(lambda p: {**p, "extra.W": np.zeros(2)}, ParamsError, "unexpected ['extra.W']", id="extra"),
    pytest.param(_set("emit.0.W", np.zeros((3, 3))), ParamsError, "emit.0.W has shape (3, 3)", id="wrong-shape"),
    pytest.param(_set("emit.0.W", np.transpose), ParamsError, "emit.0.W has shape", id="transposed"),
    pytest.param(_set("emit.out.b", lambda v: v.astype(str)), ParamsError, "not floating-point arrays: emit.out.b",
                 id="strings"),
    pytest.param(_set("emit.out.b", lambda v: v.astype(int)), ParamsError, "not floating-point arrays: emit.out.b",
                 id="integers"),
    pytest.param(_set("emit.out.b", lambda v: v * np.nan), ParamsError, "NaN or inf values: emit.out.b", id="nan"),
    pytest.param(_set("emit.0.W", lambda v: v * np.inf), ParamsError, "NaN or inf values: emit.0.W", id="inf"),
    pytest.param(lambda p: list(p.values()), ParamsError, "must be a mapping of contract names to arrays, got list",
                 id="not-a-mapping"),
    pytest.param(lambda p: ref.init_params(CONFIGS["filtering"], 0), ParamsError, "does not match its Config",
                 id="another-config"),
]


@pytest.mark.parametrize("change, error, message", PARAMS)
def test_params(change, error, message, problem):
    config, params, batch = problem
    bad = change(params)
    with pytest.raises(error, match=re.escape(message)):
        ref.elbo(bad, *batch, config)
    with pytest.raises(error, match=re.escape(message)):
        ref.iw_bound(bad, *batch[:3], batch[3][None], config)
    torch_model(config, params)  # skips without torch
    from torch_impl import model_for
    model = model_for(config, seed=1)
    before = model.export_params()
    with pytest.raises(error, match=re.escape(message)):
        model.load_params(bad)
    assert all(np.array_equal(v, before[k]) for k, v in model.export_params().items())  # checked before any copy


def test_params_of_mixed_dtypes_are_refused_by_ref(problem):
    """ref computes in the parameters' dtype, so it needs one; torch_impl casts into its own."""
    config, params, batch = problem
    with pytest.raises(ParamsError, match="must share one dtype, got float32, float64"):
        ref.elbo(_set("emit.out.b", lambda v: v.astype(np.float32))(params), *batch, config)


def test_params_with_a_config_that_is_not_a_config(problem):
    config, params, batch = problem
    with pytest.raises(ConfigError, match="config must be a ref.Config, got dict"):
        ref.elbo(params, *batch, config.to_dict())
    torch_model(config, params)
    from torch_impl import model_for
    with pytest.raises(ConfigError, match="config must be a ref.Config, got dict"):
        model_for(config.to_dict())


@pytest.mark.parametrize("module, model", [("SRNN", "vrnn"), ("VRNN", "srnn"), ("RNN", "vrnn")])
def test_params_a_torch_module_of_another_model(module, model):
    pytest.importorskip("torch")
    import torch_impl
    with pytest.raises(ConfigError, match=f"{module} computes model .*, the config asks for '{model}'"):
        getattr(torch_impl, module)(ref.Config(model=model))


@pytest.mark.parametrize("kl_weight", [float("nan"), -1.0, float("inf")], ids=["nan", "negative", "inf"])
def test_kl_weight(kl_weight, problem):
    config, params, batch = problem
    with pytest.raises(InputError, match="kl_weight must be a finite number >= 0"):
        ref.elbo(params, *batch, config, kl_weight=kl_weight)
    model, tensors = torch_model(config, params)
    with pytest.raises(InputError, match="kl_weight must be a finite number >= 0"):
        model.elbo(*tensors(*batch), kl_weight=kl_weight)


# ---------------------------------------------------------------------------------------
# Checkpoints: files that pass (or fail) the zip CRC but are not what `save` wrote
# ---------------------------------------------------------------------------------------

CKPT_CONFIG = ref.Config(x_dim=88, d_dim=4, z_dim=2, a_dim=4, h_dim=8, embed_layers=1, mlp_layers=1)


def _arrays(change):
    """A checkpoint's arrays (params, config, training settings, a last.npz's state) after `change`."""
    def write(path):
        params = ref.init_params(CKPT_CONFIG, 0)
        adam = {"step": 3, "m": params, "v": params}
        checkpoint.save(path, params, CKPT_CONFIG, TrainConfig(), {"epoch": 2, "best_valid": -3.0, "adam": adam})
        with np.load(path) as archive:
            arrays = dict(archive)
        change(arrays)
        np.savez(path, **arrays)
    return write


def _file(content):
    return lambda path: path.write_bytes(content(path) if callable(content) else content)


def _saved_then_halved(path):
    _arrays(lambda a: None)(path)
    return path.read_bytes()[: path.stat().st_size // 2]


CHECKPOINTS = [
    pytest.param(None, "does not exist", id="missing"),
    pytest.param(_file(b""), "not an .npz archive", id="empty"),
    pytest.param(_file(b"not a zip file"), "not an .npz archive", id="junk"),
    pytest.param(_file(b"PK\x03\x04 truncated"), "not an .npz archive", id="zip-header-only"),
    pytest.param(_file(_saved_then_halved), "bad.npz", id="truncated"),
    pytest.param(_arrays(lambda a: a.pop("__config__")), "no __config__ entry", id="no-config"),
    pytest.param(_arrays(lambda a: a.update(__config__=np.array("{not json"))), "invalid configuration",
                 id="config-not-json"),
    pytest.param(_arrays(lambda a: a.update(__config__=np.array('{"d_dim": -1}'))), "invalid configuration",
                 id="config-bad-field"),
    pytest.param(_arrays(lambda a: a.update(__train_config__=np.array('{"lr": "fast"}'))), "invalid configuration",
                 id="train-config-bad-field"),
    pytest.param(_arrays(lambda a: a.update({"emit.out.b": np.array([{"code": 1}], dtype=object)})),
                 "not a readable .npz file", id="object-array-not-unpickled"),
    pytest.param(_arrays(lambda a: a.pop("emit.out.b")), "missing ['emit.out.b']", id="param-missing"),
    pytest.param(_arrays(lambda a: a.update({"gru_d.W_hh": np.zeros((3, 3))})), "gru_d.W_hh has shape",
                 id="param-wrong-shape"),
    pytest.param(_arrays(lambda a: a.update({"emit.out.b": a["emit.out.b"].astype(str)})), "not floating-point",
                 id="param-strings"),
    pytest.param(_arrays(lambda a: a.update({"emit.out.b": a["emit.out.b"] * np.nan})), "NaN or inf",
                 id="param-nan"),
    pytest.param(_arrays(lambda a: a.update(__config__=np.array(json.dumps({**CKPT_CONFIG.to_dict(), "d_dim": 5})))),
                 "its Config needs", id="another-config"),
    pytest.param(_arrays(lambda a: a.pop("state/epoch")), "lacks the training state epoch", id="state-no-epoch"),
    pytest.param(_arrays(lambda a: [a.pop(k) for k in list(a) if k.startswith("state/adam/")]),
                 "lacks the training state adam", id="state-no-adam"),
    pytest.param(_arrays(lambda a: a.update({"state/epoch": np.array(-1)})), "epoch must be a whole number >= 0",
                 id="state-epoch-negative"),
    pytest.param(_arrays(lambda a: a.update({"state/epoch": np.array(2.5)})), "epoch must be a whole number >= 0",
                 id="state-epoch-fraction"),
    pytest.param(_arrays(lambda a: a.update({"state/best_valid": np.array("good")})), "best_valid must be a number",
                 id="state-best_valid-string"),
    pytest.param(_arrays(lambda a: a.update({"state/adam/step": np.array(-3)})), "adam step must be a whole number",
                 id="state-adam-step-negative"),
    pytest.param(_arrays(lambda a: a.update({"state/adam/m/gru_d.W_hh": np.zeros((1, 12))})),
                 "Adam's m: gru_d.W_hh has shape (1, 12)", id="state-adam-m-wrong-shape"),
    pytest.param(_arrays(lambda a: a.pop("state/adam/v/emit.out.b")), "Adam's v does not match its Config",
                 id="state-adam-v-missing"),
    pytest.param(_arrays(lambda a: a.update({"state/adam/v/emit.out.b": np.full_like(a["emit.out.b"], np.inf)})),
                 "Adam's v hold NaN or inf", id="state-adam-v-inf"),
]


@pytest.mark.parametrize("write, message", CHECKPOINTS)
def test_checkpoints(write, message, tmp_path):
    path = tmp_path / "bad.npz"
    if write:
        write(path)
    with pytest.raises(DataError, match=re.escape(message)) as error:
        checkpoint.load(path, training_state=True)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------------------------------
# Signals: Ctrl-C ends in one line and status 130 (SIGTERM: 143), at any depth, and loses nothing saved
# ---------------------------------------------------------------------------------------

def _ctrl_c():
    raise KeyboardInterrupt


def _ctrl_c_inside_nested_numba_kernels():
    """What numba's dispatcher raises when Ctrl-C lands in a kernel called from a kernel."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as ctrl_c:
            raise SystemError("CPUDispatcher(<function _gru_backward>) returned a result with an exception set") \
                from ctrl_c
    except SystemError as inner:
        raise SystemError("CPUDispatcher(<function _stochastic_backward>) returned a result with an exception "
                          "set") from inner


def _sigterm():
    """What srnn.ctrl_c's handler raises for SIGTERM."""
    raise ctrl_c.Terminated


@pytest.mark.parametrize("interrupt, status, what", [(_ctrl_c, 130, "interrupted"),
                                                     (_ctrl_c_inside_nested_numba_kernels, 130, "interrupted"),
                                                     (_sigterm, 143, "terminated")],
                         ids=["python", "numba-nested", "sigterm"])
def test_signal_ctrl_c_in_an_epoch(tmp_path, monkeypatch, capsys, interrupt, status, what):
    epochs_run = []

    def interrupted_epoch(engine, tc, split, epoch):
        if epoch == 1:
            interrupt()
        epochs_run.append(epoch)
        return {"train_elbo": -1.0, "kl_weight": 1.0, "lr": 1e-3}

    monkeypatch.setattr(loop, "_train_epoch", interrupted_epoch)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "3", "--run-dir", str(run)]) == status
    err = capsys.readouterr().err
    assert_one_error_line(err, f"epoch 1 is saved in {run / 'last.npz'}", prefix=f"srnn: {what}")
    assert f"continue with: srnn train --run-dir {run} --resume" in err
    assert epochs_run == [0] and checkpoint.load(run / "last.npz", training_state=True).state["epoch"] == 1


def test_signal_ctrl_c_in_the_test_evaluation(tmp_path, monkeypatch, capsys):
    calls = []

    def evaluate_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first call validates epoch 1, the second scores the test split
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    real_evaluate = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", evaluate_then_ctrl_c)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "1", "--run-dir", str(run)]) == 130
    assert_one_error_line(capsys.readouterr().err, "interrupted", prefix="srnn: ")
    assert checkpoint.load(run / "last.npz", training_state=True).state["epoch"] == 1


class _SignalInADestructor:
    """A real SIGINT (or `signum`) that lands in a __del__, where Python prints "Exception ignored"
    and goes on, as it does in a weakref callback (where the fault test found one) or a ctypes callback."""

    def __init__(self, signum=signal.SIGINT):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)
        for _ in range(1000):  # Python runs its handler between bytecodes: here
            pass


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, even when the tests were started with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_signal_ctrl_c_swallowed_where_it_lands_is_raised_at_the_next_check(python_sigint, monkeypatch):
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)
    _SignalInADestructor()
    assert [u.exc_type for u in swallowed] == [KeyboardInterrupt]  # Python's own handler: the Ctrl-C is lost
    with ctrl_c.remembered():
        _SignalInADestructor()
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.check()
    assert len(swallowed) == 1  # not printed: check() raised it
    ctrl_c.check()  # outside remembered() nothing is pending
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and sys.unraisablehook == swallowed.append


@pytest.fixture
def python_sigterm():
    """Python's own SIGTERM disposition (the process ends), whatever the tests were started with."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_signal_sigterm_is_handled_as_ctrl_c_and_swallowed_is_raised_at_the_next_check(python_sigterm, monkeypatch):
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)
    with ctrl_c.remembered():
        assert signal.getsignal(signal.SIGTERM) is ctrl_c._handler  # else the kill below would end the tests
        _SignalInADestructor(signal.SIGTERM)
        with pytest.raises(ctrl_c.Terminated):
            ctrl_c.check()
        with pytest.raises(ctrl_c.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    assert swallowed == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ctrl_c.check()
    assert ctrl_c.ended(ctrl_c.Terminated()) == ("terminated", 143)
    assert ctrl_c.ended(KeyboardInterrupt()) == ("interrupted", 130)
    # a SIGTERM handler the caller installed stays theirs
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with ctrl_c.remembered():
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_signal_ctrl_c_swallowed_in_an_epoch_ends_the_training(tmp_path, monkeypatch, capsys, python_sigint):
    def kl_weight_in_a_ctrl_c(epoch, *args):
        if epoch == 1:
            _SignalInADestructor()
        return real_kl_weight(epoch, *args)

    real_kl_weight = loop.kl_weight
    monkeypatch.setattr(loop, "kl_weight", kl_weight_in_a_ctrl_c)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "3", "--run-dir", str(run)]) == 130
    assert_one_error_line(capsys.readouterr().err, f"epoch 1 is saved in {run / 'last.npz'}", prefix="srnn: interrupted")
    assert checkpoint.load(run / "last.npz", training_state=True).state["epoch"] == 1


@pytest.mark.parametrize("handler", ["python", "the caller's"])
def test_signal_ctrl_c_in_a_kernel_is_handed_over_when_it_returns(python_sigint, handler):
    """ref.fast holds a Ctrl-C while numba runs or loads a kernel (llvmlite's callbacks would
    swallow it), then gives it to the handler in place."""
    calls = []
    if handler == "the caller's":
        signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))

    def kernel(x):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
        calls.append("returned")
        return x + 1

    if handler == "python":
        with pytest.raises(KeyboardInterrupt):
            fast._call(kernel, 1)
        assert calls == ["returned"]
    else:
        assert fast._call(kernel, 1) == 2 and calls == ["returned", signal.SIGINT]


def test_signal_ctrl_c_during_the_imports():
    """The `srnn` entry point (srnn.__main__) with Ctrl-C arriving while numba loads."""
    program = ("import builtins, sys\n"
               "real = builtins.__import__\n"
               "def ctrl_c_at_numba(name, *args, **kwargs):\n"
               "    if name == 'numba':\n"
               "        raise KeyboardInterrupt\n"
               "    return real(name, *args, **kwargs)\n"
               "builtins.__import__ = ctrl_c_at_numba\n"
               "from srnn.__main__ import main\n"
               "sys.exit(main())\n")
    result = subprocess.run([sys.executable, "-c", program, "train"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 130
    assert_one_error_line(result.stderr, "interrupted", prefix="srnn: ")


# ---------------------------------------------------------------------------------------
# Concurrent runs: one training per run directory
# ---------------------------------------------------------------------------------------

HOLD_THE_LOCK = ("import sys, time\n"
                 "from srnn.rundir import exclusive\n"
                 "with exclusive(sys.argv[1]):\n"
                 "    print('holding', flush=True)\n"
                 "    time.sleep(600)\n")


def _lock_holder(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline() == "holding\n"
    return holder


@pytest.mark.parametrize("resume", [False, True], ids=["new", "resume"])
def test_concurrent_training_on_a_held_run_directory_refuses(run, tmp_path, capsys, resume):
    target = run if resume else tmp_path / "fresh"
    holder = _lock_holder(target)
    try:
        before = snapshot(target)
        argv = ["--resume", "--epochs", "3"] if resume else [*TINY_FLAGS, *FAST_FLAGS, "--epochs", "1"]
        assert cli.main(["train", "--run-dir", str(target), *argv]) == 2
        assert_one_error_line(capsys.readouterr().err, "is in use by another training")
        assert snapshot(target) == before  # nothing written, nothing removed
    finally:
        holder.kill()
        holder.wait()


def test_concurrent_temporaries_of_a_killed_write_are_removed_on_the_next_start(run, tmp_path, capsys):
    """kill -9 during an atomic write leaves its temporary file; the next training (holding the lock) removes it."""
    target = tmp_path / "run"
    shutil.copytree(run, target)
    (target / ".last.npz.12345.0123abcd.tmp").write_bytes(b"")
    assert cli.main(["train", "--run-dir", str(target), "--resume", "--epochs", "3"]) == 0
    assert not list(target.glob(".*.tmp"))


def test_concurrent_lock_is_released_when_its_holder_is_killed(tmp_path):
    holder = _lock_holder(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert cli.main(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "1", "--run-dir", str(tmp_path / "run")]) == 0


def test_concurrent_trainings_started_together_one_trains_the_other_refuses(tmp_path):
    """The two-terminal mistake: the same command twice on a fresh run directory."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "srnn", "train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "3", "--run-dir", str(run)]
    both = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in both]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    (_, _, refused_err), = [r for r in results if r[0] == 2]
    assert_one_error_line(refused_err, "is in use by another training")
    (_, trained_out, _), = [r for r in results if r[0] == 0]
    # the directory holds one run: its config, its three epochs, and the test metrics it printed
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["epochs"] == 3 and [r["epoch"] for r in loop.read_history(run)] == [1, 2, 3]
    test_elbo = json.loads((run / "test_metrics.json").read_text())["elbo"]["sequence_averaged"]
    assert f"{test_elbo:.4f}" in trained_out
