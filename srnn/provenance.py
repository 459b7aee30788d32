"""Where a number came from: the commit and the machine, recorded in every result file
(srnn.reproduce) and every benchmark report (benchmarks/)."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parents[1]


def commit():
    """The repository's short commit hash, with "+dirty" when tracked files differ from it.
    Changes under results/ do not count: they are what runs write, and a queue of runs in one
    pinned worktree would otherwise mark every run after the first one dirty. A copy without git
    (a GPU machine's, results/run_gpu.sh) has the commit its sender recorded in $SRNN_COMMIT."""
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    try:
        head = git("rev-parse", "--short", "HEAD")
    except FileNotFoundError:  # no git installed
        head = None
    if head is None or head.returncode:
        return os.environ.get("SRNN_COMMIT")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results").stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def machine(device="cpu"):
    """The platform, CPU count, Python and NumPy versions, the BLAS thread setting, each loaded
    BLAS with the kernel it picked for this CPU (float32 results differ in their last bits from one
    kernel to another), and torch's version and device when torch is loaded in this process."""
    info = {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "threads": os.environ.get("OMP_NUM_THREADS"),
            "blas": [f"{lib['internal_api']} {lib['version']} ({lib.get('architecture') or 'kernel unknown'})"
                     for lib in threadpool_info() if lib["user_api"] == "blas"]}
    torch = sys.modules.get("torch")  # not imported here: a ref-only run need not load it
    if torch is not None:
        info.update(torch=torch.__version__, device=device,
                    device_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu")
    return info


def command_line():
    """The command that is running, as typed: the script's name and its arguments."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
