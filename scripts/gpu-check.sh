#!/usr/bin/env bash
# Check the project on a GPU machine without internet, from the folder scripts/gpu-bundle.sh wrote:
#   1. install the bundled wheels offline into a venv that sees the image's torch (--system-site-packages);
#   2. run the GPU test tier (pytest -m gpu);
#   3. per variant: eager vs forced-fused ResNet-18 at b1 (CUDA graph) and b128 fp32/bf16, next to the roofline
#      model's predicted ratios (fused_check.py; also written to WORK_DIR/fused.json);
#   4. run the quick GPU suite (gpu-quick.toml: resnet18 x every variant) into a results store;
#   5. print a one-screen summary (also written to WORK_DIR/summary.txt).
# Everything is sized to finish in under 8 minutes on one H100/H200; each of steps 2-4 stops at its time limit
# (GPU_CHECK_TEST_TIMEOUT, GPU_CHECK_FUSED_TIMEOUT, GPU_CHECK_SUITE_TIMEOUT seconds) and says so.
#
# usage: BUNDLE/gpu-check.sh [--dry-run] [--skip-tests] [--skip-suite] [WORK_DIR]
#        (default WORK_DIR: ./gpu-check; PYTHON=... picks the image's Python)
#   --dry-run     print the plan and the roofline predictions, check nothing else (no GPU, no bundle needed)
set -uo pipefail

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT:-140}
FUSED_TIMEOUT=${GPU_CHECK_FUSED_TIMEOUT:-150}
SUITE_TIMEOUT=${GPU_CHECK_SUITE_TIMEOUT:-140}
DRY=0; SKIP_TESTS=0; SKIP_SUITE=0; WORK=""

die() { echo "gpu-check: $*" >&2; exit 2; }
took() { echo $(( $(date +%s) - $1 )); }
usage() { echo "usage: gpu-check.sh [--dry-run] [--skip-tests] [--skip-suite] [WORK_DIR]   (see the comment at its top)"; }

for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --skip-tests) SKIP_TESTS=1 ;;
        --skip-suite) SKIP_SUITE=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option '$arg'; valid: --dry-run, --skip-tests, --skip-suite, --help" ;;
        *) [ -z "$WORK" ] || die "one WORK_DIR only (got '$WORK' and '$arg')"; WORK=$arg ;;
    esac
done
WORK=${WORK:-$PWD/gpu-check}
for t in TEST_TIMEOUT FUSED_TIMEOUT SUITE_TIMEOUT; do
    case "${!t}" in ''|*[!0-9]*) die "GPU_CHECK_${t} must be a whole number of seconds, got '${!t}'" ;; esac
done
[ -f "$BUNDLE/fused_check.py" ] || die "fused_check.py is missing beside $0: rebuild the bundle with scripts/gpu-bundle.sh"
"$PY" -c "import torch" 2>/dev/null || die "'$PY' cannot import torch: run this on a PyTorch GPU image (or set PYTHON)"

if [ "$DRY" -eq 1 ]; then
    echo "gpu-check: dry run; would install into $WORK/venv, then run (limits in seconds):"
    [ "$SKIP_TESTS" -eq 1 ] || echo "  GPU test tier (pytest -m gpu)            ${TEST_TIMEOUT}"
    echo "  eager vs forced fused (fused_check.py)   ${FUSED_TIMEOUT}"
    [ "$SKIP_SUITE" -eq 1 ] || echo "  quick GPU suite (gpu-quick.toml)         ${SUITE_TIMEOUT}"
    echo "  total at most $(( (1 - SKIP_TESTS) * TEST_TIMEOUT + FUSED_TIMEOUT + (1 - SKIP_SUITE) * SUITE_TIMEOUT )) s plus the install"
    exec "$PY" "$BUNDLE/fused_check.py" --dry-run
fi
# fail fast: without a CUDA device nothing below can run
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
    || die "no CUDA device: torch.cuda.is_available() is False for '$PY'. Run this on the GPU machine (--dry-run works anywhere)."

[ -d "$BUNDLE/wheels" ] && ls "$BUNDLE"/wheels/dynconv_bench-*.whl >/dev/null 2>&1 \
    || die "no project wheel in $BUNDLE/wheels: run scripts/gpu-bundle.sh on a CPU machine, copy the folder here, and run the gpu-check.sh inside it"
mkdir -p "$WORK" || die "cannot create $WORK"
START=$(date +%s)

echo "gpu-check: installing into $WORK/venv (offline, from $BUNDLE/wheels)"
VENV=$WORK/venv
[ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV" || die "cannot create a venv with '$PY -m venv'"
VPY=$VENV/bin/python
# Only the wheels whose packages the image lacks (pip's resolver would also judge the image's own packages),
# and the project always (a rerun installs a newer bundle over an older one of the same version).
WHEELS=$("$VPY" - "$BUNDLE/wheels" <<'PYCODE'
import importlib.metadata as md, pathlib, sys
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = whl.name.split("-")[0]
    try:
        md.distribution(name)
        if name == "dynconv_bench":
            print(whl)
    except md.PackageNotFoundError:
        print(whl)
PYCODE
)
# shellcheck disable=SC2086  # one path per wheel, no spaces (the bundle's own names)
"$VPY" -m pip install -q --no-index --no-deps --force-reinstall $WHEELS >"$WORK/install.log" 2>&1 \
    || { tail -n 5 "$WORK/install.log" >&2; die "offline install failed (log: $WORK/install.log)"; }
"$VPY" - <<'PYCODE' || die "the image lacks packages the project needs (named above): add pure-Python ones to the bundle with GPU_BUNDLE_PACKAGES, install the others on the image"
import importlib.metadata as md, re, sys
optional = {"scikit-learn": "the digits dataset only"}
missing = []
for req in md.requires("dynconv-bench") or []:
    if ";" in req:
        continue  # extras
    name = re.split(r"[<>=!~ \[]", req, maxsplit=1)[0]
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        missing.append(name)
for name in missing:
    print(f"gpu-check: {'note' if name in optional else 'missing'}: {name} is not installed"
          + (f" (needed for {optional[name]})" if name in optional else ""), file=sys.stderr)
sys.exit(1 if set(missing) - set(optional) else 0)
PYCODE
"$VPY" -c "import dynconv_bench, fvcore; print('gpu-check: dynconv-bench', dynconv_bench.__version__, 'variants:', ', '.join(dynconv_bench.list_variants()))" \
    || die "the installed project does not import (see above)"

"$VPY" - <<'PYCODE' || die "no CUDA device: torch.cuda.is_available() is False. Run this on the GPU machine (installation above was checked)."
import sys, torch
print(f"gpu-check: torch {torch.__version__}, CUDA build {torch.version.cuda}")
if not torch.cuda.is_available():
    sys.exit(1)
print(f"gpu-check: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s)")
PYCODE

export DYNCONV_BENCH_STRATEGY_CACHE=$WORK/strategies.json  # per-sample strategies tuned once, shared by both steps
cd "$WORK" || die "cannot enter $WORK"

TEST_RC=0
if [ "$SKIP_TESTS" -eq 0 ]; then
    echo "gpu-check: GPU test tier (limit ${TEST_TIMEOUT} s)"
    T0=$(date +%s)
    timeout "$TEST_TIMEOUT" "$VPY" -m pytest -q -m gpu -p no:cacheprovider -c "$BUNDLE/tests/pytest.ini" \
        "$BUNDLE/tests/test_gpu.py" >"$WORK/pytest.log" 2>&1
    TEST_RC=$?
    [ "$TEST_RC" -eq 124 ] && echo "= stopped at the ${TEST_TIMEOUT} s limit =" >>"$WORK/pytest.log"
    echo "gpu-check: test tier exit code $TEST_RC after $(took "$T0") s (log: $WORK/pytest.log)"
fi

echo "gpu-check: eager vs forced fused per variant (limit ${FUSED_TIMEOUT} s; ratios to static, > 1 faster)"
T0=$(date +%s)
timeout --signal=INT --kill-after=20 "$FUSED_TIMEOUT" "$VPY" "$BUNDLE/fused_check.py" --min-time 0.2 \
    --out "$WORK/fused.json" 2>"$WORK/fused.log" | tee "$WORK/fused.txt"
FUSED_RC=${PIPESTATUS[0]}
[ "$FUSED_RC" -eq 124 ] && echo "gpu-check: the fused check stopped at its ${FUSED_TIMEOUT} s limit (rows above are complete)"
echo "gpu-check: fused check exit code $FUSED_RC after $(took "$T0") s (log: $WORK/fused.log)"

SUITE_RC=0; SUITE_S=0
if [ "$SKIP_SUITE" -eq 0 ]; then
    echo "gpu-check: quick GPU suite (limit ${SUITE_TIMEOUT} s)"
    T0=$(date +%s)
    timeout --signal=INT --kill-after=20 "$SUITE_TIMEOUT" "$VENV/bin/dynconv-bench" run "$BUNDLE/gpu-quick.toml" \
        --db "$WORK/gpu-quick.sqlite" --no-plots --no-progress >"$WORK/suite.log" 2>&1
    SUITE_RC=$?
    SUITE_S=$(took "$T0")
    [ "$SUITE_RC" -eq 124 ] && echo "gpu-check: the suite stopped at its ${SUITE_TIMEOUT} s limit; rerun to finish the rest"
    echo "gpu-check: suite exit code $SUITE_RC after $SUITE_S s (log: $WORK/suite.log)"
    [ "$SUITE_RC" -ne 0 ] && [ "$SUITE_RC" -ne 124 ] && tail -n 3 "$WORK/suite.log"
fi

echo
[ -f "$WORK/gpu-quick.sqlite" ] && [ -f "$WORK/pytest.log" ] \
    && "$VPY" "$BUNDLE/gpu_summary.py" "$WORK/gpu-quick.sqlite" "$WORK/pytest.log" "$SUITE_S" | tee "$WORK/summary.txt"
echo "gpu-check: done in $(took "$START") s; store, logs and summary in $WORK"
[ "$TEST_RC" -eq 0 ] && [ "$FUSED_RC" -eq 0 ] && [ "$SUITE_RC" -eq 0 ]
