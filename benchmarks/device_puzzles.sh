#!/usr/bin/env bash
# One prepared GPU run (H100/H200, ~9 min): the 4×4 demo checkpoint and the 9×9 Sudoku recipe, side by side on
# one GPU. Writes to $OUT (or ./runs/device): logs, results (JSON/Markdown/PNG) and the checkpoints as tarballs.
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
BUDGET4=${BUDGET4:-330}
BUDGET9=${BUDGET9:-330}
python3 examples/sudoku.py --config examples/configs/sudoku-4x4-gpu.json --out "$WORK/s4" --device cuda \
  --time-budget-s "$BUDGET4" --workers 4 --threads 2 > "$OUT/s4.log" 2>&1 &
P4=$!
python3 examples/sudoku.py --config examples/configs/sudoku-9x9.json --out "$WORK/s9" --device cuda --precision bf16 \
  --time-budget-s "$BUDGET9" --workers 12 --threads 2 --n-train 40000 --n-test 500 > "$OUT/s9.log" 2>&1 &
P9=$!
wait $P4; echo "4x4 exit $?"; wait $P9; echo "9x9 exit $?"
python3 -c "
from puzzles.recipe import load_model; from puzzles.run import load_rows, save_demo_asset
save_demo_asset(*load_model('$WORK/s4/model'), load_rows('$WORK/s4/test.jsonl'), '$WORK/asset-4x4')" || true
for run in s4 s9; do
  tar czf "$WORK/$run.tgz" -C "$WORK/$run" --exclude='stage1' --exclude='stage2' --exclude='baseline-*' . 2>/dev/null
done
tar czf "$OUT/asset-4x4.tgz" -C "$WORK" asset-4x4 2>/dev/null
cp "$WORK/s4.tgz" "$OUT/"
split -b 15m "$WORK/s9.tgz" "$OUT/s9.tgz.part-"
tail -n 12 "$OUT/s4.log" "$OUT/s9.log"
