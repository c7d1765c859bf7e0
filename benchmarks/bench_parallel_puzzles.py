"""Parallel Glauber on a shipped puzzle checkpoint: solve rate against update_block m, at the calls each costs.

Greedy reverse process (as the puzzle evaluation decodes) on the checkpoint's held-out rows for every
(rounds N', update_block m) pair; m = 1 is the exact single-site sampler, m > 1 updates m cells per call (DESIGN §8).
A row (N', m) and a row (N'', 1) with the same refinement calls compare the two at equal calls; the FLOPs of a call
grow only by the decoder's extra rows.

    python benchmarks/bench_parallel_puzzles.py --checkpoint assets/sudoku-4x4 --update-blocks 1,2,4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from puzzles.metrics import evaluate_predictions  # noqa: E402
from puzzles.recipe import glauber_predictions, load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="assets/sudoku-4x4")
    parser.add_argument("--rows", type=int, default=None, help="first N held-out rows (default: all)")
    parser.add_argument("--update-blocks", default="1,2,4")
    parser.add_argument("--mask-window", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.checkpoint)
    lines = (Path(args.checkpoint) / "test.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[: args.rows]]
    print(f"{args.checkpoint}: {len(rows)} rows, num_rounds N = {model.config.num_rounds}, mask_window = "
          f"{args.mask_window or model.config.mask_window}, threads = {torch.get_num_threads()}")
    print("| rounds N' | update_block m | model calls per puzzle | solved % | cell accuracy % | seconds |")
    print("|---|---|---|---|---|---|")
    for rounds in range(0, model.config.num_rounds + 1):
        for m in [int(b) for b in args.update_blocks.split(",")] if rounds else [1]:
            started = time.perf_counter()
            predictions, calls = glauber_predictions(model, tokenizer, rows, rounds, mask_window=args.mask_window,
                                                     update_block=m)
            metrics = evaluate_predictions(predictions, rows)
            print(f"| {rounds} | {m} | {calls} | {100 * metrics['solved']:.1f} | "
                  f"{100 * metrics['cell_accuracy']:.1f} | {time.perf_counter() - started:.1f} |", flush=True)


if __name__ == "__main__":
    main()
