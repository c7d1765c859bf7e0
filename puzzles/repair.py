"""How far from a solution can Glauber refinement still repair a grid? The reverse rounds started (`start="canvas"`)
from each puzzle's solution with a fraction q of its free cells set to a wrong value, instead of from the causal
draft: solved share and cell accuracy after N rounds, per q.

A draft with a fraction q of wrong cells is then read off the curve: where refinement from q = 0.5 no longer reaches
solutions, a draft half right cannot be rescued by more rounds of the same infill, whatever the draft's order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerFast

from modeling_glauber import GlauberT5ForDiffusion
from puzzles.evaluation import save_figure
from puzzles.metrics import evaluate_predictions
from puzzles.recipe import glauber_predictions


def corrupted_solutions(rows: Sequence[dict[str, Any]], fraction: float, seed: int = 0) -> list[list[str]]:
    """Each row's solution with round(`fraction` · free cells) of its free cells, drawn at random, set to another
    value of its solution (seeded by `seed` and the row's prompt, so a row's start does not depend on the rest of
    `rows` or its place among them)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1] (the share of free cells made wrong), got {fraction!r}")
    starts = []
    for row in rows:
        cells = row["canvas"].split()
        values = sorted(set(cells))
        rng = random.Random(f"{seed}:{row['prompt']}")
        free = [k for k, given in enumerate(row["frozen"]) if not given]
        for k in rng.sample(free, round(fraction * len(free))):
            cells[k] = rng.choice([v for v in values if v != cells[k]])
        starts.append(cells)
    return starts


def repair(model: GlauberT5ForDiffusion, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
           corruptions: Sequence[float], rounds: Sequence[int], batch_size: int = 256, mask_window: int | None = None,
           seed: int = 0, progress: bool = False) -> list[dict[str, Any]]:
    """One record per (q, N): greedy refinement with N rounds and mask window w (default: the config's) from
    `corrupted_solutions(rows, q, seed)`; N = 0 scores the start itself."""
    model.eval()
    records = []
    for fraction in corruptions:
        starts = corrupted_solutions(rows, fraction, seed)
        for num_rounds in rounds:
            predictions, _ = glauber_predictions(model, tokenizer, rows, num_rounds, batch_size, mask_window,
                                                 progress=progress, starts=starts)
            records.append({"corruption": fraction, "num_rounds": num_rounds, **evaluate_predictions(predictions, rows)})
    return records


def format_repair(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table: one row per q, solved % / cell accuracy % per N."""
    rounds = sorted({r["num_rounds"] for r in records})
    lines = ["| wrong free cells at the start | " + " | ".join(f"N = {n}: solved / cells %" for n in rounds) + " |",
             "|---" * (len(rounds) + 1) + "|"]
    for fraction in sorted({r["corruption"] for r in records}):
        by_rounds = {r["num_rounds"]: r for r in records if r["corruption"] == fraction}
        cells = [f"{100 * by_rounds[n]['solved']:.1f} / {100 * by_rounds[n]['cell_accuracy']:.1f}" for n in rounds]
        lines.append(f"| {100 * fraction:.0f} % | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_repair(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Solved % and cell accuracy % against the share of wrong free cells at the start, one line per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for n in sorted({r["num_rounds"] for r in records}):
        chosen = sorted((r for r in records if r["num_rounds"] == n), key=lambda r: r["corruption"])
        label = "the start (N = 0)" if n == 0 else f"Glauber N = {n}"
        for ax, metric in zip(axes, ("solved", "cell_accuracy")):
            ax.plot([100 * r["corruption"] for r in chosen], [100 * r[metric] for r in chosen], marker="o", label=label)
    for ax, metric in zip(axes, ("puzzles solved (%)", "free cells right (%)")):
        ax.set_xlabel("wrong free cells at the start (%)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)
