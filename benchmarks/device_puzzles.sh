#!/usr/bin/env bash
# One prepared GPU run (H100/H200, ≈ 9 min) for the goals a CPU cannot reach, three jobs side by side on one GPU:
#   s9i  the 9×9 Sudoku recipe (examples/configs/sudoku-9x9.json) with `canvas_index` (the prompt ends with one index
#        word per canvas cell, which lifted the 4×4 CPU recipe),
#   s9p  the same with `canvas_position_embeddings` (each cell's learned position on the infill canvas and on the
#        causal step that writes it): an A/B on the same data,
#   zebra  the Zebra recipe (examples/configs/zebra.json) with `canvas_position_embeddings` (the only CPU variant whose
#        causal draft reads its clues, README).
# (The 4×4 demo model trains on the CPU: make demo ARGS=--train.) Each job gets BUDGET seconds of training (90 % stage
# 1; its step count is set so that the cosine schedule ends near the budget), then evaluation; `puzzles.run` saves
# the model after each stage, and each job has a hard timeout so that whatever it wrote is packed.
# Writes to $OUT (or ./runs/device): gpu.txt, summary.txt (the end of every log) and per job a tarball (log, results
# JSON/Markdown/PNG, and for s9p and zebra the fp16 checkpoint with its held-out rows) split into parts of under 16 MiB.
# Wheels in .whl/ bring transformers 5.24 + datasets where the image lacks them. CPU smoke run of the script itself:
#   WHEELS=0 DEVICE=cpu PRECISION=fp32 BUDGET=20 N9=300 NZ=300 EXTRA="--n-test 8 --set stage1_batch=4 \
#     --set stage2_batch=2 --set timesteps_per_chain=2" bash benchmarks/device_puzzles.sh
set -uo pipefail
OUT=${OUT:-runs/device}
WORK=/tmp/glauber-device
rm -rf "$WORK"  # a rerun on a still-warm machine must not pack the previous run's results
mkdir -p "$OUT" "$WORK"
if [ "${WHEELS:-1}" = 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  python3 -c "import torch, transformers, datasets; print(torch.__version__, transformers.__version__, datasets.__version__)"
} | tee "$OUT/gpu.txt"
BUDGET=${BUDGET:-360}
HARD=$((BUDGET + 120))  # tokenisation, evaluation and saving fit in the rest
COMMON=(--device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" --time-budget-s "$BUDGET" --threads 2
        --set stage1_budget_fraction=0.9)
timeout "$HARD" python3 examples/zebra.py --out "$WORK/zebra" "${COMMON[@]}" --workers 4 --n-train "${NZ:-10000}" \
  --n-test 250 --stage1-steps "${ZEBRA_STEPS:-1600}" --stage2-steps 20 --set canvas_position_embeddings=true ${EXTRA:-} > "$WORK/zebra.log" 2>&1 &
PZ=$!
started=$(date +%s)
python3 -m puzzles.cli puzzles make sudoku --size 9 --n "${N9:-40000}" --test-size 500 --seed 0 --workers 10 --quiet \
  --out "$WORK/data9" | tail -n 1
echo "9x9 data: $(( $(date +%s) - started )) s"
LEFT=$((HARD - ($(date +%s) - started)))  # the data generation came out of the same wall-clock budget
for job in s9i s9p; do
  positions=false; [ "$job" = s9p ] && positions=true
  timeout "$LEFT" python3 examples/sudoku.py --config examples/configs/sudoku-9x9.json --data "$WORK/data9" \
    --out "$WORK/$job" "${COMMON[@]}" --set canvas_index=true --set canvas_position_embeddings=$positions --stage1-steps "${S9_STEPS:-1600}" --stage2-steps 15 \
    ${EXTRA:-} > "$WORK/$job.log" 2>&1 &
  eval "P_$job=$!"
done
status=0
for job in zebra s9i s9p; do
  pid=$PZ; [ "$job" != zebra ] && eval "pid=\$P_$job"
  wait "$pid"; rc=$?; echo "$job exit $rc"; [ "$rc" = 0 ] || status=1
done
for job in zebra s9i s9p; do
  if [ "$job" != s9i ] && [ -d "$WORK/$job/model" ]; then
    python3 -c "import sys; from puzzles.recipe import load_model; from puzzles.run import load_rows, save_demo_asset
m, t = load_model(sys.argv[1] + '/model'); save_demo_asset(m, t, load_rows(sys.argv[1] + '/test.jsonl'), sys.argv[1] + '/model-fp16')" \
      "$WORK/$job" >/dev/null 2>&1 || echo "$job: no fp16 export"
  fi
  mkdir -p "$WORK/$job"
  grep -av 'Map:\|Writing model shards\|Loading weights' "$WORK/$job.log" > "$WORK/$job/run.log"
  { echo "==== $job"; tail -n 16 "$WORK/$job/run.log"; } >> "$OUT/summary.txt"
  tar czf "$WORK/$job.tgz" -C "$WORK/$job" --exclude='stage1' --exclude='stage2' --exclude='model' . 2>/dev/null
  split -b 16000k "$WORK/$job.tgz" "$OUT/$job.tgz.part-"
done
cat "$OUT/summary.txt"
exit "$status"  # non-zero when a job failed or hit its timeout (what it wrote is packed all the same)
