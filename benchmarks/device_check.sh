#!/usr/bin/env bash
# CUDA readiness check (see benchmarks/device_check.py): CUDA vs CPU on the same weights
# (fp32 and the fp16 layers), a drag and a short inversion on CUDA, timings and peak GPU
# memory at 256/512/1024, all under 8 minutes.  `--dry-run` runs it on the CPU with a tiny
# generator in seconds (CI does, tests/test_device_check.py).
#   bash benchmarks/device_check.sh [--dry-run] [--res 256 512]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
exec timeout 480 "$python" "$here/device_check.py" "$@"
