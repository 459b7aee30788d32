"""results/run_all.sh: runs what is pending, skips a run another process holds or has finished
meanwhile, reports failures and goes on. `python` is replaced by a shim that plays srnn's part."""
import fcntl
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

SHIM = textwrap.dedent("""\
    #!/usr/bin/env bash
    # plays `python -m srnn.cli reproduce` and `python results/make_table.py` for run_all.sh
    echo "$*" >> "$LOG"
    case "$*" in
        *--list\\ --pending*) sed 's/$/ jsb srnn2016 .../' "$PENDING" ;;
        *make_table.py*) ;;
        *"reproduce bad"*) exit 1 ;;
        *"reproduce first"*) sed -i '/^first$/d; /^finished-meanwhile$/d' "$PENDING" ;;  # another queue ends one
        *reproduce\\ *) name=$(echo "$*" | awk '{print $4}'); sed -i "/^$name$/d" "$PENDING" ;;
    esac
    """)


@pytest.fixture
def shimmed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(SHIM)
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log"),
           "PENDING": str(tmp_path / "pending")}
    (tmp_path / "pending").write_text("first\nfinished-meanwhile\nheld\nbad\nvrnn-last\n")
    return tmp_path, env


def test_run_all_runs_the_pending_runs_and_reports_the_failed_one(shimmed):
    tmp, env = shimmed
    runs = tmp / "runs"
    (runs / "held").mkdir(parents=True)
    fd = os.open(runs / "held", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as srnn.rundir.exclusive holds a run in training
    try:
        out = subprocess.run(["bash", str(ROOT / "results" / "run_all.sh"), "--runs-dir", str(runs),
                              f"--results-dir={tmp / 'res'}"], env=env, capture_output=True, text=True)
    finally:
        os.close(fd)
    log = (tmp / "log").read_text().splitlines()
    reproduced = [line.split()[3] for line in log if "reproduce" in line and "--list" not in line]
    assert reproduced == ["first", "bad", "vrnn-last"]  # neither the held run nor the one finished meanwhile
    assert all(f"--results-dir {tmp / 'res'}" in line for line in log if "--list --pending" in line)
    assert "--impl torch" in next(line for line in log if "reproduce vrnn-last" in line)
    assert log[-1].endswith("results/make_table.py")  # the tables, after the failure too
    assert "held is being trained by another process: skipped" in out.stdout
    assert out.returncode == 1 and "failed: bad" in out.stderr
