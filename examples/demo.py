"""The embedded default job (`make demo`): Glauber refinement fixing the causal draft on held-out Sudoku.

    make demo                       # load the shipped 4×4 checkpoint (assets/sudoku-4x4), solve its held-out set
    make demo ARGS="--size 6"       # the same with the shipped 6×6 checkpoint (assets/sudoku-6x6)
    make demo ARGS=--train          # regenerate the data, retrain stage 1 + stage 2 on CPU, evaluate the same way

Prints draft (N = 0) vs Glauber N = 1 vs N = 3: puzzles solved (95 % Wilson CI), cell accuracy, batched model calls,
and how many of the draft's failures refinement fixes; writes results.json / results.md / results.png to `--out`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from puzzles.evaluation import fixes, format_table, plot_results, write_results  # noqa: E402
from puzzles.recipe import load_model  # noqa: E402
from puzzles.run import add_run_arguments, evaluate_glauber, load_rows, run, save_demo_asset  # noqa: E402

SIZES = (4, 6)
ROUNDS = [0, 1, 3]


def shipped(size: int) -> tuple[str, str]:
    """The shipped checkpoint of a Sudoku side and the recipe config that makes it."""
    name = f"sudoku-{size}x{size}"
    return os.path.join(ROOT, "assets", name), os.path.join(ROOT, "examples", "configs", f"{name}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, choices=SIZES, default=4, help="Sudoku side: 4 (default) or 6")
    parser.add_argument("--train", action="store_true", help="retrain the demo model from scratch on CPU first")
    parser.add_argument("--model", help="checkpoint dir (with tokenizer and test.jsonl); default: the shipped one")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "demo"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 with --train, which is how the "
                        "shipped checkpoint was made: the thread count changes the summation order and so the trained "
                        "model; else up to 2)")
    parser.add_argument("--export-asset", help="with --train: also write the fp16 demo checkpoint to this dir")
    args = parser.parse_args()
    if args.threads is None:
        args.threads = 1 if args.train else min(2, torch.get_num_threads())
    torch.set_num_threads(args.threads)
    asset, config = shipped(args.size)
    model_dir = args.model or asset
    rows_file = os.path.join(model_dir, "test.jsonl")
    if args.train:
        # the recipe's own argument parser, so the demo runs exactly what `examples/sudoku.py --config CONFIG` runs
        recipe = argparse.ArgumentParser()
        add_run_arguments(recipe, config)
        run_args = recipe.parse_args(["--out", os.path.join(args.out, "train"), "--device", "cpu",
                                      "--threads", str(args.threads)])
        run(run_args)
        # the config's test split: the same puzzles as the shipped test.jsonl (the generator is seeded)
        model_dir, rows_file = os.path.join(run_args.out, "model"), os.path.join(run_args.out, "test.jsonl")
        if args.export_asset:
            save_demo_asset(*load_model(model_dir), load_rows(rows_file), args.export_asset)
    rows = load_rows(rows_file)
    started = time.perf_counter()
    model, tokenizer = load_model(model_dir)
    records = evaluate_glauber(model, tokenizer, rows, ROUNDS, batch_size=len(rows))
    table = format_table(records, records[0]["method"])
    final = fixes(records[0], records[-1])
    os.makedirs(args.out, exist_ok=True)
    write_results(records, os.path.join(args.out, "results.json"), model=model_dir, draft_vs_final=final)
    title = f"{args.size}×{args.size} Sudoku"
    plot_results(records, os.path.join(args.out, "results.png"), f"{title}, held-out set")
    print(f"\n{title}, {len(rows)} held-out puzzles, model {model_dir}\n")
    print(table)
    print(f"\nGlauber N=3 fixes {final['fixed']} of the draft's {final['draft_failures']} failures "
          f"(breaks {final['broken']}); evaluated in {time.perf_counter() - started:.0f} s; plot: {args.out}/results.png")


if __name__ == "__main__":
    main()
