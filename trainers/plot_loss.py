"""Plot the logged DWDSE loss per τ bucket: `python -m trainers.plot_loss <output_dir> [--out loss_vs_tau.png]`.

Reads `trainer_state.json` (the output folder's, else its latest checkpoint's) and draws one curve per logged window
of the run (first, middle, last quarter), so the loss at each diffusion time can be followed during training.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re


def load_log_history(output_dir: str) -> list[dict]:
    path = os.path.join(output_dir, "trainer_state.json")
    if not os.path.isfile(path):
        checkpoints = sorted(glob.glob(os.path.join(output_dir, "checkpoint-*", "trainer_state.json")),
                             key=lambda p: int(re.search(r"checkpoint-(\d+)", p).group(1)))
        if not checkpoints:
            raise FileNotFoundError(f"no trainer_state.json in {output_dir} or its checkpoints")
        path = checkpoints[-1]
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["log_history"]


def loss_by_tau(entries: list[dict]) -> tuple[list[float], list[float]]:
    """Mean loss per τ bucket over `entries`, as (bucket centres, losses)."""
    sums: dict[tuple[float, float], list[float]] = {}
    for entry in entries:
        for key, value in entry.items():
            match = re.fullmatch(r"loss_tau_([\d.]+)_([\d.]+)", key)
            if match:
                sums.setdefault((float(match.group(1)), float(match.group(2))), []).append(value)
    buckets = sorted(sums)
    return [(lo + hi) / 2 for lo, hi in buckets], [sum(sums[b]) / len(sums[b]) for b in buckets]


def plot(output_dir: str, out: str | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [e for e in load_log_history(output_dir) if any(k.startswith("loss_tau_") for k in e)]
    if not logs:
        raise ValueError(f"{output_dir} has no loss_tau_* logs (train with GlauberTrainer and logging_steps > 0)")
    quarter = max(1, len(logs) // 4)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, part in (("first quarter", logs[:quarter]), ("last quarter", logs[-quarter:])):
        taus, losses = loss_by_tau(part)
        steps = f"steps {part[0]['step']}-{part[-1]['step']}"
        ax.plot(taus, losses, marker="o", label=f"{name} ({steps})")
    ax.set_xlabel("τ = t / T")
    ax.set_ylabel("DWDSE loss (nats)")
    ax.set_title("Glauber SEDD loss vs diffusion time")
    ax.legend()
    out = out or os.path.join(output_dir, "loss_vs_tau.png")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="loss vs τ plot from GlauberTrainer logs")
    parser.add_argument("output_dir")
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    try:
        print(plot(a.output_dir, a.out))
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
