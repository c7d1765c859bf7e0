"""Result files and reports: every evaluator writes one JSON file and prints a table; `glauber eval report` turns
result files (these, or lm-eval's `results_*.json`) into a Markdown table and a PNG plot."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def write_result(path: str | os.PathLike, evaluator: str, config: dict, metrics: dict) -> dict:
    """Write `{"evaluator", "config", "metrics"}` to `path` and print the metrics as a table."""
    payload = {"evaluator": evaluator, "config": config, "metrics": metrics}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    staged = f"{path}.partial"
    with open(staged, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(staged, path)
    print(f"\n{evaluator}\n| metric | value |\n|---|---|")
    for key, value in _scalars(metrics).items():
        print(f"| {key} | {_format(value)} |")
    return payload


def _scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Flatten nested metrics to `a/b` keys, keeping numbers only (lists such as per-sample values are dropped)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_scalars(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def load_result(path: str | os.PathLike) -> tuple[str, dict[str, float]]:
    """`(label, metrics)` of one result file; lm-eval files contribute `task/metric` keys from `results`."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if "results" in data:  # lm-eval
        label = str(data.get("model_name") or data.get("config", {}).get("model_args") or Path(path).stem)
        metrics = {
            f"{task}/{metric.split(',')[0]}": float(value)
            for task, values in data["results"].items()
            for metric, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in metric
        }
        return label, metrics
    if "metrics" not in data:
        raise ValueError(f"{path}: neither a glauber result file (no 'metrics') nor an lm-eval one (no 'results')")
    label = data.get("config", {}).get("label") or f"{data.get('evaluator', 'result')}:{Path(path).stem}"
    return label, _scalars(data["metrics"])


def render_markdown(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per result, one column per metric (blank where a result lacks it)."""
    columns = sorted({key for metrics in rows.values() for key in metrics})
    lines = ["| result | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label, metrics in rows.items():
        cells = [_format(metrics[c]) if c in metrics else "" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def plot(rows: dict[str, dict[str, float]], path: str | os.PathLike) -> None:
    """Grouped bars: one panel per metric, one bar per result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = sorted({key for metrics in rows.values() for key in metrics})
    fig, axes = plt.subplots(1, max(1, len(columns)), figsize=(3.2 * max(1, len(columns)), 3.2), squeeze=False)
    labels = list(rows)
    for ax, column in zip(axes[0], columns):
        values = [rows[label].get(column, float("nan")) for label in labels]
        ax.bar(range(len(labels)), values, color=[f"C{i % 10}" for i in range(len(labels))])
        ax.set_title(column, fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(paths: list[str], out_dir: str | os.PathLike = "eval_report") -> tuple[str, Path, Path]:
    """Write `report.md` and `report.png` into `out_dir` from result files; returns (markdown, md path, png path)."""
    rows: dict[str, dict[str, float]] = {}
    for path in paths:
        label, metrics = load_result(path)
        while label in rows:
            label += "'"
        rows[label] = metrics
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(rows)
    (out / "report.md").write_text(markdown + "\n", encoding="utf-8")
    plot(rows, out / "report.png")
    return markdown, out / "report.md", out / "report.png"


__all__ = ["load_result", "plot", "render_markdown", "report", "write_result"]
