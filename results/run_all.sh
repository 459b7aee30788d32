#!/usr/bin/env bash
# Every run of the results table, one after the other (each resumes if it was interrupted),
# then the tables. On a GPU add: --impl torch --device cuda. Times per epoch: results/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in $(python -m srnn.cli reproduce --list | awk '{print $1}'); do
    case "$name" in
        vrnn-*) python -m srnn.cli reproduce "$name" --impl torch "$@" ;;  # no numba kernel: torch_impl is faster
        *) python -m srnn.cli reproduce "$name" "$@" ;;
    esac
done
python results/make_table.py
