"""Zebra recipe: data → stage 1 (puzzle UL2) → stage 2 (Glauber trainer, N = 3, mask window 1) → evaluation → checkpoint.

    python examples/zebra.py --config examples/configs/zebra.json --out runs/zebra \
        --device cuda --precision bf16 --time-budget-s 480

Without `--data` the puzzles are generated inside the run. `--out` receives `model/` (weights + tokenizer),
`results.json`, `results.md` and `results.png`; with the baselines also `baseline-mdm/model/` and `baseline-ar/model/`.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from puzzles.run import add_run_arguments, run  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "zebra.json"))
    run(parser.parse_args())
