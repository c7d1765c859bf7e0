#!/usr/bin/env bash
# One prepared GPU run (H100/H200, ~9 min): the two goals a CPU cannot reach, the 9×9 Sudoku and the Zebra recipes,
# side by side on one GPU (the 4×4 demo model trains on the CPU: make demo ARGS=--train). Writes to $OUT (or
# ./runs/device): logs, results (JSON/Markdown/PNG) and the checkpoints as tarballs.
# Used for the numbers in the README; wheels in .whl/ bring transformers 5.24 + datasets where the image lacks them.
set -uo pipefail
OUT=${OUT:-runs/device}
WORK=/tmp/glauber-device
mkdir -p "$OUT" "$WORK"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, datasets; print(torch.__version__, transformers.__version__, datasets.__version__)"
BUDGETZ=${BUDGETZ:-330}
BUDGET9=${BUDGET9:-330}
python3 examples/zebra.py --out "$WORK/zebra" --device cuda --precision bf16 --time-budget-s "$BUDGETZ" --workers 4 \
  --threads 2 --n-train 5000 --n-test 250 > "$OUT/zebra.log" 2>&1 &
PZ=$!
python3 examples/sudoku.py --config examples/configs/sudoku-9x9.json --out "$WORK/s9" --device cuda --precision bf16 \
  --time-budget-s "$BUDGET9" --workers 8 --threads 2 --n-train 40000 --n-test 500 > "$OUT/s9.log" 2>&1 &
P9=$!
wait $PZ; echo "zebra exit $?"; wait $P9; echo "9x9 exit $?"
for run in zebra s9; do
  tar czf "$WORK/$run.tgz" -C "$WORK/$run" --exclude='stage1' --exclude='stage2' --exclude='baseline-*' . 2>/dev/null
done
for run in zebra s9; do split -b 15m "$WORK/$run.tgz" "$OUT/$run.tgz.part-"; done
tail -n 12 "$OUT/zebra.log" "$OUT/s9.log"
