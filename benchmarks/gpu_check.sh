#!/usr/bin/env bash
# GPU check of qklab: NOT YET RUN ON A GPU. Written without access to one (the session that wrote
# it had no GPU lent); no GPU figure of this project has been measured. Budget: under 8 minutes on
# one GPU (each step has its own timeout; the sums below are the worst case).
#
#   benchmarks/gpu_check.sh                 # results into results/gpu-check-<time>/
#   OUT=some/folder PAPER_STEPS=500 WIKITEXT_DIR=path/to/wikitext-2-raw benchmarks/gpu_check.sh
#
# 1. the tests marked `cuda` (tests/test_cuda.py): forward/backward on CUDA equal to CPU, a stacked
#    sweep on CUDA, pick_device, a runner point on the GPU                      (timeout 120 s)
# 2. benchmarks/bench_gpu.py: throughput against the plain reference on the GPU, and 16 tiny
#    models stacked against one after another (goal 8x or more)                  (timeout 200 s)
# 3. the paper-size LocAteR grid (`qklab reproduce locater --scale paper`: the paper's model at
#    seq 512, every arm and seed), each point cut to PAPER_STEPS steps (default 200; the full
#    grid trains SCALES["paper"].steps a point, read from qklab), with its wall time (timeout 150 s)
#    A run stopped by its timeout keeps its finished points; the same command resumes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/gpu-check-$(date -u +%Y%m%d-%H%M%S)}
PAPER_STEPS=${PAPER_STEPS:-200}
WORKERS=${WORKERS:-8}
mkdir -p "$OUT"
status=0

echo "== machine" | tee "$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/summary.txt"
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0) if ok else 'NO GPU VISIBLE'); sys.exit(0 if ok else 1)" \
  2>&1 | tee -a "$OUT/summary.txt" || { echo "torch sees no CUDA GPU: install a CUDA build of torch (README, 'Using a GPU')"; exit 2; }
uptime | tee -a "$OUT/summary.txt"

echo "== 1. tests marked cuda" | tee -a "$OUT/summary.txt"
timeout 120 "$PY" -m pytest -m cuda tests/test_cuda.py -p no:randomly -q -rs 2>&1 | tee "$OUT/tests.txt" | tail -3 | tee -a "$OUT/summary.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 2. bench_gpu.py" | tee -a "$OUT/summary.txt"
timeout 200 "$PY" benchmarks/bench_gpu.py 2>&1 | tee "$OUT/bench_gpu.txt" >> "$OUT/summary.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 3. paper-size LocAteR grid, $PAPER_STEPS steps a point, $WORKERS worker processes on the GPU" | tee -a "$OUT/summary.txt"
data=()
[ -n "${WIKITEXT_DIR:-}" ] && data=(--wikitext-dir "$WIKITEXT_DIR")
start=$(date +%s.%N)
timeout 150 "$PY" -m qklab.cli reproduce locater --scale paper --steps "$PAPER_STEPS" "${data[@]}" --device cuda \
  --workers "$WORKERS" --no-progress --out "$OUT/locater-paper-steps$PAPER_STEPS.jsonl" > "$OUT/locater.txt" 2>&1
rc=$?
end=$(date +%s.%N)
head -3 "$OUT/locater.txt" | tee -a "$OUT/summary.txt"
"$PY" - "$OUT/locater-paper-steps$PAPER_STEPS.jsonl" "$start" "$end" "$rc" "$PAPER_STEPS" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
from qklab.runner import read_records
path, start, end, rc, steps = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
from qklab.reproduce import SCALES
full = SCALES["paper"].steps  # the steps a point of the full paper-scale grid trains
recs = read_records(path) if __import__("os").path.exists(path) else {}
ok = [r for r in recs.values() if r["status"] == "ok"]
wall = end - start
print(f"wall time {wall:.1f} s (exit {rc}{', stopped by the 150 s budget' if rc == 124 else ''}); "
      f"{len(ok)} points finished, {len(recs) - len(ok)} failed")
if ok:
    per = sorted(r["wall_s"] for r in ok)
    print(f"per point: median {per[len(per) // 2]:.1f} s, min {per[0]:.1f} s, max {per[-1]:.1f} s for {steps} steps; "
          f"devices {sorted({r['device'] for r in ok})}")
    print(f"extrapolated (not measured) to {full:,} steps a point: about {sum(per) * full / steps / 3600:.1f} GPU-process "
          "hours in total, before dividing by the workers that share the GPU")
PY
[ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || status=1
echo "== done: $OUT/summary.txt (exit $status)"
exit $status
