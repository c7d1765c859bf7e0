"""Metropolis refinement at small scale: a separately trained tiny causal judge as the energy.

A tiny Glauber model (N = 3) and two tiny GPT-2 judges are trained on the shipped corpus (no downloads): the
*energy judge* (seed 1) is the energy p_E of `metropolis_refine`, the *held-out judge* (seed 2, other initialisation
and batches) only scores. From the same drafts (same seeds), the table compares Glauber refinement N = 1 / 3 with
Metropolis rounds R = 1 … R_max for β ∈ {1, 1.5}: generative perplexity under both judges, unigram entropy, and the
cost per sample (Glauber-model calls: draft + infill; energy calls: judge forwards over the whole canvas). R rounds
cost the Glauber-model calls of N = R (equal model calls), plus up to R·L + 1 energy calls.

    python examples/metropolis_small_scale.py --out metropolis_small_scale

Writes `metropolis.json` (render with `glauber eval report`) and a PNG of gen-PPL and entropy vs rounds, and prints
the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from datasets import Dataset
from transformers import ByT5Tokenizer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eval.gen_ppl import generative_perplexity, sample_texts  # noqa: E402
from eval.loading import decode_canvas  # noqa: E402
from eval.report import write_result  # noqa: E402
from examples.eval_small_scale import PRINTABLE, glauber_model, train_glauber, train_judge  # noqa: E402
from modeling_glauber import CausalLMEnergy  # noqa: E402
from trainers import pack_text_dataset  # noqa: E402


def judge_both(texts: list[str], judges: dict, tokenizer) -> dict:
    row = {}
    for name, judge in judges.items():
        result = generative_perplexity(texts, judge, tokenizer, progress=False)
        row[f"{name}_gen_ppl"] = result.corpus_ppl
        row["unigram_entropy"] = result.unigram_entropy
    return row


def metropolis_rows(model, tokenizer, energy, judges, beta: float, rounds: int, length: int, num_samples: int) -> dict:
    """One chain of `rounds` rounds per sample (sample i seeded i, as `sample_texts`: the same drafts), judged after
    every round."""
    out = model.metropolis_refine(
        max_new_tokens=length, batch_size=num_samples, energy=energy, energy_beta=beta, num_rounds=rounds,
        seed=list(range(num_samples)), output_trajectory=True, return_dict_in_generate=True, progress=True,
    )
    rates = out.acceptance_rate.mean(dim=1).tolist()
    table = {}
    for r in range(rounds):
        texts = decode_canvas(tokenizer, out.trajectory[r + 1])
        table[f"MH beta={beta} R={r + 1}"] = {
            **judge_both(texts, judges, tokenizer),
            "glauber_calls_per_sample": length + (r + 1) * length,
            "energy_calls_per_sample_at_most": (r + 1) * length + 1,
            "acceptance_rate": rates[r],
            "example": texts[0],
        }
    table[f"MH beta={beta} R={rounds}"]["energy_calls_made"] = out.num_energy_calls
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="metropolis_small_scale")
    parser.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "data", "corpus.txt"))
    parser.add_argument("--text_steps", type=int, default=300)
    parser.add_argument("--judge_steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--num_samples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--betas", default="1,1.5")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = ByT5Tokenizer()
    clock = time.time()
    with open(args.corpus, encoding="utf-8") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    train_text = " ".join(lines[: int(0.9 * len(lines))])
    dataset = pack_text_dataset(Dataset.from_dict({"text": [train_text]}), tokenizer, canvas_length=args.length)
    model = train_glauber(glauber_model(tokenizer, PRINTABLE, 3, args.width, 0), tokenizer, dataset,
                          os.path.join(args.out, "glauber_run"), args.text_steps, 16, 2e-3)
    print(f"glauber model trained ({time.time() - clock:.0f} s)", flush=True)
    ids = tokenizer(train_text, add_special_tokens=False).input_ids
    seeds = {"energy_judge": 1, "heldout_judge": 2}
    judges = {name: train_judge(ids, 128, args.judge_steps, seed) for name, seed in seeds.items()}
    print(f"judges trained ({time.time() - clock:.0f} s)", flush=True)
    energy = CausalLMEnergy(judges["energy_judge"], tokenizer=tokenizer, canvas_tokenizer=tokenizer)

    table = {}
    for rounds in (0, 1, 3):
        texts, calls = sample_texts(model, tokenizer, num_samples=args.num_samples, length=args.length,
                                    num_rounds=rounds, batch_size=args.num_samples, seed=0, progress=False)
        name = "draft (N=0)" if rounds == 0 else f"Glauber N={rounds}"
        table[name] = {**judge_both(texts, judges, tokenizer), "glauber_calls_per_sample": calls,
                       "energy_calls_per_sample_at_most": 0, "example": texts[0]}
    print(f"glauber samples judged ({time.time() - clock:.0f} s)", flush=True)
    for beta in (float(b) for b in args.betas.split(",")):
        table.update(metropolis_rows(model, tokenizer, energy, judges, beta, args.rounds, args.length,
                                     args.num_samples))
        print(f"beta={beta} done ({time.time() - clock:.0f} s)", flush=True)

    print("\n| method | Glauber calls | energy calls (≤) | gen-PPL energy judge | gen-PPL held-out judge | entropy | "
          "acceptance |")
    print("|---|---|---|---|---|---|---|")
    for name, row in table.items():
        acceptance = f"{row['acceptance_rate']:.3f}" if "acceptance_rate" in row else "-"
        print(f"| {name} | {row['glauber_calls_per_sample']} | {row['energy_calls_per_sample_at_most']} | "
              f"{row['energy_judge_gen_ppl']:.2f} | {row['heldout_judge_gen_ppl']:.2f} | "
              f"{row['unigram_entropy']:.3f} | {acceptance} |")
    for name, row in table.items():
        print(f"{name}: {row['example']!r}")
    config = {**vars(args), "aggregation": "corpus exp(mean NLL); unigram entropy in nats, mean over samples"}
    write_result(os.path.join(args.out, "metropolis.json"), "metropolis_small_scale", config, table)
    plot(table, os.path.join(args.out, "metropolis.png"))
    print(f"\ntotal {time.time() - clock:.0f} s")


def plot(table: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[str, list[tuple[int, dict]]] = {}
    for name, row in table.items():
        key = name.rsplit(" R=", 1)[0] if name.startswith("MH") else "Glauber"
        series.setdefault(key, []).append((row["glauber_calls_per_sample"], row))
    for key, points in series.items():
        points.sort(key=lambda point: point[0])
        calls = [point[0] for point in points]
        axes[0].plot(calls, [p[1]["heldout_judge_gen_ppl"] for p in points], "o-", label=f"{key} (held-out judge)")
        axes[0].plot(calls, [p[1]["energy_judge_gen_ppl"] for p in points], "x--", label=f"{key} (energy judge)")
        axes[1].plot(calls, [p[1]["unigram_entropy"] for p in points], "o-", label=key)
    axes[0].set(xlabel="Glauber-model calls per sample", ylabel="generative perplexity", title="gen-PPL")
    axes[1].set(xlabel="Glauber-model calls per sample", ylabel="unigram entropy (nats)", title="entropy")
    for axis in axes:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path + ".tmp.png", dpi=120)
    os.replace(path + ".tmp.png", path)


if __name__ == "__main__":
    main()
