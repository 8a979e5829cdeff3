#!/usr/bin/env bash
# A dry run of the whole GPU lease queue at the smoke preset, on the CPU, in an environment shaped like the GPU machine:
# a venv with only torch, numpy, pandas, pyarrow, safetensors, matplotlib, tqdm, pytest and scikit-learn (no fastcore,
# papermill or Jupyter; modmem not installed), fastcore only from the .lease/ folder that `modmem.lease prepare` makes.
#
#   bash benchmarks/lease_dry_run.sh [VENV] [WORK]      # VENV default /tmp/modmem-gpu-shaped (made when missing)
#
# Lease 1 runs in a copy of the repository with too little time for the whole queue and stops part way; its files are
# ingested into a second, fresh copy (as here, after a lease), whose lease 2 resumes where lease 1 stopped and finishes;
# lease 2's files are ingested too. Prints each lease's parts and files; exits non-zero if anything did not work.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-/tmp/modmem-gpu-shaped}
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/modmem-lease-dry.XXXXXX")}
DEV_PY=${DEV_PY:-python3}   # a Python with modmem's dev install (fastcore), to prepare .lease/ and to ingest
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.13.0 numpy pandas pyarrow safetensors matplotlib tqdm pytest scikit-learn
fi
for m in fastcore papermill IPython nbformat; do
  if "$VENV/bin/python" -c "import $m" 2>/dev/null; then echo "$VENV has $m: not shaped like the GPU machine" >&2; exit 2; fi
done
copy() { mkdir -p "$1"; (cd "$ROOT" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$1"; }
A=$WORK/lease1; B=$WORK/here
copy "$A"; copy "$B"
(cd "$A" && "$DEV_PY" -m modmem.lease prepare --preset smoke --data)
export OMP_NUM_THREADS=1 MPLBACKEND=Agg
run() {  # run ROOT OUT SECONDS: a lease as the GPU machine runs it
  (cd "$1" && PYTHONPATH=.lease/site:. "$VENV/bin/python" -m modmem.lease run "$2" --preset smoke --device cpu --small-checks --seconds "$3") || true
}
t0=$(date +%s)
run "$A" "$WORK/out1" 90
(cd "$B" && "$DEV_PY" -m modmem.lease ingest "$WORK/out1")
cp -r "$A/.lease" "$B/.lease"
run "$B" "$WORK/out2" 900
(cd "$B" && "$DEV_PY" -m modmem.lease ingest "$WORK/out2")
echo; echo "=== after two leases ($(( $(date +%s) - t0 )) s)"
for o in out1 out2; do echo "$o: $(ls "$WORK/$o" | tr '\n' ' ')($(du -sh "$WORK/$o" | cut -f1))"; done
(cd "$B" && "$DEV_PY" - <<'EOF'
import json, sys
from modmem.lease import next_parts, read_state, lease_dir
s = read_state('.', 'smoke')
for l in s['leases']: print(l['started'], l['device'], [tuple(p[:2]) for p in l['parts']])
left = next_parts('smoke', '.')
figs = sorted(p.stem for p in lease_dir('.', 'smoke').glob('p*.json'))
print(f"{len(figs)} figures in figures/smoke; {len(left)} part(s) left: {[p.name for p in left]}")
sys.exit(1 if left or len(s['leases']) != 2 else 0)
EOF
)
