#!/usr/bin/env bash
# The prepared GPU run (issue 11): one command, at most ~9 minutes on one H100/H200, that needs nothing but python3 with
# torch, pandas, pyarrow, safetensors, matplotlib, tqdm and pytest (no papermill, Jupyter or fastcore; modmem is not
# installed: PYTHONPATH is set to the repository). It runs, each part timed and each failure recorded:
#   1. tests     the device tests on CUDA (MODMEM_TEST_DEVICE=cuda; test files that need a missing package are skipped)
#   2. sync      TrainStep (full batch, minibatch, dropout, BatchNorm) and train()'s loop under torch.cuda.set_sync_debug_mode('error')
#   3. bench     `modmem bench --large` (issue 11's table, E up to 1156) on CUDA
#   4. memory    the planner's memory model against torch.cuda.max_memory_allocated() for full chunks
#   5. figures   paper 1 Figs. 3a and 3b at preset `full` (2 x 1156 runs x 2000 steps, p = 97, N = 500) through
#                `modmem reproduce --plain` (modmem.reproduce.run_plain: the notebook without papermill); last, as
#                the longest part, with whatever time is left
#   6. timings   OUT/timings.json (rewritten after every part) and the whole stdout in OUT/log.txt
#
#   bash benchmarks/device_run.sh OUT               # on the GPU machine
#   bash benchmarks/device_run.sh OUT --cpu-smoke   # every part at a tiny size on the CPU, well under a minute
#
# OUT ends up with at most 7 files: log.txt, timings.json, checks.json (sync + memory), bench.json, bench.csv,
# figures.tar.gz (the figures, their provenance records, the run record, log and index) and pytest.xml.
# Packages missing on the machine travel as wheels in .device-wheels/ (git-ignored), e.g. made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .device-wheels fastcore==1.14.5
# and are installed into a scratch folder before anything runs. Exits non-zero if any part failed.
# The whole run stops within MODMEM_DEADLINE seconds (default 540): each part runs under the smaller of its own limit
# (MODMEM_LIMIT_TESTS, _SYNC, _BENCH, _MEMORY, _FIGURES) and the time left.
set -u -o pipefail

usage="usage: bash benchmarks/device_run.sh OUT [--cpu-smoke]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
OUT=$1; shift
SMOKE=${MODMEM_CPU_SMOKE:-0}
for a in "$@"; do
  case $a in
    --cpu-smoke) SMOKE=1 ;;
    *) echo "unknown argument $a; $usage" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/modmem-device.XXXXXX")
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!
DEADLINE=$(( $(date +%s) + ${MODMEM_DEADLINE:-540} ))

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  TESTS="tests/test_slices.py tests/test_bench.py"
  PYTEST_K="not experiment_notebook and not sync_check and not memory_check"  # parts 2, 4 and 5 run these anyway
  BENCH="--p 11 --width 16 --steps 1 --runs 8 --sequential 1 --min-seconds 0 --large"
  PRESET=smoke; SMALL=--small
else
  DEVICE=cuda
  TESTS="tests/test_device.py tests/test_slices.py tests/test_optim.py tests/test_sweep.py tests/test_bench.py"
  BENCH="--large"
  PYTEST_K=""
  PRESET=full; SMALL=
fi
echo "modmem device run: $(date -u +%FT%TZ), mode $([ "$SMOKE" = 1 ] && echo cpu-smoke || echo gpu), device $DEVICE, out $OUT, scratch $WORK"

# carried wheels: installed into the scratch folder, ahead of nothing but the repository itself
if compgen -G "$ROOT/.device-wheels/*.whl" > /dev/null; then
  echo "installing carried wheels: $(ls "$ROOT"/.device-wheels/*.whl | xargs -n1 basename | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$ROOT"/.device-wheels/*.whl \
    && export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH#"$ROOT"}" || echo "wheel install failed; going on without them"
fi
"$PY" -c "import torch, modmem; print(f'python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'modmem', modmem.__version__, modmem.__file__)"
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader 2>/dev/null || true; fi

FAILED=0
T_START=$(date +%s.%N)
: > "$WORK/timings.tsv"
write_timings() {
  "$PY" - "$WORK/timings.tsv" "$OUT/timings.json" "$SMOKE" "$DEVICE" "$T_START" <<'EOF'
import json, sys, time
tsv, out, smoke, device, t0 = sys.argv[1:]
parts = {}
for line in open(tsv):
    name, rc, secs, limit = line.rstrip('\n').split('\t')
    parts[name] = dict(rc=int(rc), ok=rc == '0', seconds=round(float(secs), 1), limit_s=int(limit), timed_out=rc in ('124', '137'),
                       skipped=rc == '-1')
json.dump(dict(mode='cpu-smoke' if smoke == '1' else 'gpu', device=device, parts=parts,
               total_seconds=round(time.time() - float(t0), 1), failed=[k for k, v in parts.items() if not v['ok']]),
          open(out, 'w'), indent=1)
EOF
}
# part NAME LIMIT_SECONDS COMMAND...: run one part under a time limit, record rc and seconds, keep going on failure
part() {
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE - $(date +%s) - 5 ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    echo "=== $name: skipped, no time left"; printf '%s\t%s\t%s\t%s\n' "$name" -1 0 0 >> "$WORK/timings.tsv"
    FAILED=1; write_timings; return
  fi
  echo; echo "=== $name (limit ${limit} s): $*"
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@"; rc=$?
  t1=$(date +%s.%N)
  local secs; secs=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$limit" >> "$WORK/timings.tsv"
  [ "$rc" = 0 ] || FAILED=1
  echo "=== $name: rc $rc in $secs s"
  write_timings
}

# 1. tests: the listed files that exist and whose imports are all installed here
cd "$ROOT" || exit 2
RUN_TESTS=$("$PY" - $TESTS <<'EOF'
import ast, importlib.util, sys
from pathlib import Path
sys.path[:0] = ['benchmarks', 'tests']  # the tests' own helpers (device_checks, conftest) count as installed
keep = []
for f in sys.argv[1:]:
    p = Path(f)
    if not p.exists(): print(f"skip {f}: not in this checkout", file=sys.stderr); continue
    mods = {n.name.split('.')[0] for node in ast.parse(p.read_text()).body if isinstance(node, ast.Import) for n in node.names}
    mods |= {node.module.split('.')[0] for node in ast.parse(p.read_text()).body if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    missing = sorted(m for m in mods if importlib.util.find_spec(m) is None)
    if missing: print(f"skip {f}: needs {', '.join(missing)}", file=sys.stderr); continue
    keep.append(f)
print(' '.join(keep))
EOF
)
part tests "${MODMEM_LIMIT_TESTS:-150}" env MODMEM_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider --maxfail=20 \
  --junitxml="$OUT/pytest.xml" ${PYTEST_K:+-k "$PYTEST_K"} $RUN_TESTS

# 2. the training step and train()'s loop with host syncs as errors
part sync "${MODMEM_LIMIT_SYNC:-60}" "$PY" benchmarks/device_checks.py sync --device $DEVICE $SMALL --json "$OUT/checks.json"

# 3. the benchmark table (E = 1156 included)
part bench "${MODMEM_LIMIT_BENCH:-120}" "$PY" -c 'import sys; from modmem.cli import main; sys.exit(main(sys.argv[1:]))' \
  bench --device $DEVICE $BENCH --json "$OUT/bench.json" --csv "$OUT/bench.csv"

# 4. the planner's memory model against the memory a chunk really takes
part memory "${MODMEM_LIMIT_MEMORY:-90}" "$PY" benchmarks/device_checks.py memory --device $DEVICE $SMALL --json "$OUT/checks.json"

# 5. paper 1 Figs. 3a and 3b (notebook p1_phase_diagrams) without papermill; the sweep cache stays out of OUT
part figures "${MODMEM_LIMIT_FIGURES:-600}" "$PY" -c 'import sys; from modmem.cli import main; sys.exit(main(sys.argv[1:]))' \
  reproduce --plain --preset $PRESET --only p1-fig03a p1-fig03b --device $DEVICE --out "$WORK/figures" --cache "$WORK/cache" --force
tail -n 25 "$WORK/figures/$PRESET/logs/p1_phase_diagrams.log" 2>/dev/null
if [ -d "$WORK/figures/$PRESET" ]; then tar -czf "$OUT/figures.tar.gz" -C "$WORK/figures" "$PRESET"; else echo "no figures to pack"; fi

# 6. timings (written after each part) and a summary
write_timings
echo; echo "=== summary"
"$PY" -c "import json; t = json.load(open('$OUT/timings.json')); [print(f\"{k:<8} {'ok' if v['ok'] else 'skipped (no time left)' if v['skipped'] else 'FAILED rc ' + str(v['rc'])+(' (timed out)' if v['timed_out'] else ''):<22} {v['seconds']:>7.1f} s\") for k, v in t['parts'].items()]; print(f\"total {t['total_seconds']:.0f} s; failed: {t['failed'] or 'none'}\")"
rm -rf "$WORK"
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit $FAILED
