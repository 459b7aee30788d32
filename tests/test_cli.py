"""The `srnn` command run as a user runs it (subprocesses, tiny sizes), its one-line errors,
and the piano-roll outputs of srnn.music."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from ref.errors import InputError
from srnn import checkpoint, cli, loop, music, rundir

ROOT = Path(__file__).parents[1]
DATA_DIR = Path(os.environ.get("SRNN_DATA_DIR") or ROOT / ".." / "shared" / "data")
TINY_FLAGS = ["--preset", "small", "--d-dim", "4", "--z-dim", "2", "--a-dim", "4", "--h-dim", "8",
              "--embed-layers", "1", "--mlp-layers", "1"]
# one batch per epoch of the synthetic data
FAST_FLAGS = ["--batch-size", "256", "--iw-samples", "2", "--kl-anneal-epochs", "2"]


def srnn(*args):
    """Run `python -m srnn.cli ARGS` from the repository root, as the installed `srnn` would."""
    return subprocess.run([sys.executable, "-m", "srnn.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("srnn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


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


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["sample"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: srnn" in capsys.readouterr().out


# ------------------------------------------------------------------------ errors

def test_bad_flag_in_a_subprocess_is_one_line_without_traceback():
    assert_one_line_error(srnn("train", "--epochs", "zero"), "--epochs", "invalid int value")
    assert_one_line_error(srnn("evaluate", "--checkpoint", "missing.npz"), "missing.npz", "does not exist")


@pytest.mark.parametrize("argv, fragment", [
    ([], "required"),
    (["fly"], "invalid choice"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--dataset", "mnist"], "invalid choice"),
    (["train", "--epochs", "0"], "epochs must be an integer >= 1"),
    (["train", "--d-dim", "-3"], "d_dim"),
    (["train", "--lr", "-1"], "lr must be a positive number"),
    (["train", "--impl", "numpy"], "invalid choice"),
    (["train", "--device", "cuda"], "--device and --bf16 are options of --impl torch"),
    (["train", "--impl", "torch", "--device", "tpu"], "unknown device 'tpu'"),
    (["evaluate"], "one of the arguments --run-dir --checkpoint is required"),
    (["evaluate", "--run-dir", "a", "--checkpoint", "b"], "not allowed with"),
    (["sample", "--checkpoint", "nope.npz"], "does not exist"),
])
def test_bad_command_lines_end_in_one_error_line(argv, fragment, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("srnn: error: ") and fragment in err, err


def test_bad_files_end_in_one_error_line(tmp_path, run_dir, capsys):
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "junk.npz")]) == 2
    assert cli.main(["train", "--run-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert cli.main(["train", *TINY_FLAGS, "--run-dir", str(run_dir[0])]) == 2  # would overwrite a run
    assert cli.main(["sample", "--run-dir", str(run_dir[0]), "--num", "0", "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("srnn: error: ") for line in lines), lines
    assert "junk.npz" in lines[0] and "run directory" in lines[1] and "--resume" in lines[2]


@pytest.mark.skipif(not (DATA_DIR / "srnn2016").is_dir(), reason=f"no data at {DATA_DIR}")
def test_stream_layout_with_another_batch_size_is_one_error_line(tmp_path, capsys):
    argv = ["train", "--dataset", "jsb", "--variant", "srnn2016", "--batch-size", "8",
            "--data-dir", str(DATA_DIR), "--run-dir", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use batch size 16, not 8" in err, err
    assert not (tmp_path / "run").exists()


def _ctrl_c():
    raise KeyboardInterrupt


def _ctrl_c_inside_a_numba_kernel():
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as ctrl_c:  # what numba's dispatcher raises when Ctrl-C lands in a kernel
        raise SystemError("CPUDispatcher(<function _stochastic_backward>) returned a result with an "
                          "exception set") from ctrl_c


@pytest.mark.parametrize("ctrl_c", [_ctrl_c, _ctrl_c_inside_a_numba_kernel])
def test_ctrl_c_exits_130_with_one_line_that_says_how_to_resume(tmp_path, monkeypatch, capsys, ctrl_c):
    epochs_run = []

    def interrupted_epoch(engine, tc, split, epoch):
        if epoch == 1:
            ctrl_c()
        epochs_run.append(epoch)
        return {"train_elbo": -1.0, "kl_weight": 1.0, "lr": 1e-3}

    monkeypatch.setattr(loop, "_train_epoch", interrupted_epoch)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY_FLAGS, *FAST_FLAGS, "--epochs", "3", "--run-dir", str(run)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch 1 is saved" in err[0] and f"--run-dir {run} --resume" in err[0], err
    assert epochs_run == [0] and checkpoint.load(run / "last.npz").state["epoch"] == 1


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


@pytest.mark.parametrize("roll", [np.zeros((5, 87)), np.zeros(88), np.full((3, 88), 0.5)])
def test_music_rejects_what_is_not_a_piano_roll(roll, tmp_path):
    with pytest.raises(InputError, match="piano roll"):
        music.write_midi(roll, tmp_path / "x.mid")
    with pytest.raises(InputError, match="piano roll"):
        music.piano_roll_png(roll, tmp_path / "x.png")
