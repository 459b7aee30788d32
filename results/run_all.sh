#!/usr/bin/env bash
# The runs of the results table whose result file is missing or partial, one after the other (each
# resumes from its last checkpoint if it was cut off), then the tables. Two of it started side by
# side share the list: a run whose run directory the other holds is skipped, a run the other has
# finished meanwhile is not started again. A run that fails is reported and the queue goes on.
# On a GPU add: --impl torch --device cuda. Times per epoch: results/README.md.
set -uo pipefail
cd "$(dirname "$0")/.."
runs_dir=runs/paper results_dir=results  # as `srnn reproduce` has them, unless given below
args=("$@")
for i in "${!args[@]}"; do
    case "${args[i]}" in
        --runs-dir) runs_dir=${args[i+1]} ;;
        --runs-dir=*) runs_dir=${args[i]#*=} ;;
        --results-dir) results_dir=${args[i+1]} ;;
        --results-dir=*) results_dir=${args[i]#*=} ;;
    esac
done
pending() { python -m srnn.cli reproduce --list --pending --results-dir "$results_dir" | awk '{print $1}'; }
failed=()
for name in $(pending); do
    pending | grep -qx "$name" || continue  # finished meanwhile by another queue
    if [ -d "$runs_dir/$name" ] && ! flock -n "$runs_dir/$name" true; then
        echo "run_all: $name is being trained by another process: skipped"
        continue
    fi
    case "$name" in
        vrnn-*) impl=(--impl torch) ;;  # no numba kernel: torch_impl is faster
        *) impl=() ;;
    esac
    python -m srnn.cli reproduce "$name" "${impl[@]}" "$@" || failed+=("$name")
done
python results/make_table.py
[ ${#failed[@]} -eq 0 ] || { echo "run_all: failed: ${failed[*]}" >&2; exit 1; }
