"""Puzzle benchmark: the full recipe plus every baseline in one harness, with the command and machine recorded.

Trains the Glauber model (stage 1 + stage 2), the masked-diffusion model (Top-K probability / margin decoding) and
the AR-in-solver-order model on the same generated data, evaluates Glauber N = 0 … 3 and the baselines on the
same held-out puzzles, and writes results.json (with `command`), results.md and results.png to `--out`.

    python benchmarks/bench_puzzles.py --config examples/configs/sudoku-4x4.json --out runs/bench-sudoku4 --threads 1
    python benchmarks/bench_puzzles.py --config examples/configs/sudoku-9x9.json --out runs/bench-sudoku9 \
        --device cuda --precision bf16 --time-budget-s 480 --baseline-steps 4000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from puzzles.files import write_text_atomic  # noqa: E402
from puzzles.run import add_run_arguments, run  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                                           "configs", "sudoku-4x4.json"))
    args = parser.parse_args()
    args.baselines = True
    run(args)
    results = Path(args.out) / "results.json"
    record = json.loads(results.read_text())
    record["command"] = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    write_text_atomic(results, json.dumps(record, indent=2))
