"""End-to-end puzzle run shared by `examples/sudoku.py`, `examples/zebra.py` and the demo: data → stage 1 → stage 2
→ evaluation (Glauber N = 0 … N_max, optional baselines) → checkpoint, results JSON, Markdown table and PNG."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, load_from_disk
from transformers import TrainingArguments

from puzzles import data, zebra
from puzzles.baselines import MaskedDiffusionCollator, SolverOrderCollator, mdm_predictions, solver_order_predictions
from puzzles.cli import positive_int
from puzzles.evaluation import (fixes, format_table, plot_learning_curve, plot_results, run_method,
                                write_results)
from puzzles.files import staged_dir
from puzzles.recipe import (
    RecipeConfig,
    BudgetTrainer,
    common_training_arguments,
    build_model,
    build_tokenizer,
    continue_from,
    LearningCurve,
    glauber_predictions,
    legal_canvas_tokens,
    load_model,
    loader_workers,
    tokenized,
    train_stage1,
    train_stage2,
)


def add_run_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", default=default_config, help="recipe JSON (examples/configs/)")
    parser.add_argument("--data", help="dataset dir from `glauber puzzles make`; generated in the run when omitted")
    parser.add_argument("--out", required=True, help="output dir: model/, results.json, results.md, results.png")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="training autocast precision")
    parser.add_argument("--time-budget-s", type=float,
                        help="wall-clock training budget in seconds, data generation not counted: stage 1 gets "
                             "stage1_budget_fraction of it, stage 2 what stage 1 leaves; with --baselines the two "
                             "baselines share what stages 1 and 2 leave (the MDM half of it, the AR model the rest), "
                             "so a budget the stages use up leaves each baseline one step; then evaluate and save")
    parser.add_argument("--stage1-steps", type=int, help="overrides the config; 0 skips stage 1")
    parser.add_argument("--stage2-steps", type=int,
                        help="overrides the config; 0 skips stage 2 (both 0 with --init-from: evaluate that checkpoint, "
                             "e.g. beside --baselines)")
    parser.add_argument("--n-train", type=positive_int,
                        help="training puzzles (>= 1): generated in the run (default: the config's n_train), or with "
                             "--data the first K rows of its train split (default: all; more than it holds is an "
                             "error; --set n_train=K alike)")
    parser.add_argument("--n-test", type=positive_int,
                        help="test puzzles (>= 1): as --n-train, for the test split and the config's n_test")
    parser.add_argument("--eval-limit", type=positive_int, help="evaluate on the first K >= 1 test puzzles only")
    parser.add_argument("--baselines", action="store_true", help="also train and evaluate the MDM and AR baselines")
    parser.add_argument("--baseline-steps", type=positive_int, default=1000, help="most steps of each baseline (>= 1)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="train and evaluate only the baselines, sharing all of --time-budget-s (beside a Glauber "
                             "run with the same budget, e.g. on one GPU)")
    parser.add_argument("--workers", type=positive_int, default=2, help="data-generation processes (>= 1)")
    parser.add_argument("--init-from", help="continue training a saved puzzle checkpoint instead of a fresh model "
                        "(same tokenizer and weight shapes; the model's configuration, e.g. num_rounds and "
                        "mask_window, is the config's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 avoids spin-wait stalls on a busy machine)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", type=recipe_override,
                        help="override one recipe field of --config (repeatable), e.g. --set stage1_budget_fraction=0.9")


def recipe_override(text: str) -> tuple[str, Any]:
    """`--set FIELD=VALUE` typed like the recipe field; a bad one is a usage error naming the fields."""
    try:
        return RecipeConfig.parse_override(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def load_or_make_data(cfg: RecipeConfig, data_dir: str | None, workers: int, n_train: int | None = None,
                      n_test: int | None = None) -> DatasetDict:
    """The run's splits: generated from `cfg` (its n_train and n_test), or loaded from `data_dir`, checked against
    `cfg` (`check_data_matches`) and cut to its first `n_train` / `n_test` rows when those are given."""
    if data_dir:
        ds = load_from_disk(data_dir)
        check_data_matches(cfg, ds, data_dir)
        for split, field, count in (("train", "n_train", n_train), ("test", "n_test", n_test)):
            if count is not None:
                if count > ds[split].num_rows:
                    flag = f"--{field.replace('_', '-')}"
                    raise ValueError(f"{field} {count} ({flag} or --set {field}): --data {data_dir} holds only "
                                     f"{ds[split].num_rows} {split} rows; pass at most that, or omit {flag} and "
                                     f"--set {field} to use them all")
                ds[split] = ds[split].select(range(count))
        return ds
    if cfg.kind == "sudoku":
        ds, _ = data.build_sudoku(cfg.size, cfg.n_train, cfg.n_test, cfg.seed, workers=workers, progress=False)
    else:
        sizes = [(int(h), int(a)) for h in cfg.houses.split(",") for a in cfg.attributes.split(",")]
        ds, _ = data.build_zebra(sizes, cfg.n_train, cfg.n_test, cfg.seed, workers=workers, progress=False,
                                 house_canvas=cfg.kind == zebra.HOUSE_KIND)
    return ds


def check_data_matches(cfg: RecipeConfig, ds: DatasetDict, data_dir: str) -> None:
    """Refuse a dataset the config's model cannot solve: another kind, a Sudoku or house-canvas Zebra of another size
    (its canvas length and values differ), or a Zebra size outside the fixed 6 × 6 entity canvas."""
    found = {(kind, size) for split in ds.values() for kind, size in zip(split["kind"], split["size"])}
    exact = {"sudoku": f"{cfg.size}x{cfg.size}", zebra.HOUSE_KIND: f"{cfg.houses}x{cfg.attributes}"}.get(cfg.kind)
    if exact is not None:  # one canvas length and layout
        expected = f"{cfg.kind} {exact}"
        wrong = sorted(f"{kind} {size}" for kind, size in found if (kind, size) != (cfg.kind, exact))
    else:
        expected = f"zebra with houses and attributes in {zebra.MIN_SIZE}..{zebra.MAX_SIZE}"
        wrong = sorted(f"{kind} {size}" for kind, size in found if kind != zebra.KIND or not _zebra_size_fits(size))
    if wrong:
        raise ValueError(f"--data {data_dir} holds {', '.join(wrong)} puzzles, but the config's model is for "
                         f"{expected} puzzles")


def _zebra_size_fits(size: str) -> bool:
    houses, _, attributes = size.partition("x")
    return all(text.isdigit() and zebra.MIN_SIZE <= int(text) <= zebra.MAX_SIZE for text in (houses, attributes))


def sampling_label(temperature: float | None) -> str:
    """The suffix that names a sampled evaluation in its method's name ("" for greedy)."""
    return "" if temperature is None else f", sampled at T={temperature:g}"


def evaluate_glauber(model, tokenizer, rows: list[dict[str, Any]], rounds: list[int], batch_size: int,
                     mask_window: int | None = None, progress: bool = False, temperature: float | None = None,
                     seed: int = 0) -> list[dict]:
    """Glauber with each N in `rounds` (0 = the causal draft in order π_0) and mask window w (default: the config's),
    each N its own call, greedy or sampled at `temperature` from `seed` (`progress`: a tqdm bar over each call's model
    calls)."""
    model.eval()
    sampled = sampling_label(temperature)
    return [
        run_method(f"causal draft (N=0, random order{sampled})" if n == 0 else f"Glauber N={n}{sampled}",
                   lambda r, n=n: glauber_predictions(model, tokenizer, r, n, batch_size, mask_window,
                                                      progress=progress, temperature=temperature, seed=seed), rows, n)
        for n in rounds
    ]


def train_baselines(cfg: RecipeConfig, tokenizer, train_ds, rows, out: Path, device: str, precision: str,
                    steps: int, budget_s: float | None) -> list[dict]:
    """MDM (Top-K probability and margin decoding) and AR-in-solver-order, same backbone size and data, each saved to
    `out/baseline-{mdm,ar}/model`. The two share `budget_s` seconds of training: each gets an equal part of what is
    left when it starts, so time one does not use goes to the next."""
    legal_words = legal_canvas_tokens(cfg.kind, cfg.size)
    legal = tokenizer.convert_tokens_to_ids(legal_words)
    mdm = build_model(cfg, tokenizer)
    ar = build_model(cfg, tokenizer)
    collators = {
        "mdm": (mdm, MaskedDiffusionCollator(mdm, tokenizer.convert_tokens_to_ids("<extra_id_0>"), cfg.seed),
                tokenized(train_ds, tokenizer)),
        "ar": (ar, SolverOrderCollator(ar, tokenizer), train_ds),
    }
    summaries = {}
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    for index, (name, (model, collator, ds)) in enumerate(collators.items()):
        share = None if deadline is None else max(0.0, deadline - time.perf_counter()) / (len(collators) - index)
        args = TrainingArguments(**common_training_arguments(str(out / f"baseline-{name}"), steps, cfg.stage1_lr,
                                                             cfg.stage1_batch, device, precision, cfg.seed,
                                                             loader_workers(cfg, device)))
        trainer = BudgetTrainer(model=model, args=args, train_dataset=ds, data_collator=collator, budget_s=share)
        started = time.perf_counter()
        trainer.train()
        summaries[name] = {"steps": trainer.state.global_step, "seconds": round(time.perf_counter() - started, 1),
                           "checkpoint": str(save_checkpoint(model, tokenizer, out / f"baseline-{name}" / "model"))}
        model.eval()
    records = [
        run_method("MDM Top-K probability", lambda r: mdm_predictions(mdm, tokenizer, r, legal, "probability",
                                                                      cfg.eval_batch), rows),
        run_method("MDM Top-K margin", lambda r: mdm_predictions(mdm, tokenizer, r, legal, "margin", cfg.eval_batch),
                   rows),
        run_method("AR, solver order", lambda r: solver_order_predictions(ar, tokenizer, r, legal_words,
                                                                           cfg.eval_batch), rows),
    ]
    for r in records:
        r["training"] = summaries["ar" if r["method"].startswith("AR") else "mdm"]
    return records


def command_line_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the command line sets: `--set FIELD=VALUE` and the flags that name a field
    (`--stage1-steps`, …); a flag and a `--set` of the same field must agree."""
    overrides = dict(args.set)
    for name in ("stage1_steps", "stage2_steps", "n_train", "n_test"):
        flag = getattr(args, name)
        if flag is None:
            continue
        if overrides.get(name, flag) != flag:
            raise ValueError(f"--{name.replace('_', '-')} {flag} and --set {name}={overrides[name]} disagree: give one")
        overrides[name] = flag
    return overrides


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole recipe; prints the table and returns the results dict (also written to `--out`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    # the Trainer's log lines are the progress of an hour-long run, also when stdout is a log file
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    overrides = command_line_overrides(args)
    cfg = RecipeConfig.load(args.config, **overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # with --data a split size the command line sets cuts the split; the config file's does not
    ds = load_or_make_data(cfg, args.data, args.workers,
                           *(overrides.get(name) for name in ("n_train", "n_test")))
    data_seconds = time.perf_counter() - started
    # results.json records the split sizes the run used: with --data those of the dataset, not the config's.
    cfg = dataclasses.replace(cfg, n_train=ds["train"].num_rows, n_test=ds["test"].num_rows)
    tokenizer = build_tokenizer(cfg)
    rows = list(ds["test"])[: args.eval_limit]
    save_rows(rows, out / "test.jsonl")
    budget = args.time_budget_s
    size = f"{cfg.size}x{cfg.size}" if cfg.kind == "sudoku" else f"{cfg.houses} x {cfg.attributes}"
    title = f"{cfg.kind} {size}"
    machine = {"platform": platform.platform(), "device": args.device,
               "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
               "torch_threads": torch.get_num_threads()}
    data_summary = {"source": args.data or "generated", "train_rows": ds["train"].num_rows,
                    "test_rows": ds["test"].num_rows, "evaluated_rows": len(rows)}
    if args.baselines_only:
        records = train_baselines(cfg, tokenizer, ds["train"], rows, out, args.device, args.precision,
                                  args.baseline_steps, budget)
        summary = {"config": cfg.to_dict(), "machine": machine, "data": data_summary,
                   "data_seconds": round(data_seconds, 1)}
        return _report(records, None, summary, out, title)
    model = continue_from(args.init_from, cfg, tokenizer) if args.init_from else build_model(cfg, tokenizer)
    model = model.to(args.device)
    train_ds = tokenized(ds["train"], tokenizer)
    s1_budget = None if budget is None else budget * cfg.stage1_budget_fraction
    curve = (LearningCurve(model, tokenizer, rows[: cfg.curve_puzzles], cfg.num_rounds, cfg.curve_every,
                           cfg.eval_batch, cfg.refine_mask_window or None) if cfg.curve_every else None)
    callbacks = [curve] if curve else None
    if curve:
        curve.begin_stage("stage 1")
    stage1 = train_stage1(model, train_ds, cfg, str(out / "stage1"), args.device, args.precision, s1_budget,
                          callbacks=callbacks)
    save_checkpoint(model, tokenizer, out / "model")  # a run cut short after stage 1 still leaves a model behind
    s2_budget = None if budget is None else max(0.0, budget - (time.perf_counter() - started - data_seconds))
    if curve:
        curve.begin_stage("stage 2")
    stage2 = train_stage2(model, train_ds, cfg, str(out / "stage2"), args.device, args.precision, s2_budget,
                          callbacks=callbacks)
    trained_seconds = time.perf_counter() - started - data_seconds
    model.eval()
    if cfg.refine_mask_window:
        model.config.mask_window = cfg.refine_mask_window  # what generate() and the evaluation below use
    if stage2["steps"]:
        keep_stage1_model(out)
    save_checkpoint(model, tokenizer, out / "model")

    records = evaluate_glauber(model, tokenizer, rows, list(range(cfg.num_rounds + 1)), cfg.eval_batch, progress=True)
    if args.baselines:
        baseline_budget = None if budget is None else max(0.0, budget - trained_seconds)
        records += train_baselines(cfg, tokenizer, ds["train"], rows, out, args.device, args.precision,
                                   args.baseline_steps, baseline_budget)
    draft, best = records[0], records[cfg.num_rounds]
    summary = {
        "config": cfg.to_dict(),
        "machine": machine,
        "parameters": model.time_conditioning_overhead(),
        "data": data_summary,
        "data_seconds": round(data_seconds, 1),
        "stage1": stage1,
        "stage2": stage2,
        "draft_vs_final": fixes(draft, best),
    }
    if curve:
        summary["learning_curve"] = curve.points
        plot_learning_curve([("stage 1", stage1), ("stage 2", stage2)], curve.points, cfg.num_rounds,
                            out / "learning_curve.png", title)
    summary = _report(records, draft["method"], summary, out, title)
    print(json.dumps({k: summary[k] for k in ("parameters", "draft_vs_final")}))
    return summary


def _report(records: list[dict], draft_method: str | None, summary: dict[str, Any], out: Path,
            title: str) -> dict[str, Any]:
    """results.json, results.png and results.md in `out`; prints the table."""
    table = format_table(records, draft_method)
    write_results(records, out / "results.json", **summary)
    plot_results(records, out / "results.png", title)
    (out / "results.md").write_text(table + "\n")
    print(table)
    return summary


def save_rows(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Dataset rows as JSON lines (the held-out set travels with a checkpoint)."""
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def save_checkpoint(model, tokenizer, out: str | Path) -> Path:
    """`save_pretrained` of model and tokenizer into `out`, atomically."""
    with staged_dir(out) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return Path(out)


def keep_stage1_model(out: Path) -> Path:
    """Move the stage-1 checkpoint `out/model` to `out/model-stage1`, so whether stage 2 helped can be measured on the
    whole held-out set (`glauber puzzles eval --model out/model-stage1 --mask-window W`: it was saved with the training
    window `mask_window`, not `refine_mask_window`)."""
    kept = out / "model-stage1"
    if kept.exists():
        shutil.rmtree(kept)
    os.replace(out / "model", kept)
    return kept


PUZZLE_CARD = """---
library_name: transformers
pipeline_tag: text-generation
tags: [glauber-diffusion, diffusion-lm, sudoku, zebra-puzzles, custom_code]
---
# Glauber diffusion puzzle solver ({kind} {size})

A Glauber-dynamics diffusion model ({parameters:,} parameters, fp16 safetensors) trained from scratch by the
`glauber-diffusion` library's puzzle recipe. The puzzle is the prompt, the solution grid is the canvas and the givens
are frozen canvas cells. CAUSAL-GEN drafts the free cells in a fixed random order; MASK-INFILL, told the diffusion
time τ = t/T, then revisits every cell of N fixed random orders and resamples it given the others. The folder holds
the weights, the word-level tokenizer, the code files and {puzzles} held-out puzzles (`test.jsonl`).

## Loading and solving

The model and its tokenizer load anywhere with the code files of this folder:

```python
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("<this folder>", trust_remote_code=True)
tok = AutoTokenizer.from_pretrained("<this folder>", trust_remote_code=True)
```

A puzzle's prompt is the library's encoding of its givens, so solving takes the library installed:

```python
from puzzles.recipe import glauber_predictions, load_model
from puzzles.run import load_rows

model, tokenizer = load_model("<this folder>")  # fp32
rows = load_rows("<this folder>/test.jsonl")
grids, calls = glauber_predictions(model, tokenizer, rows, num_rounds=3)  # greedy; num_rounds=0: the draft
```

or, with solved rates, Wilson intervals and a plot, `glauber puzzles eval --model <this folder> --data <this
folder>/test.jsonl`.

## Cost

A canvas of L cells costs L model calls for the draft plus N·L MASK-INFILL calls for N rounds of refinement:
(N+1)·L model calls in all. Steps at cells frozen in every row of a batch (the givens) are skipped and not counted.

## Citation

```bibtex
@misc{{kathuria_kumar_glauber,
  title  = {{Leveraging Pretrained Language Models as Energy Functions for Glauber Dynamics Text Diffusion}},
  author = {{Kathuria, Tarun and Kumar, Sachin}},
}}
```
"""


def save_demo_asset(model, tokenizer, rows: list[dict[str, Any]], out: str | Path) -> Path:
    """fp16 safetensors checkpoint + its code files + tokenizer + held-out rows, written beside `out` and moved into
    place; checks that it reloads in fp32."""
    with staged_dir(out) as staging:
        model.half().save_pretrained(staging)
        model.float()
        tokenizer.save_pretrained(staging)
        # the generic model card would promise a text prompt; a puzzle takes the library's encoding of its givens
        first = rows[0] if rows else {"kind": "?", "size": "?"}
        (staging / "README.md").write_text(PUZZLE_CARD.format(
            parameters=sum(p.numel() for p in model.parameters()), puzzles=len(rows), kind=first["kind"],
            size=first["size"]))
        save_rows(rows, staging / "test.jsonl")
        reloaded, _ = load_model(staging)
        if reloaded.dtype != torch.float32:
            raise RuntimeError(f"{out} reloaded as {reloaded.dtype}, expected float32")
    return Path(out)
