"""Stage-1 training throughput of a puzzle recipe against the same recipe with the previous puzzle encoding.

The previous encoding is the recipe with `PREVIOUS_ENCODING` applied: the MASK-INFILL reads the puzzle prompt, the
canvas and one index word `@k` per cell (`canvas_index`), with no factor tables nor what rests on them (given marker,
prompt positions, peer biases, the cell named in the infill decoder), trained with one forward of the whole batch
(`model(**inputs).loss`). The config is measured with that one forward, with `stage1_loss` (what `train_stage1`
runs: S-task and R-task rows in separate forwards, so the R-task decoders are not padded to a whole canvas) and,
with `--bf16`, with `stage1_loss` under bf16 autocast (what `--precision bf16` of `examples/sudoku.py` trains with;
whether it pays depends on the CPU's bf16 matrix units). The models have the config's size; they train in
alternating rounds of `--steps` stage-1 steps (collate, forward, backward, optimiser step), so machine noise falls
on all alike. Prints a table of puzzle rows per second, encoder tokens per row and the ratio to the previous
encoding.

    python benchmarks/bench_stage1.py --config examples/configs/sudoku-9x9-cpu.json --threads 1 --bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from puzzles import data  # noqa: E402
from puzzles.recipe import RecipeConfig, build_model, build_tokenizer, stage1_collator, stage1_loss, tokenized  # noqa: E402

PREVIOUS_ENCODING = dict(canvas_factors=False, given_embedding=False, infill_prompt=True, prompt_positions=False,
                         canvas_index=True, augment=False, peer_attention=False, peer_attention_decoder=False,
                         infill_decoder_positions=False)


def one_forward_loss(model, inputs) -> torch.Tensor:
    return model(**inputs).loss


def trainer_parts(cfg: RecipeConfig, rows, loss=stage1_loss):
    """Model, collator, optimiser, tokenized rows and loss of one recipe, as `train_stage1` builds them."""
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok).train()
    train = tokenized(rows, tok)
    collator = stage1_collator(model, cfg, train)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.stage1_lr)
    return model, collator, optimiser, train, loss


def timed_steps(parts, batch: int, steps: int, offset: int, bf16: bool = False) -> tuple[float, float]:
    """Seconds for `steps` stage-1 steps and the mean encoder tokens per example."""
    model, collator, optimiser, train, loss = parts
    tokens = []
    started = time.perf_counter()
    for step in range(steps):
        first = (offset + step) * batch % (len(train) - batch)
        inputs = collator([train[i] for i in range(first, first + batch)])
        tokens.append(float(inputs["attention_mask"].sum(1).float().mean()))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss(model, inputs)
        value.backward()
        optimiser.step()
        optimiser.zero_grad()
    return time.perf_counter() - started, statistics.mean(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="examples/configs/sudoku-9x9-cpu.json")
    parser.add_argument("--steps", type=int, default=5, help="stage-1 steps per round and recipe")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (the first is warm-up, unreported)")
    parser.add_argument("--batch", type=int, help="puzzle rows per step (default: the config's stage1_batch)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also time the config's stage1_loss under bf16 autocast")
    args = parser.parse_args()
    if args.rounds < 2 or args.steps < 1:
        parser.error("--rounds must be >= 2 (one warm-up round) and --steps >= 1")
    torch.set_num_threads(args.threads)
    cfg = RecipeConfig.load(args.config)
    previous = dataclasses.replace(cfg, **PREVIOUS_ENCODING)
    batch = args.batch or cfg.stage1_batch
    rows = data.build_sudoku(cfg.size, 4 * batch, 1, cfg.seed, workers=1, progress=False)[0]["train"]
    torch.manual_seed(0)
    # name → (model, collator, optimiser, rows, loss; whether the steps run under bf16 autocast)
    recipes = {"previous encoding": (trainer_parts(previous, rows, one_forward_loss), False),
               "config, one forward": (trainer_parts(cfg, rows, one_forward_loss), False),
               "config, stage1_loss": (trainer_parts(cfg, rows), False)}
    if args.bf16:
        recipes["config, stage1_loss, bf16 autocast"] = (trainer_parts(cfg, rows), True)
    seconds = {name: [] for name in recipes}
    tokens = {}
    with tqdm(total=args.rounds * len(recipes), desc="stage-1 rounds") as bar:
        for r in range(args.rounds):
            for name, (parts, bf16) in recipes.items():
                elapsed, tokens[name] = timed_steps(parts, batch, args.steps, r * args.steps, bf16)
                if r:  # round 0 warms up allocators and caches
                    seconds[name].append(elapsed)
                bar.update(1)
    rate = {name: args.steps * batch / statistics.median(s) for name, s in seconds.items()}
    print(f"\n{args.config}: {cfg.size}x{cfg.size}, stage-1 batch {batch}, {args.steps} steps x {args.rounds - 1} "
          f"rounds, {args.threads} thread(s), median round")
    print("| recipe | puzzle rows/s | encoder tokens / example | ratio |")
    print("|---|---|---|---|")
    for name in recipes:
        print(f"| {name} | {rate[name]:.1f} | {tokens[name]:.0f} | {rate[name] / rate['previous encoding']:.2f} |")


if __name__ == "__main__":
    main()
