#!/usr/bin/env bash
# The v2 toy teacher's device run (issue 15); the work is benchmarks/device_toy_v2.py (read its docstring).
#
#   bash benchmarks/device_toy_v2.sh prepare    # here, once per checkout: ComfyUI (current pin) and the four packages
#                                               # the device image lacks, into .device_v2/ (git-ignored via
#                                               # .git/info/exclude), about 25 MB
#   bash benchmarks/device_toy_v2.sh dry-run    # here, on the CPU, about a minute: the same path on the carried files
#   device run: command "bash benchmarks/device_toy_v2.sh run", carry [".device_v2"], timeout_s 590
#
# Extra arguments after the verb go to device_toy_v2.py (e.g. --minutes 5.5, --clip v1, --skip-train).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.device_v2
VENV_PY=${VENV_PY:-$HOME/.cache/quickstep/venv/bin/python}
verb=${1:-}
shift || true

carried_env() {
    if [ ! -f "$CARRY/comfyui/main.py" ]; then
        echo "$CARRY is missing: run 'bash benchmarks/device_toy_v2.sh prepare' here first, and carry it" >&2
        exit 2
    fi
    export COMFYUI_PATH=$PWD/$CARRY/comfyui
    export PYTHONPATH=$PWD/$CARRY/site${PYTHONPATH:+:$PYTHONPATH}
    export PYTHONUNBUFFERED=1
}

case "$verb" in
prepare)
    host=$("$VENV_PY" -c "import sys; sys.path.insert(0, '.'); from host.locate import find_host; print(find_host('current'))")
    site=$("$VENV_PY" -c "import os, torchsde; print(os.path.dirname(os.path.dirname(torchsde.__file__)))")
    rm -rf "$CARRY"
    mkdir -p "$CARRY/comfyui" "$CARRY/site"
    cp -r "$host/comfy" "$host/comfy_api" "$host/comfy_execution" "$host/app" "$host/utils" "$CARRY/comfyui/"
    cp "$host"/*.py "$CARRY/comfyui/"
    for pkg in comfy_aimdo torchsde trampoline; do cp -r "$site/$pkg" "$CARRY/site/"; done
    # comfy_kitchen without its compiled CUDA/ROCm extensions (226 MB, and built for this Python only): ComfyUI
    # imports it, the toy UNet uses none of its kernels, and without them it runs its eager/triton backends
    cp -r "$site/comfy_kitchen" "$CARRY/site/"
    find "$CARRY/site/comfy_kitchen" -name "*.so" -delete
    find "$CARRY" -name __pycache__ -type d -prune -exec rm -rf {} +
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qxF "/$CARRY/" "$exclude" 2>/dev/null || echo "/$CARRY/" >> "$exclude"
    du -sh "$CARRY"
    ;;
dry-run)
    carried_env
    out=${OUT:-/tmp/quickstep_device_v2_dry}
    rm -rf "$out"
    mkdir -p "$out"
    "$VENV_PY" benchmarks/device_toy_v2.py --dry-run --out "$out" --state "$out/state" "$@"
    ;;
run)
    carried_env
    : "${OUT:?OUT must name the results folder (the device tool sets it)}"
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
    set -o pipefail
    python3 benchmarks/device_toy_v2.py --out "$OUT" "$@" 2>&1 | tee "$OUT/device_log.txt"
    ;;
*)
    echo "usage: bash benchmarks/device_toy_v2.sh prepare | dry-run | run [device_toy_v2.py arguments]" >&2
    exit 2
    ;;
esac
