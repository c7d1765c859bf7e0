"""Exact total variation on an enumerable toy for trainer settings: does a setting keep the sampler exact?

A known law over |Σ| = 3 tokens and L = 4 (81 canvases). For each setting a tiny random T5 is trained with
`GlauberTrainer` (nothing but the setting's arguments differs between runs), then every law is computed exactly by
enumeration (`eval.bound.exact_toy_laws`), with no sampling error:

- draft TV: the draft (CAUSAL-GEN) law against the data,
- refined TV: `generate`'s output law (temperature 1, all N rounds) against the data,
- draft vs p_T: the draft law against p_T, the data run through N sweeps of the trained reference's noising chain
  (DESIGN §5: the reverse chain is exact only if it starts at p_T).

    python examples/toy_tv.py --steps 400 --num_rounds 1
    python examples/toy_tv.py --settings "old defaults" "new defaults"

`--update_blocks 1 2 4` adds the refined TV of parallel Glauber (`generate(..., update_block=m)`, DESIGN §8) for
every m and every number of rounds N' ≤ N, with the refinement calls each costs, so that m > 1 can be compared with
m = 1 at equal calls (e.g. m = 2 over N' = 2 rounds against m = 1 over N' = 1).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from datasets import Dataset
from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

from eval.bound import exact_forward_marginal, exact_toy_laws
from modeling_glauber import GlauberT5ForDiffusion
from trainers import GlauberTrainer, GlauberTrainingArguments

CONTENT = [100, 101, 102]  # ByT5 ids of "a", "b", "c"
LAW = {"abca": 0.3, "bcab": 0.25, "cabc": 0.15, "aabb": 0.12, "ccab": 0.1, "bbbc": 0.08}
OLD_DEFAULTS = dict(causal_loss_weight=0.0, causal_loss_target="data", reference_update_steps=500,
                    reference_ema_decay=0.999)
SETTINGS = {
    "old defaults": OLD_DEFAULTS,
    "new defaults": {},
    "data target": dict(causal_loss_weight=1.0, causal_loss_target="data"),
    "chain target": dict(causal_loss_weight=1.0, causal_loss_target="chain"),
    "chain, reference (500, 0.999)": dict(reference_update_steps=500, reference_ema_decay=0.999),
    "chain, reference (10, 0.9)": dict(reference_update_steps=10, reference_ema_decay=0.9),
    "chain, reference (10, 0.5)": dict(reference_update_steps=10, reference_ema_decay=0.5),
}


def toy_model(num_rounds: int, seed: int = 0) -> GlauberT5ForDiffusion:
    torch.manual_seed(seed)
    backbone = T5ForConditionalGeneration(T5Config(vocab_size=384, d_model=32, num_layers=2, num_heads=2, d_kv=16,
                                                   d_ff=64, decoder_start_token_id=0, dropout_rate=0.0))
    model = GlauberT5ForDiffusion.from_backbone(backbone, ByT5Tokenizer(), num_rounds=num_rounds,
                                                time_frequency_dim=16, time_embedding_dim=16)
    model.restrict_canvas_vocabulary(CONTENT)
    return model


def toy_dataset(rows: int, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    words = list(LAW)
    picks = torch.multinomial(torch.tensor(list(LAW.values())), rows, replacement=True, generator=g).tolist()
    canvases = [[ord(c) + 3 for c in words[i]] for i in picks]
    return Dataset.from_dict({"input_ids": [[] for _ in canvases], "canvas_ids": canvases})


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def measure(setting: dict, num_rounds: int, steps: int, batch: int, lr: float, seed: int,
            update_blocks: tuple[int, ...] = ()) -> dict:
    model = toy_model(num_rounds, seed)
    length = len(next(iter(LAW)))
    with tempfile.TemporaryDirectory() as out:
        args = GlauberTrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr, warmup_steps=10,
            timesteps_per_chain=num_rounds * length, use_cpu=True, report_to="none", save_strategy="no",
            logging_steps=max(1, steps // 4), disable_tqdm=True, seed=seed, **setting,
        )
        started = time.perf_counter()
        trainer = GlauberTrainer(model=model, args=args, train_dataset=toy_dataset(2048, seed))
        trainer.train()
        seconds = time.perf_counter() - started
    model.eval()
    prefix = model.build_prefix(None, batch_size=1)
    laws = exact_toy_laws(model, prefix, length, CONTENT)
    data = torch.tensor([LAW.get("".join(chr(v - 3) for v in row), 0.0) for row in laws.states.tolist()],
                        dtype=torch.float64)
    with trainer.reference.kernel() as reference:
        p_T = exact_forward_marginal(reference, prefix, laws.states, data)
    parallel = []
    for m in update_blocks:
        for rounds in range(1, num_rounds + 1):
            generated = exact_toy_laws(model, prefix, length, CONTENT, num_rounds=rounds, update_block=m).generated
            parallel.append({"update_block": m, "rounds": rounds, "refine_calls": rounds * -(-length // m),
                             "refined_tv": total_variation(generated, data)})
    return {"draft_tv": total_variation(laws.draft, data), "refined_tv": total_variation(laws.generated, data),
            "draft_vs_p_T": total_variation(laws.draft, p_T), "p_T_tv": total_variation(p_T, data),
            "train_seconds": round(seconds, 1), "parallel": parallel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--num_rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update_blocks", type=int, nargs="*", default=[],
                        help="also the refined TV of update_block m for each m, at every N' <= N rounds")
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    print(f"N = {args.num_rounds}, {args.steps} steps of batch {args.batch}, lr {args.lr}, seed {args.seed}")
    print("| setting | draft TV | refined TV | draft vs p_T | p_T vs data | train s |\n|---|---|---|---|---|---|")
    for name in args.settings:
        row = measure(SETTINGS[name], args.num_rounds, args.steps, args.batch, args.lr, args.seed,
                      tuple(args.update_blocks))
        results[name] = row
        print(f"| {name} | {row['draft_tv']:.3f} | {row['refined_tv']:.3f} | {row['draft_vs_p_T']:.3f} | "
              f"{row['p_T_tv']:.3f} | {row['train_seconds']} |", flush=True)
    if args.update_blocks:
        print("\n| setting | update_block m | rounds N' | refinement calls | refined TV |\n|---|---|---|---|---|")
        for name, row in results.items():
            for r in row["parallel"]:
                print(f"| {name} | {r['update_block']} | {r['rounds']} | {r['refine_calls']} | {r['refined_tv']:.3f} |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        staged = args.out + ".partial"
        with open(staged, "w", encoding="utf-8") as handle:
            json.dump({"config": vars(args), "law": LAW, "results": results}, handle, indent=2)
        os.replace(staged, args.out)


if __name__ == "__main__":
    main()
