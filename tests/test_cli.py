"""The `srnn` command run as a user runs it (subprocesses, tiny sizes) and the piano-roll outputs
of srnn.music. Its errors: the census, tests/test_bad_inputs.py."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

import ref
from srnn import cli, music, rundir
from srnn.config import TrainConfig

ROOT = Path(__file__).parents[1]
TINY_FLAGS = ["--preset", "small", "--d-dim", "4", "--z-dim", "2", "--a-dim", "4", "--h-dim", "8",
              "--embed-layers", "1", "--mlp-layers", "1"]
# one batch per epoch of the synthetic data
FAST_FLAGS = ["--batch-size", "256", "--iw-samples", "2", "--kl-anneal-epochs", "2"]


def srnn(*args):
    """Run `python -m srnn.cli ARGS` from the repository root, as the installed `srnn` would."""
    return subprocess.run([sys.executable, "-m", "srnn.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    result = srnn("train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "1", "--run-dir", run)
    assert result.returncode == 0, result.stderr
    return run, result


# ---------------------------------------------------------------------- commands

def test_train_writes_the_run_and_prints_test_elbo_beside_the_teacher(run_dir):
    run, result = run_dir
    assert {"config.json", "metrics.jsonl", "best.npz", "last.npz", "learning_curve.png",
            "test_metrics.json"} <= {p.name for p in run.iterdir()}
    assert "epoch 1/1" in result.stdout
    assert "ELBO" in result.stdout and "teacher log-lik." in result.stdout


def test_train_resume_continues_the_run(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir[0], run)
    result = srnn("train", "--run-dir", run, "--resume", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert [r["epoch"] for r in rundir.read_history(run)] == [1, 2]


@pytest.mark.parametrize("source", ["run-dir", "checkpoint"])
def test_evaluate_prints_both_metrics(run_dir, source):
    run, _ = run_dir
    where = ["--run-dir", run] if source == "run-dir" else ["--checkpoint", run / "last.npz", "--split", "valid"]
    result = srnn("evaluate", *where, "--iw-samples", "3")
    assert result.returncode == 0, result.stderr
    assert "sequence-averaged" in result.stdout and "frame-weighted" in result.stdout
    assert "IW bound, K=3" in result.stdout and "teacher" in result.stdout


def test_sample_writes_a_png_and_a_midi_file_per_sample(run_dir, tmp_path):
    result = srnn("sample", "--run-dir", run_dir[0], "--num", "2", "--length", "12", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["sample_000.mid", "sample_000.png", "sample_001.mid", "sample_001.png"]
    assert mido.MidiFile(tmp_path / "out" / "sample_000.mid").length == pytest.approx(12 * 0.25, abs=0.25)


# ------------------------------------------------------- the newcomer's first run

def test_the_kernels_say_once_that_they_load_before_the_first_epoch(run_dir):
    out = run_dir[1].stdout
    assert out.count("srnn: loading the numba kernels") == 1
    assert out.index("srnn: loading the numba kernels") < out.index("epoch 1/1")


def test_the_same_train_command_twice_trains_in_a_numbered_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "1"]
    assert cli.main(argv) == 0 and cli.main(argv) == 0
    assert (tmp_path / "runs" / "synthetic-small" / "last.npz").exists()
    assert (tmp_path / "runs" / "synthetic-small-2" / "last.npz").exists()
    assert cli.main(["train", "--resume", "--epochs", "2", "--preset", "small"]) == 0  # the newest of them
    assert [r["epoch"] for r in rundir.read_history(tmp_path / "runs" / "synthetic-small-2")] == [1, 2]


def test_a_run_records_its_data_and_evaluate_and_resume_find_it(run_dir, tmp_path, monkeypatch):
    saved = json.loads((run_dir[0] / "config.json").read_text())
    assert saved["train"]["variant"] == "teacher" and saved["data_dir"] is None  # synthetic: no files
    rundir.write_run_config(tmp_path, ref.Config(), TrainConfig(dataset="jsb"), {}, data_dir=str(tmp_path))
    monkeypatch.delenv("SRNN_DATA_DIR", raising=False)
    assert cli._data_dir(None, tmp_path) == str(tmp_path)                      # recorded
    assert cli._data_dir("given", tmp_path) == "given"                          # the flag first
    monkeypatch.setenv("SRNN_DATA_DIR", "env")
    assert cli._data_dir(None, tmp_path) is None                                # then the environment


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["sample"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: srnn" in capsys.readouterr().out


# ------------------------------------------------------------------------- music

def _midi_to_roll(path, steps, seconds_per_step):
    """Rebuild a piano roll from a MIDI file written by write_midi."""
    roll, on, now = np.zeros((steps, 88)), {}, 0.0
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            on[message.note] = now
        elif message.type in ("note_on", "note_off"):
            start = round(on.pop(message.note) / seconds_per_step)
            roll[start:round(now / seconds_per_step), message.note - 21] = 1
    assert not on, "every note is closed"
    return roll


def test_midi_round_trip_recovers_the_piano_roll(tmp_path):
    rng = np.random.default_rng(0)
    roll = (rng.random((30, 88)) < 0.1).astype(float)
    roll[:, 0] = roll[:, 87] = 1  # lowest and highest key, held throughout
    music.write_midi(roll, tmp_path / "a.mid", seconds_per_step=0.125)
    np.testing.assert_array_equal(_midi_to_roll(tmp_path / "a.mid", 30, 0.125), roll)
    notes = {m.note for m in mido.MidiFile(tmp_path / "a.mid") if m.type == "note_on"}
    assert min(notes) == 21 and max(notes) == 108


def test_piano_roll_png_is_written(tmp_path):
    music.piano_roll_png(np.eye(88)[:40], tmp_path / "roll.png", title="diagonal")
    assert (tmp_path / "roll.png").read_bytes()[:4] == b"\x89PNG"
