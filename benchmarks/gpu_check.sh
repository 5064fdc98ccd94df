#!/usr/bin/env bash
# One prepared run on the device tool's GPU machine (issue 13): every `gpu`-marked test, the GPU throughput
# benchmark, the reference search with its summary and cost (again with the packing table's favoured
# workers per GPU where that is not 1) and the verdict of benchmarks/gpu_verdict.py, in under 6 minutes,
# each stage under its own timeout so one stuck stage cannot eat the others' time. Run from the project
# root after ../shared/tools/device-prep.sh, with carry [".whl", ".data"]:
#     bash benchmarks/gpu_check.sh
# Outputs (logs, the benchmark's JSON, the search's run directory) go to $OUT when set, else gpu-check/.
# Exit status: 0 when every stage passed, else the number of stages that failed. PYTHON overrides the
# interpreter (default python3: the device image's, which has torch with CUDA). A dry run of the script on a
# machine without a GPU: DEVICE=cpu QUICK=1 (the benchmark's smoke mode; every GPU bar then says NOT MEASURED).
# MPS=1 adds the packing table under NVIDIA MPS (about a minute more).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
python=${PYTHON:-python3}
mkdir -p "$out"
# As device-prep.sh says device commands start: the packages the GPU image lacks, from the carried wheels.
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
data_dir=.data
[ -d "$data_dir/MNIST" ] || data_dir=../shared/data
failed=0
started=$SECONDS

# stage NAME SECONDS COMMAND...: runs COMMAND under `timeout`, its output into $out/NAME.log and the tail here.
stage() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local begun=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local status=$?
    tail -n 40 "$out/$name.log"
    echo "== $name: exit $status after $((SECONDS - begun))s"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
}

"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")' | tee "$out/device.txt"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >>"$out/device.txt" 2>&1 || true

# Only the files that hold gpu tests: collecting the others would need every package of the CPU machines.
mapfile -t gpu_files < <(grep -rl --include='test_*.py' 'mark.gpu' tests | sort)
stage gpu-tests 150 "$python" -m pytest -m gpu "${gpu_files[@]}" -q -p no:cacheprovider \
    --junitxml="$out/gpu-tests.xml"
stage benchmark 165 "$python" benchmarks/gpu_throughput.py --data-dir "$data_dir" --train-images 10000 \
    --out "$out/gpu-throughput.json" --device "${DEVICE:-cuda}" ${QUICK:+--quick}
run_dir="$out/reference-search"
reference=(--dataset mnist --data-dir "$data_dir" --space lenet-small --optimizer hyperband --max-budget 9
    --n-iterations 3 --seed 0)
rm -rf "$run_dir" "$out"/reference-search-k*
stage search 75 "$python" -m launch.local "${reference[@]}" --run-dir "$run_dir"
stage summary 15 "$python" -m analysis summary "$run_dir"
stage cost 15 "$python" -m analysis cost "$run_dir"
# The same search with the workers per GPU that the packing table favours, where that is not the default 1:
# the figures to choose the default K by.
best_k=$("$python" benchmarks/gpu_verdict.py "$out" --best-k 2>/dev/null)
if [[ "$best_k" =~ ^[0-9]+$ ]] && [ "$best_k" -gt 1 ]; then
    stage "search-k$best_k" 60 "$python" -m launch.local "${reference[@]}" --workers-per-gpu "$best_k" \
        --run-dir "$run_dir-k$best_k"
fi
# MPS=1: the packing table again with NVIDIA's Multi-Process Service running (docs/gpu.md), then stopped.
if [ "${MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps CUDA_MPS_LOG_DIRECTORY=/tmp/nvidia-mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d
    stage packing-mps 60 "$python" benchmarks/gpu_throughput.py --data-dir "$data_dir" --train-images 10000 \
        --tables packing --out "$out/gpu-throughput-mps.json" --device "${DEVICE:-cuda}"
    echo quit | nvidia-cuda-mps-control
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi
# Every bar of the issue against what this run measured: PASS, FAIL or NOT MEASURED.
stage verdict 15 "$python" benchmarks/gpu_verdict.py "$out"

echo "== gpu_check: $failed stage(s) failed, $((SECONDS - started))s in all; outputs in $out"
exit "$failed"
