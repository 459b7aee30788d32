"""results/run_gpu.sh: a GPU session runs its runs side by side until its time is up, packs what
finished into one file, and `land` puts it where the tables read it. A shim plays `python`."""
import json
import os
import shutil
import subprocess
import tarfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[1]

SHIM = textwrap.dedent("""\
    #!/usr/bin/env bash
    # plays pytest, the benchmark, `srnn reproduce` and make_table.py for run_gpu.sh
    all="$*"
    echo "$all" >> "$LOG"
    case "$all" in
        *"-m pytest"*) echo "3 passed" ;;
        *bench_epoch.py*) echo '{"benchmark": "epoch"}' > "${all##*--out }" ;;
        *"reproduce slow"*) sleep 60 ;;
        *reproduce*) name=$(echo "$*" | awk '{print $4}'); dir=${all##*--results-dir }
                     echo "{\\"name\\": \\"$name\\", \\"commit\\": \\"$SRNN_COMMIT\\"}" > "$dir/$name.json"
                     mkdir -p "$dir/${name}_samples" && echo mid > "$dir/${name}_samples/sample_000.mid" ;;
        *make_table.py*) ;;
    esac
    """)


def test_a_session_packs_the_runs_that_finished_and_land_puts_them_in_results(tmp_path):
    repo = tmp_path / "repo"  # a copy without git, as the GPU machine has it
    (repo / "results").mkdir(parents=True)
    (repo / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "run_gpu.sh", repo / "results")
    (repo / ".gpu").mkdir()
    (repo / ".gpu" / "COMMIT").write_text("abc1234\n")
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(SHIM)
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "LOG": str(tmp_path / "log"),
           "PYTHON": "python", "DEVICE": "cpu"}
    out = tmp_path / "out"
    out.mkdir()
    session = subprocess.run(["bash", str(repo / "results" / "run_gpu.sh"), "session", str(out), "12",
                              "fast-a", "slow", "fast-b"], env=env, capture_output=True, text=True, timeout=50)
    assert session.returncode == 0, session.stderr
    for line in ("fast-a finished", "slow cut off", "fast-b finished", "CUDA tests exit 0 (3 passed)"):
        assert f"run_gpu: {line}" in session.stdout
    log = (tmp_path / "log").read_text()
    assert log.count("--impl torch --device cpu") == 3 and "bench_epoch.py --device cpu" in log

    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"results/fast-a.json", "results/fast-b.json", "logs/slow.log", "logs/cuda_tests.log",
            "bench/epoch_jsb_cpu_srnn_vrnn_rnn.json"} <= names and "results/slow.json" not in names

    land = subprocess.run(["bash", str(repo / "results" / "run_gpu.sh"), "land", str(out / "gpu_session.tar.gz")],
                          env=env, capture_output=True, text=True, timeout=50)
    assert land.returncode == 0, land.stderr
    landed = json.loads((repo / "results" / "fast-a.json").read_text())
    assert landed == {"name": "fast-a", "commit": "abc1234"}  # the commit the sender recorded
    assert (repo / "results" / "fast-b_samples" / "sample_000.mid").exists()
    assert (repo / "benchmarks" / "results" / "epoch_jsb_cpu_srnn_vrnn_rnn.json").exists()
    assert (repo / ".gpu" / "landed" / "slow.log").exists() and log.count("make_table.py") == 0
    assert (tmp_path / "log").read_text().splitlines()[-1].endswith("results/make_table.py")
