"""Evaluation harness: every method decodes the same rows; solved % (95 % Wilson CI), cell accuracy, model calls.

A method is a callable `rows -> (predicted canvases, batched model calls per puzzle)`; the table and the plot
(accuracy vs N and vs model calls) are built from the resulting records.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from puzzles.files import staged_file, write_text_atomic
from puzzles.metrics import evaluate_predictions, is_solved

Method = Callable[[list[dict[str, Any]]], tuple[list[list[str]], int]]


def run_method(name: str, method: Method, rows: list[dict[str, Any]], num_rounds: int | None = None) -> dict[str, Any]:
    """One record: metrics of `method` on `rows`, its cost, and which rows it solved (for draft-vs-refined counts)."""
    started = time.perf_counter()
    predictions, calls = method(rows)
    seconds = time.perf_counter() - started
    return {
        "method": name,
        "num_rounds": num_rounds,
        "model_calls": calls,
        "seconds": round(seconds, 2),
        **evaluate_predictions(predictions, rows),
        "solved_rows": [bool(is_solved(p, r)) for p, r in zip(predictions, rows)],
    }


def fixes(draft: dict[str, Any], refined: dict[str, Any]) -> dict[str, int]:
    """How many of the draft's failures the refined method solves (`fixed`), and the reverse (`broken`)."""
    pairs = list(zip(draft["solved_rows"], refined["solved_rows"]))
    return {
        "draft_failures": sum(not d for d, _ in pairs),
        "fixed": sum((not d) and r for d, r in pairs),
        "broken": sum(d and not r for d, r in pairs),
    }


def format_table(records: Sequence[dict[str, Any]], draft_name: str | None = None) -> str:
    """Markdown table; with `draft_name`, a column of draft failures each row fixes."""
    draft = next((r for r in records if r["method"] == draft_name), None)
    head = "| method | solved % (95% CI) | cell acc. % | model calls | seconds |"
    rule = "|---|---|---|---|---|"
    if draft is not None:
        head += " draft failures fixed |"
        rule += "---|"
    lines = [head, rule]
    for r in records:
        line = (
            f"| {r['method']} | {100 * r['solved']:.1f} ({100 * r['solved_ci_low']:.1f}–{100 * r['solved_ci_high']:.1f})"
            f" | {100 * r['cell_accuracy']:.1f} | {r['model_calls']} | {r['seconds']:.1f} |"
        )
        if draft is not None:
            f = fixes(draft, r)
            line += f" {f['fixed']}/{f['draft_failures']} |" if r is not draft else " – |"
        lines.append(line)
    return "\n".join(lines)


def save_figure(fig, path: str | Path, title: str = "") -> Path:
    """Title, lay out and write `fig` as a PNG at `path` (parents created, `staged_file`), then free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    try:
        with staged_file(path) as staged:
            fig.savefig(staged, dpi=120, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def plot_results(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Solved % vs model calls (every method) and, when there are Glauber records, solved % vs N (Glauber rounds),
    with 95 % CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    glauber = sorted((r for r in records if r["num_rounds"] is not None), key=lambda r: r["num_rounds"])
    fig, axes = plt.subplots(1, 2 if glauber else 1, figsize=(10 if glauber else 5.5, 4), squeeze=False)
    by_calls = axes[0, -1]

    def errors(rs):
        return [[100 * (r["solved"] - r["solved_ci_low"]) for r in rs], [100 * (r["solved_ci_high"] - r["solved"]) for r in rs]]

    if glauber:
        by_n = axes[0, 0]
        by_n.errorbar([r["num_rounds"] for r in glauber], [100 * r["solved"] for r in glauber], yerr=errors(glauber),
                      marker="o", capsize=3, label="Glauber (N = 0 is the causal draft)")
        by_calls.errorbar([r["model_calls"] for r in glauber], [100 * r["solved"] for r in glauber],
                          yerr=errors(glauber), marker="o", capsize=3, label="Glauber N = 0…")
        by_n.set_xlabel("Glauber rounds N")
        by_n.set_xticks([r["num_rounds"] for r in glauber])
    baselines = [r for r in records if r["num_rounds"] is None]
    for r, marker in zip(baselines, itertools.cycle("s^Dv")):  # hollow and distinct: equal results stay visible
        by_calls.errorbar([r["model_calls"]], [100 * r["solved"]], yerr=errors([r]), marker=marker, markersize=8,
                          markerfacecolor="none", markeredgewidth=1.5, capsize=3, linestyle="none", label=r["method"])
    by_calls.set_xlabel("batched model calls per puzzle")
    for ax in axes[0]:
        ax.set_ylabel("puzzles solved (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def plot_learning_curve(stages: Sequence[tuple[str, dict[str, Any]]], points: Sequence[dict[str, Any]],
                        num_rounds: int, path: str | Path, title: str = "") -> Path:
    """Two panels against the training step (stages one after another): the logged training loss of each stage
    (`stages`: name and `_run` summary), and solved % / cell accuracy of the draft and of N = `num_rounds` at the
    `LearningCurve` points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, solve_ax) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for name, summary in stages:
        steps = summary.get("loss_steps", [])
        if steps:
            loss_ax.plot([offset + s for s in steps], summary["losses"], marker=".", label=f"{name} loss")
        offset += summary.get("steps", 0)
    steps = [p["step"] for p in points]
    for rounds, label in ((0, "causal draft"), (num_rounds, f"Glauber N = {num_rounds}")):
        line, = solve_ax.plot(steps, [100 * p[f"solved_n{rounds}"] for p in points], marker="o",
                              label=f"{label}: solved")
        solve_ax.plot(steps, [100 * p[f"cell_accuracy_n{rounds}"] for p in points], linestyle="--",
                      color=line.get_color(), label=f"{label}: cell accuracy")
    loss_ax.set_ylabel("training loss (nats per scored cell)")
    solve_ax.set_ylabel(f"% of {points[0]['puzzles']} held-out puzzles" if points else "%")
    for ax in (loss_ax, solve_ax):
        ax.set_xlabel("optimiser step (stage 2 after stage 1)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run shorter than one logging interval has no loss to label
            ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def chain_learning_curves(runs: Sequence[tuple[str, dict[str, Any]]]
                          ) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]], int]:
    """One learning curve for a run and the runs that continue it (`--init-from`), given in order as (name,
    results.json): each run's stages and `LearningCurve` points shifted by the steps of the runs before it, so the
    x axis counts optimiser steps from the first run's start. Returns `plot_learning_curve`'s stages, points and N."""
    stages: list[tuple[str, dict[str, Any]]] = []
    points: list[dict[str, Any]] = []
    num_rounds = None
    offset = 0
    for name, summary in runs:
        if not summary.get("learning_curve"):
            raise ValueError(f"run {name}: its results.json has no learning_curve (a run with curve_every > 0)")
        rounds = summary["config"]["num_rounds"]
        if num_rounds is not None and rounds != num_rounds:
            raise ValueError(f"run {name}: num_rounds {rounds}, but the runs before it have {num_rounds}; a chained "
                             "curve plots one N")
        num_rounds = rounds
        points += [{**p, "step": offset + p["step"]} for p in summary["learning_curve"]]
        for key, label in (("stage1", "stage 1"), ("stage2", "stage 2")):
            stage = summary.get(key, {})
            stages.append((f"{name} {label}", stage))
            offset += stage.get("steps", 0)
    if num_rounds is None:
        raise ValueError("no runs to chain")
    return stages, points, num_rounds


def write_results(records: Sequence[dict[str, Any]], path: str | Path, **extra: Any) -> Path:
    """JSON of every record (per-row solved flags dropped) plus `extra` fields (config, timings, machine)."""
    slim = [{k: v for k, v in r.items() if k != "solved_rows"} for r in records]
    return write_text_atomic(path, json.dumps({**extra, "results": slim}, indent=2))
