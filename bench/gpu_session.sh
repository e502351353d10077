#!/usr/bin/env bash
# Every check this project runs on a CUDA GPU, in one go (a lent GPU machine's time is short):
#
#   bash bench/gpu_session.sh [OUTDIR]          # logs to OUTDIR (default $OUT, else /tmp/gpu_session)
#
# 1. the CUDA tests (tests/callbacks/test_gpu.py, test_predict.py, test_vision.py);
# 2. bench/gpu.py: images per second of fit_one_cycle against a hand-written loop (bf16, without the
#    DivergenceGuard, channels_last, torch.compile), then DDP and FSDP in a one-process group;
# 3. bench/divergence_guard.py --device cuda: what the guard's per-step synchronisation costs;
# 4. the whole test suite with the GPU visible (learners then train on it by default), in the time left of
#    TOTAL_S seconds (default 600) or SUITE_S if set (0: no suite); on SUITE_WORKERS processes (8) when
#    pytest-xdist is there.
# Each step has its own time limit so that one slow step cannot take the others' time; a step that
# fails does not stop the next. Runs from a checkout without installing: the repo root goes on
# PYTHONPATH. Packages the machine lacks are installed from wheels in .whl/ when present: on a lent H200 (torch
# 2.11, Python 3.12) mnist1d and fastprogress were missing; before the run, here:
#   .venv/bin/python -m pip download --no-deps -d .whl mnist1d
# (.whl/ is untracked, so it travels with the working tree). Without fastprogress progress prints plain lines;
# without mnist1d the tests of MNIST-1D problems skip.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUTDIR=${1:-${OUT:-/tmp/gpu_session}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MPLBACKEND=Agg PYTHONUNBUFFERED=1
step() {   # step NAME SECONDS CMD...: run CMD under a time limit, log to OUTDIR/NAME.log, report its status
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL:-25}" "$OUTDIR/$name.log"
    echo "=== $name: rc $rc in $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
step cuda_tests "${CUDA_TESTS_S:-120}" "$PY" -m pytest -q -p no:cacheprovider -rs \
    tests/callbacks/test_gpu.py tests/callbacks/test_predict.py tests/test_vision.py
step gpu_bench "${GPU_BENCH_S:-200}" "$PY" bench/gpu.py --repeats "${REPEATS:-3}"
step gpu_ddp "${GPU_PAR_S:-60}" "$PY" bench/gpu.py --config ddp --repeats "${REPEATS:-3}"
step gpu_fsdp "${GPU_PAR_S:-60}" "$PY" bench/gpu.py --config fsdp --repeats "${REPEATS:-3}"
step guard_cuda "${GUARD_S:-40}" "$PY" bench/divergence_guard.py --device cuda --epochs 6
suite_s=${SUITE_S:-$(( ${TOTAL_S:-600} - SECONDS ))}; [ "$suite_s" -lt 30 ] && suite_s=30
# with pytest-xdist (the H200 image has it) the suite runs on several processes: serially it took longer than
# the 224 s left to it on the first lent GPU; on 2 CPU cores, -n 2 passes it in about 130 s
workers=(); "$PY" -c 'import xdist' 2>/dev/null && workers=(-n "${SUITE_WORKERS:-8}")
[ "${SUITE_S:-}" = 0 ] && exit 0   # SUITE_S=0: the GPU checks alone
TAIL=60 step suite "$suite_s" "$PY" -m pytest -q -p no:cacheprovider -rf "${workers[@]}" tests \
    --ignore tests/test_notebooks.py
