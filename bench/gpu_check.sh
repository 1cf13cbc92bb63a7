#!/usr/bin/env bash
# GPU check (issue 14): training, sampling and audit speed on this GPU and the paper-scale projection,
# in at most 8 minutes. Run from anywhere: bench/gpu_check.sh [--budget-s S] [--dry-run] [--results PATH]
# The script keeps to its own budget (420 s by default); the timeout here only guards against a hang.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec timeout --signal=INT 480 "$py" -m bench.gpu_check "$@"
