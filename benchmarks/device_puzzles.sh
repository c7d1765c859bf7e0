#!/usr/bin/env bash
# One prepared GPU run (H100/H200, ≈ 9 min including data generation), three jobs side by side on one GPU:
#   s9     the 9×9 Sudoku recipe (examples/configs/sudoku-9x9.json: the CPU recipe of sudoku-9x9-cpu.json at the
#          paper's 7M size: row/column/box tables, given marker, peer biases, an infill that reads only the canvas at
#          every mask rate with its cell named in the decoder, drafts from 40 % of the run, symmetry augmentation;
#          DESIGN §9), stage 1 only, Glauber N = 0 … 3 and a learning curve every 500 steps,
#   base9  the masked-diffusion (Top-K probability / margin) and AR-in-solver-order baselines on the same network,
#          encoding, data and training budget (`--baselines-only`), so that summary.txt holds the Glauber / MDM / AR
#          table of the 9×9 goal,
#   zebra  the Zebra recipe at the paper's 21M size on its mixture of 3–6 houses × 3–6 attributes
#          (examples/configs/zebra.json: the entity canvas with (attribute, value) tables, every clue word carrying
#          its cell's embedding, the given marker), its data made in the job (≈ 5 puzzles/s per core at this mixture).
# (The 4×4 and 6×6 models train on the CPU: make demo ARGS=--train, examples/sudoku.py.) Each job gets BUDGET seconds
# of training, then evaluation; stage-1 batches are collated by DataLoader workers ahead of the step, and every
# results.json records the stages' steps per second. `puzzles.run` saves the model after each stage, and each job has
# a hard timeout so that whatever it wrote is packed.
# Writes to $OUT (or ./runs/device): gpu.txt, summary.txt (the end of every log) and per job a tarball (log, results
# JSON/Markdown/PNG, and for s9 and zebra the fp16 checkpoint with its held-out rows) split into parts of under 16 MiB.
# Wheels in .whl/ bring transformers 5.24 + datasets where the image lacks them. CPU smoke run of the script itself:
#   PATH=$PWD/.venv/bin:$PATH WHEELS=0 DEVICE=cpu PRECISION=fp32 BUDGET=20 SLACK=600 N9=300 NZ=24 ZTEST=8 \
#     EXTRA="--n-test 8 --set stage1_batch=4 --set stage2_batch=2 --set timesteps_per_chain=2 --baseline-steps 3 \
#     --set d_model=32 --set d_ff=64 --set num_layers=1 --set num_heads=2 --set d_kv=16 --set time_dim=16 \
#     --set num_rounds=1" bash benchmarks/device_puzzles.sh
# (the smoke's small model: a stage-1 step of the 7.4M model at batch 256, or a Zebra stage-2 chain, takes seconds to
# minutes on a CPU)
set -uo pipefail
OUT=${OUT:-runs/device}
WORK=/tmp/glauber-device
rm -rf "$WORK"  # a rerun on a still-warm machine must not pack the previous run's results
mkdir -p "$OUT" "$WORK"
rm -f "$OUT/summary.txt" "$OUT"/*.tgz.part-*
if [ "${WHEELS:-1}" = 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  python3 -c "import torch, transformers, datasets; print(torch.__version__, transformers.__version__, datasets.__version__)"
} | tee "$OUT/gpu.txt"
BUDGET=${BUDGET:-360}
HARD=$((BUDGET + ${SLACK:-120}))  # tokenisation, evaluation and saving fit in the rest (a CPU smoke run needs more)
COMMON=(--device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" --time-budget-s "$BUDGET" --threads 2)
started=$(date +%s)
ZDATA=(--houses 3,4,5,6 --attributes 3,4,5,6 --n "${NZ:-4000}" --test-size "${ZTEST:-250}" --seed 0 --workers 6 --quiet)
python3 -m puzzles.cli puzzles make zebra "${ZDATA[@]}" --out "$WORK/dataz" > "$WORK/dataz.log" 2>&1 &
P_dataz=$!
python3 -m puzzles.cli puzzles make sudoku --size 9 --n "${N9:-40000}" --test-size 500 --seed 0 --workers 10 --quiet \
  --out "$WORK/data9" | tail -n 1
echo "9x9 data: $(( $(date +%s) - started )) s"
LEFT=$((HARD - ($(date +%s) - started)))  # the data generation came out of the same wall-clock budget
S9=(--config examples/configs/sudoku-9x9.json --data "$WORK/data9" "${COMMON[@]}")
timeout "$LEFT" python3 examples/sudoku.py "${S9[@]}" --out "$WORK/s9" --stage1-steps "${S9_STEPS:-3000}" \
  ${EXTRA:-} > "$WORK/s9.log" 2>&1 &
P_s9=$!
timeout "$LEFT" python3 examples/sudoku.py "${S9[@]}" --out "$WORK/base9" --baselines-only \
  --baseline-steps "${BASE_STEPS:-3000}" ${EXTRA:-} > "$WORK/base9.log" 2>&1 &
P_base9=$!
# the 3–6 × 3–6 Zebra mixture takes minutes to generate: its training budget shrinks by that time (the last
# --time-budget-s wins), so the job still ends within HARD of the start
if wait "$P_dataz"; then
  spent=$(( $(date +%s) - started ))
  tail -n 1 "$WORK/dataz.log"; echo "zebra data: $spent s"
  timeout $((HARD - spent)) python3 examples/zebra.py --data "$WORK/dataz" --out "$WORK/zebra" "${COMMON[@]}" \
    --time-budget-s $((BUDGET > spent ? BUDGET - spent : 1)) --stage1-steps "${ZEBRA_STEPS:-1600}" --stage2-steps 20 \
    --set stage1_budget_fraction=0.9 ${EXTRA:-} > "$WORK/zebra.log" 2>&1 &
else
  cp "$WORK/dataz.log" "$WORK/zebra.log"; (exit 1) &  # the Sudoku jobs still run and are packed
fi
P_zebra=$!
status=0
for job in zebra s9 base9; do
  eval "pid=\$P_$job"
  wait "$pid"; rc=$?; echo "$job exit $rc"; [ "$rc" = 0 ] || status=1
done
for job in zebra s9 base9; do
  if [ "$job" != base9 ] && [ -d "$WORK/$job/model" ]; then
    python3 -c "import sys; from puzzles.recipe import load_model; from puzzles.run import load_rows, save_demo_asset
m, t = load_model(sys.argv[1] + '/model'); save_demo_asset(m, t, load_rows(sys.argv[1] + '/test.jsonl'), sys.argv[1] + '/model-fp16')" \
      "$WORK/$job" >/dev/null 2>&1 || echo "$job: no fp16 export"
  fi
  mkdir -p "$WORK/$job"
  grep -av 'Map:\|Writing model shards\|Loading weights' "$WORK/$job.log" > "$WORK/$job/run.log"
  { echo "==== $job"; tail -n 16 "$WORK/$job/run.log"; } >> "$OUT/summary.txt"
  tar czf "$WORK/$job.tgz" -C "$WORK/$job" --exclude='stage1' --exclude='stage2' --exclude='model' --exclude='model-stage1' --exclude='baseline-*' . 2>/dev/null
  split -b 16000k "$WORK/$job.tgz" "$OUT/$job.tgz.part-"
done
cat "$OUT/summary.txt"
exit "$status"  # non-zero when a job failed or hit its timeout (what it wrote is packed all the same)
