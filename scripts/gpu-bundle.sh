#!/usr/bin/env bash
# Write one folder that sets a GPU machine without internet up for scripts/gpu-check.sh.
#
# Run on a CPU machine where the project is installed (pip install -e .[test]). The folder holds a wheel
# of the project (dynconv_bench and the built-in variants) and wheels of the pure-Python packages a stock
# PyTorch GPU image lacks, repacked from this Python's site-packages (fvcore publishes no wheel); nothing
# the image already has (torch, torchvision, timm, numpy, pandas, matplotlib, triton, onnx*). Beside
# them: gpu-check.sh, the quick GPU suite, the GPU test tier and the summary script.
#
# usage: scripts/gpu-bundle.sh [OUT_DIR]     (default: dist/gpu-bundle; PYTHON=... picks the interpreter)
#        GPU_BUNDLE_PACKAGES="fvcore ..." overrides the list of repacked packages.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
OUT=${1:-$ROOT/dist/gpu-bundle}
PACKAGES=${GPU_BUNDLE_PACKAGES:-"fvcore iopath yacs termcolor portalocker tabulate tqdm pytest pluggy iniconfig pygments packaging"}

die() { echo "gpu-bundle: $*" >&2; exit 2; }

"$PY" -c "import dynconv_bench" 2>/dev/null \
    || die "'$PY' cannot import dynconv_bench: install the project first (pip install -e '$ROOT[test]') or set PYTHON"
case "$OUT" in "$ROOT" | "$ROOT/" | / ) die "refusing to write the bundle into $OUT";; esac

rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/tests"

echo "gpu-bundle: project wheel"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/wheels" "$ROOT" \
    || die "building the project's wheel failed (needs setuptools and wheel in '$PY')"

echo "gpu-bundle: repacking installed packages: $PACKAGES"
# shellcheck disable=SC2086  # the package list is split on purpose
"$PY" "$ROOT/scripts/wheel_from_installed.py" "$OUT/wheels" $PACKAGES >/dev/null

cp "$ROOT/scripts/gpu-check.sh" "$ROOT/scripts/gpu_summary.py" "$ROOT/scripts/fused_check.py" "$ROOT/suites/gpu-quick.toml" "$OUT/"
cp "$ROOT/tests/__init__.py" "$ROOT/tests/conftest.py" "$ROOT/tests/test_gpu.py" "$OUT/tests/"
cat > "$OUT/tests/pytest.ini" <<'INI'
[pytest]
markers =
    slow: long-running tests
    gpu: needs a CUDA device
INI
chmod +x "$OUT/gpu-check.sh"

echo "gpu-bundle: wrote $OUT ($(du -sh "$OUT" | cut -f1)):"
ls "$OUT/wheels" | sed 's/^/  /'
echo "Copy the folder to the GPU machine and run: bash $(basename "$OUT")/gpu-check.sh"
