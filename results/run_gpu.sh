#!/usr/bin/env bash
# A GPU session in one command. The GPU machine is lent for minutes and starts bare: no git, no
# ../shared data, not every dependency. So the work is split in three, and only `session` runs there.
#
#   results/run_gpu.sh prepare
#       here: the wheels the GPU machine lacks and a copy of $SRNN_DATA_DIR into .gpu/ (ignored),
#       the commit it will record (the tree must be clean), and the command to give the machine.
#   results/run_gpu.sh session OUT SECONDS RUN...
#       there: the CUDA tests, the epoch benchmark on the GPU, then every RUN side by side
#       (`srnn reproduce RUN --impl torch --device cuda`, one process each) until SECONDS have passed
#       since the start; the result files of the runs that finished, every log and the benchmark
#       are packed into OUT/gpu_session.tar.gz. A run cut off leaves nothing but its log.
#   results/run_gpu.sh land TARBALL
#       here: its result files into results/ (the runs' samples and learning curves beside them),
#       its benchmark into benchmarks/results/, the logs into .gpu/landed/, and the tables.
#
# A run trained on the GPU is another run than the CPU's (float32 sums in another order), so compare
# one run both have made: its test ELBO should differ by about the seed's spread, not by more.
set -uo pipefail
cd "$(dirname "$0")/.."
carry=.gpu
py=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu: the same session without a GPU, to try this script

prepare() {
    [ -n "${SRNN_DATA_DIR:-}" ] || { echo "run_gpu: set SRNN_DATA_DIR to the data directory" >&2; exit 2; }
    [ -z "$(git status --porcelain --untracked-files=no)" ] || {
        echo "run_gpu: commit first: the runs record the commit they ran" >&2; exit 2; }
    local exclude
    exclude="$(git rev-parse --git-common-dir)/info/exclude"
    grep -qx "/$carry/" "$exclude" 2>/dev/null || echo "/$carry/" >> "$exclude"
    rm -rf "$carry/whl" "$carry/data" && mkdir -p "$carry/whl"
    cp -r "$SRNN_DATA_DIR" "$carry/data"
    # not in the GPU machine's image (its python is 3.12; these are pure Python)
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d "$carry/whl" autograd==1.9.1 pooch==1.9.0 mido==1.3.3 platformdirs \
        || exit 1
    git rev-parse --short HEAD > "$carry/COMMIT"
    echo "run on the GPU machine, with carry [\"$carry\"] (pending runs: srnn reproduce --list --pending):"
    echo "  $py -m pip install -q --no-index --no-deps --target /tmp/site $carry/whl/*.whl &&" \
         "PYTHONPATH=/tmp/site:\$PWD bash results/run_gpu.sh session \$OUT 540 RUN..."
}

session() {
    local out=$1 budget=$2; shift 2
    local start work
    start=$(date +%s) work=$(mktemp -d)
    mkdir -p "$work/results" "$work/logs" "$work/bench"
    export SRNN_DATA_DIR=$PWD/$carry/data SRNN_COMMIT=$(cat "$carry/COMMIT") PYTHONUNBUFFERED=1
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1  # many processes share the CPUs
    nvidia-smi > "$work/logs/nvidia-smi.txt" 2>&1
    timeout 150 $py -m pytest -o addopts=-ra -q -k cuda tests/test_torch.py tests/test_torch_train.py \
        > "$work/logs/cuda_tests.log" 2>&1
    echo "run_gpu: CUDA tests exit $? ($(tail -n 1 "$work/logs/cuda_tests.log"))"
    timeout 150 $py benchmarks/bench_epoch.py --device "$device" --dataset jsb --variants srnn2016 --impls torch \
        --dtypes float32 --models srnn vrnn rnn --out "$work/bench/epoch_jsb_${device}_srnn_vrnn_rnn.json" \
        > "$work/logs/bench_epoch.log" 2>&1
    echo "run_gpu: benchmark exit $?"
    local left=$(( budget - ($(date +%s) - start) ))
    [ "$left" -ge 10 ] || { echo "run_gpu: no time left for the runs" >&2; set --; }
    for name in "$@"; do
        timeout "$left" $py -m srnn.cli reproduce "$name" --impl torch --device "$device" \
            --runs-dir "$work/runs" --results-dir "$work/results" > "$work/logs/$name.log" 2>&1 &
    done
    wait
    for name in "$@"; do
        [ -f "$work/results/$name.json" ] && echo "run_gpu: $name finished" || echo "run_gpu: $name cut off"
    done
    tar czf "$out/gpu_session.tar.gz" -C "$work" results logs bench
}

land() {
    local tarball=$1 tmp
    tmp=$(mktemp -d)
    tar xzf "$tarball" -C "$tmp" || exit 1
    cp -r "$tmp"/results/. results/
    cp "$tmp"/bench/*.json benchmarks/results/ 2>/dev/null
    mkdir -p "$carry/landed" && cp -r "$tmp"/logs/. "$carry/landed/"
    ls "$tmp"/results/*.json 2>/dev/null
    python results/make_table.py
}

case "${1:-}" in
    prepare) prepare ;;
    session) [ $# -ge 4 ] || { echo "usage: results/run_gpu.sh session OUT SECONDS RUN..." >&2; exit 2; }; shift; session "$@" ;;
    land) [ $# -eq 2 ] || { echo "usage: results/run_gpu.sh land TARBALL" >&2; exit 2; }; land "$2" ;;
    *) echo "usage: results/run_gpu.sh prepare | session OUT SECONDS RUN... | land TARBALL" >&2; exit 2 ;;
esac
