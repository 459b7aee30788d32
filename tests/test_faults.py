"""Faults: a training killed at random moments, by SIGKILL (nothing of the process runs after it),
by SIGINT (Ctrl-C) and by SIGTERM (`kill`, a scheduler's stop), twice each and resumed after
each, ends exactly where an uninterrupted run ends: the same parameters, Adam state, best
checkpoint, epoch records and test metrics, bit for bit, with no temporary file left behind."""
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srnn import checkpoint, rundir

ROOT = Path(__file__).parents[1]
SEED = 20261202  # of the order of the signals and the moments they are sent
EPOCHS = 40      # about 0.3 s each: the six interruptions cannot use them all up
TRAIN = [sys.executable, "-m", "srnn", "train", "--preset", "small", "--d-dim", "4", "--z-dim", "2", "--a-dim", "4",
         "--h-dim", "8", "--embed-layers", "1", "--mlp-layers", "1", "--batch-size", "128", "--iw-samples", "2",
         "--kl-anneal-epochs", "4", "--lr-decay-start", "10", "--valid-every", "3", "--epochs", str(EPOCHS)]


def start(run_dir):
    """`srnn train` on run_dir, resuming when the run has a completed epoch to resume from."""
    resume = ["--resume"] if (run_dir / "last.npz").exists() else []
    return subprocess.Popen([*TRAIN, "--run-dir", str(run_dir), *resume], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=_ctrl_c_as_in_a_terminal)


def _ctrl_c_as_in_a_terminal():
    """A process started in the background of a shell (as CI may start the tests) ignores SIGINT,
    and so would Python in it: give the training the default, which Python turns into Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_training(process):
    """Read stdout up to the line that says the epochs begin."""
    for line in process.stdout:
        if line.startswith("srnn: training"):
            return
    raise AssertionError(f"the training never started: {process.stderr.read()}")


def arrays(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def epoch_records(run_dir):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in rundir.read_history(run_dir)]


@pytest.mark.slow
def test_killed_and_interrupted_training_resumes_to_the_uninterrupted_run_bitwise(tmp_path):
    reference, faulty = tmp_path / "reference", tmp_path / "faulty"
    uninterrupted = start(reference)  # runs beside the faulty one
    rng = random.Random(SEED)
    signals = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM] * 2
    rng.shuffle(signals)
    for sig in signals:
        process = start(faulty)
        wait_for_training(process)
        try:
            process.wait(timeout=rng.uniform(0.0, 2.5))  # ended already: the returncode check below fails
        except subprocess.TimeoutExpired:
            process.send_signal(sig)
        _, err = process.communicate(timeout=120)
        ended = {signal.SIGKILL: (-signal.SIGKILL, None), signal.SIGINT: (130, "srnn: interrupted"),
                 signal.SIGTERM: (143, "srnn: terminated")}[sig]
        assert process.returncode == ended[0], (sig, err)
        if ended[1]:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(ended[1]), err
        if (faulty / "last.npz").exists():  # what an interruption leaves always loads
            checkpoint.load(faulty / "last.npz", training_state=True)
    for process in (start(faulty), uninterrupted):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    for name in ("best.npz", "last.npz"):
        expected, got = arrays(reference / name), arrays(faulty / name)
        assert expected.keys() == got.keys()
        for key in expected:
            assert expected[key].dtype == got[key].dtype and np.array_equal(expected[key], got[key]), (name, key)
    assert epoch_records(faulty) == epoch_records(reference) and len(epoch_records(faulty)) == EPOCHS
    assert json.loads((faulty / "test_metrics.json").read_text()) == \
        json.loads((reference / "test_metrics.json").read_text())
    assert json.loads((faulty / "config.json").read_text()) == json.loads((reference / "config.json").read_text())
    assert not list(faulty.glob(".*.tmp"))
