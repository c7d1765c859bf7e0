"""``glauber puzzles ...`` subcommands (wired into ``glauber_cli.main`` via ``register``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from datasets import DatasetDict

from puzzles import data, zebra


# argparse `type=` validators: argparse reports a raised ArgumentTypeError as "argument --flag: <message>", so each
# message only has to say which values the flag allows.
def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (puzzle counts, limits, batch sizes, workers)."""
    return _int_at_least(text, 1)


def positive_float(text: str) -> float:
    """A finite number > 0 (a sampling temperature)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _int_list(text: str, low: int, high: int | None, example: str) -> list[int]:
    allowed = f"integers in {low}..{high}" if high is not None else f"integers >= {low}"
    message = f"expected a comma list of {allowed}, e.g. {example}; got {text!r}"
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if any(v < low or (high is not None and v > high) for v in values):
        raise argparse.ArgumentTypeError(message)
    return values


def zebra_sizes(text: str) -> list[int]:
    """A comma list of Zebra house (or attribute) counts, each in `zebra.MIN_SIZE`..`zebra.MAX_SIZE`."""
    return _int_list(text, zebra.MIN_SIZE, zebra.MAX_SIZE, "3,4")


def round_list(text: str) -> list[int]:
    """A comma list of Glauber round counts N >= 0 (0 is the causal draft)."""
    return _int_list(text, 0, None, "0,1,2,3")


def refinement_round_list(text: str) -> list[int]:
    """A comma list of Glauber round counts N >= 1 (rounds after a first pass that is not the causal draft)."""
    return _int_list(text, 1, None, "1,3")


def _fractions(text: str, expected: str, count: int | None = None) -> list[float]:
    """Comma-separated fractions in [0, 1] (exactly `count` of them when given), else refused with `expected`."""
    message = f"expected {expected}; got {text!r}"
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if not all(0.0 <= v <= 1.0 for v in values) or (count is not None and len(values) != count):
        raise argparse.ArgumentTypeError(message)
    return values


def fraction_list(text: str) -> list[float]:
    """A comma list of fractions in [0, 1] (shares of free cells)."""
    return _fractions(text, "a comma list of fractions in [0, 1], e.g. 0.1,0.3,0.5")


def fraction(text: str) -> float:
    """One fraction in [0, 1]."""
    return _fractions(text, "one fraction in [0, 1], e.g. 0.5", count=1)[0]


def _make_sudoku(args: argparse.Namespace) -> int:
    ds, stats = data.build_sudoku(
        args.size,
        args.n,
        args.test_size,
        args.seed,
        workers=args.workers,
        require_technique_solvable=not args.allow_unsolvable,
        progress=not args.quiet,
    )
    return _finish(ds, stats, args)


def _make_zebra(args: argparse.Namespace) -> int:
    sizes = [(h, a) for h in args.houses for a in args.attributes]
    ds, stats = data.build_zebra(
        sizes, args.n, args.test_size, args.seed, workers=args.workers, progress=not args.quiet,
        answer_as_clues=args.answer_as_clues, house_canvas=args.house_canvas,
    )
    return _finish(ds, stats, args)


def _finish(ds: DatasetDict, stats: dict, args: argparse.Namespace) -> int:
    out = data.save_atomic(ds, args.out, metadata=stats, overwrite=args.overwrite)
    print(json.dumps({**stats, "out": str(out), "train": ds["train"].num_rows, "test": ds["test"].num_rows}))
    print(f"generated {stats['puzzles']} {stats['kind']} puzzles at {stats['puzzles_per_s']} puzzles/s")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, required=True, help="number of training puzzles (>= 1)")
    p.add_argument("--test-size", type=positive_int, default=1000,
                   help="number of test puzzles, disjoint from train (>= 1: evaluation reads the test split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=positive_int, default=1, help="generation processes (>= 1)")
    p.add_argument("--out", required=True, help="output directory (written atomically)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``puzzles`` group; every leaf sets ``func(args) -> int``."""
    group = subparsers.add_parser("puzzles")
    sub = group.add_subparsers(dest="puzzles_command", required=True)

    make = sub.add_parser("make", help="generate a dataset and save it with save_to_disk")
    kinds = make.add_subparsers(dest="kind", required=True)
    sud = kinds.add_parser("sudoku", help="minimal unique Sudoku puzzles")
    sud.add_argument("--size", type=int, choices=(4, 6, 9), default=9)
    sud.add_argument(
        "--allow-unsolvable",
        action="store_true",
        help="keep puzzles the seven techniques cannot finish (difficulty 9)",
    )
    _common(sud)
    sud.set_defaults(func=_make_sudoku)
    zeb = kinds.add_parser("zebra", help="Zebra puzzles, sizes drawn uniformly from houses x attributes")
    zeb.add_argument("--houses", type=zebra_sizes, default="3,4",
                     help=f"comma list in {zebra.MIN_SIZE}..{zebra.MAX_SIZE} (the paper's mixture: 3..6)")
    zeb.add_argument("--attributes", type=zebra_sizes, default="3,4",
                     help=f"comma list in {zebra.MIN_SIZE}..{zebra.MAX_SIZE}")
    zeb.add_argument(
        "--answer-as-clues",
        action="store_true",
        help="lookup screen: each puzzle's clues replaced by its answer, one '=' clue per cell, shuffled",
    )
    zeb.add_argument(
        "--house-canvas",
        action="store_true",
        help="kind 'zebra-house': Shah et al.'s canvas, the value of each attribute in each house, sized to the "
        "puzzle (default: the 6 x 6 entity canvas, the house of each value)",
    )
    _common(zeb)
    zeb.set_defaults(func=_make_zebra)

    ev = sub.add_parser("eval", help="solve a test set with a Glauber puzzle checkpoint: table, JSON and PNG")
    ev.add_argument("--model", required=True, help="checkpoint dir (weights + tokenizer)")
    ev.add_argument("--data", required=True, help="dataset dir (save_to_disk; its 'test' split) or a .jsonl of rows")
    ev.add_argument("--num-rounds", type=round_list, default="0,1,2,3",
                    help="comma list of N >= 0 (0 = the causal draft)")
    ev.add_argument("--mask-window", type=int,
                    help="w, cells masked at each refinement step (default: the checkpoint's config)")
    ev.add_argument("--exclude", action="append", default=[], metavar="DATA",
                    help="drop rows whose prompt occurs in this dataset dir (every split) or .jsonl, e.g. the "
                         "model's training data, so a freshly generated set is truly held out (repeatable)")
    ev.add_argument("--limit", type=positive_int, help="first K >= 1 puzzles only")
    ev.add_argument("--batch-size", type=positive_int, default=256, help=">= 1")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: generate under bf16 autocast (the weights stay as loaded)")
    ev.add_argument("--easy-first", choices=("probability", "margin"), action="append", default=[],
                    help="also decode with the infill alone, the MDM baseline's way: every unfilled cell masked, "
                         "the most confident revealed first (a diagnostic, not the Glauber sampler; repeatable)")
    ev.add_argument("--easy-first-tau", type=fraction, default=1.0,
                    help="the diffusion time τ in [0, 1] at which --easy-first runs the infill (default 1; a model "
                         "trained with stage1_timesteps 'corruption' reads τ as the share of its context that is wrong, "
                         "divided by its stage1_full_time_corruption)")
    ev.add_argument("--easy-first-rounds", type=refinement_round_list, default=[],
                    help="comma list of N >= 1: Glauber rounds run from each --easy-first decoding instead of from the "
                         "causal draft (a diagnostic of the rounds given a better first pass; needs --easy-first)")
    ev.add_argument("--temperature", type=positive_float,
                    help="sample the draft and the Glauber rounds at this temperature > 0, as the reverse process is "
                         "defined (default: greedy); row i of the data uses seed --seed + i")
    ev.add_argument("--seed", type=int, default=0, help="seed of the sampled rows (with --temperature)")
    ev.add_argument("--out", help="directory for results.json, results.md and results.png")
    ev.set_defaults(func=_eval)

    probe = sub.add_parser("probe", help="does the model read its prompt (losses with each puzzle's own prompt vs "
                                         "another's) and does its infill look at the cell it fills")
    probe.add_argument("--model", required=True, help="checkpoint dir (weights + tokenizer)")
    probe.add_argument("--data", required=True, help="dataset dir (its 'test' split) or a .jsonl of rows")
    probe.add_argument("--limit", type=positive_int, default=256, help="first K >= 1 puzzles only")
    probe.add_argument("--batch-size", type=positive_int, default=64, help=">= 1")
    probe.add_argument("--seed", type=int, default=0, help="seed of the masks and corruptions (shared by both prompts)")
    probe.add_argument("--device", default="cpu")
    probe.set_defaults(func=_probe)

    fix = sub.add_parser("repair", help="Glauber rounds started from each solution with a share of its free cells "
                                        "wrong: how far from a solution refinement still repairs (table, JSON, PNG)")
    fix.add_argument("--model", required=True, help="checkpoint dir (weights + tokenizer)")
    fix.add_argument("--data", required=True, help="dataset dir (its 'test' split) or a .jsonl of rows")
    fix.add_argument("--corruption", type=fraction_list, default="0.1,0.3,0.5,0.7",
                     help="comma list of shares q in [0, 1] of each puzzle's free cells set to a wrong value")
    fix.add_argument("--num-rounds", type=round_list, default="0,1,3",
                     help="comma list of N >= 0, at most the checkpoint's num_rounds (0 = the start itself)")
    fix.add_argument("--mask-window", type=int,
                     help="w, cells masked at each refinement step (default: the checkpoint's config)")
    fix.add_argument("--limit", type=positive_int, help="first K >= 1 puzzles only")
    fix.add_argument("--batch-size", type=positive_int, default=256, help=">= 1")
    fix.add_argument("--seed", type=int, default=0, help="seed of the wrong cells and their values")
    fix.add_argument("--device", default="cpu")
    fix.add_argument("--out", help="directory for repair.json, repair.md and repair.png")
    fix.set_defaults(func=_repair)

    curve = sub.add_parser("curve", help="one learning-curve PNG for a run and the runs that continue it "
                                         "(--init-from), steps counted from the first run's start")
    curve.add_argument("--run", action="append", required=True, metavar="DIR",
                       help="a finished run's --out directory (its results.json); repeat, first run first")
    curve.add_argument("--out", required=True, help="the PNG to write")
    curve.add_argument("--title", default="", help="the figure's title")
    curve.set_defaults(func=_curve)
    return group


def _rows(path: str) -> list[dict]:
    """Rows of a .jsonl file, or the 'test' split of a dataset dir."""
    from datasets import load_from_disk

    from puzzles.run import load_rows

    return load_rows(path) if path.endswith(".jsonl") else list(load_from_disk(path)["test"])


def _probe(args: argparse.Namespace) -> int:
    from puzzles.probe import format_readout, format_reliance, prompt_reliance, readout_attention
    from puzzles.recipe import load_model

    model, tokenizer = load_model(args.model, args.device)
    rows = _rows(args.data)[: args.limit]
    print(format_reliance(prompt_reliance(model, tokenizer, rows, args.batch_size, args.seed)))
    print(format_readout(readout_attention(model, tokenizer, rows, args.batch_size, args.seed)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from datasets import load_from_disk

    from puzzles.baselines import infill_topk_predictions
    from puzzles.evaluation import fixes, format_table, plot_results, run_method, write_results
    from puzzles.recipe import glauber_predictions, load_model
    from puzzles.run import evaluate_glauber, load_rows, sampling_label

    def prompts(path: str) -> set[str]:
        if path.endswith(".jsonl"):
            return {r["prompt"] for r in load_rows(path)}
        return {p for split in load_from_disk(path).values() for p in split["prompt"]}

    if args.easy_first_rounds and not args.easy_first:
        raise SystemExit("--easy-first-rounds runs Glauber rounds from an --easy-first decoding: give --easy-first "
                         "probability or --easy-first margin as well")
    rows = _rows(args.data)
    if args.exclude:
        seen = set().union(*(prompts(path) for path in args.exclude))
        kept = [r for r in rows if r["prompt"] not in seen]
        print(f"--exclude: kept {len(kept)} of {len(rows)} rows (the rest occur in {', '.join(args.exclude)})")
        if not kept:
            raise SystemExit(f"--exclude removed every row of --data {args.data}: nothing left to evaluate")
        rows = kept
    rows = rows[: args.limit]
    model, tokenizer = load_model(args.model, args.device)
    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with autocast:
        records = evaluate_glauber(model, tokenizer, rows, args.num_rounds, args.batch_size, args.mask_window,
                                   progress=True, temperature=args.temperature, seed=args.seed)
        glauber_last = records[-1]
        for score in args.easy_first:
            grids: list[list[str]] = []

            def easy_first(r, score=score, kept=grids):
                predictions, calls = infill_topk_predictions(model, tokenizer, r, score, args.batch_size,
                                                             args.easy_first_tau)
                kept[:] = predictions
                return predictions, calls

            first = run_method(f"infill alone, Top-K {score} (not Glauber)", easy_first, rows)
            records.append(first)
            for n in args.easy_first_rounds:
                record = run_method(f"Top-K {score}, then Glauber N={n}{sampling_label(args.temperature)} "
                                    "(not the paper's sampler)",
                                    lambda r, n=n: glauber_predictions(model, tokenizer, r, n, args.batch_size,
                                                                       args.mask_window, starts=grids,
                                                                       temperature=args.temperature, seed=args.seed),
                                    rows, n)
                # its cost is both passes'
                record["model_calls"] += first["model_calls"]
                record["seconds"] = round(record["seconds"] + first["seconds"], 2)
                records.append(record)
    table = format_table(records, records[0]["method"] if records[0]["num_rounds"] == 0 else None)
    print(table)
    if args.out:
        out = Path(args.out)
        mask_window = model.config.mask_window if args.mask_window is None else args.mask_window
        extra = {"model": args.model, "data": args.data, "mask_window": mask_window, "precision": args.precision,
                 "temperature": args.temperature, "seed": args.seed}
        if records[0]["num_rounds"] == 0:
            extra["draft_vs_final"] = fixes(records[0], glauber_last)
        write_results(records, out / "results.json", **extra)
        plot_results(records, out / "results.png", f"{rows[0]['kind']} {rows[0]['size']}")
        (out / "results.md").write_text(table + "\n")
    return 0


def _curve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from puzzles.evaluation import chain_learning_curves, plot_learning_curve

    runs = []
    for run in args.run:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise SystemExit(f"--run {run}: no results.json there (the --out directory of a finished "
                             "examples/sudoku.py or examples/zebra.py run)")
        runs.append((Path(run).name, json.loads(path.read_text())))
    try:
        stages, points, num_rounds = chain_learning_curves(runs)
    except ValueError as error:
        raise SystemExit(f"--run: {error}") from None
    print(plot_learning_curve(stages, points, num_rounds, args.out, args.title))
    return 0


def _repair(args: argparse.Namespace) -> int:
    from pathlib import Path

    from puzzles.evaluation import write_results
    from puzzles.files import write_text_atomic
    from puzzles.recipe import load_model
    from puzzles.repair import format_repair, plot_repair, repair

    rows = _rows(args.data)[: args.limit]
    model, tokenizer = load_model(args.model, args.device)
    records = repair(model, tokenizer, rows, args.corruption, args.num_rounds, args.batch_size, args.mask_window,
                     args.seed, progress=True)
    table = format_repair(records)
    print(table)
    if args.out:
        out = Path(args.out)
        mask_window = model.config.mask_window if args.mask_window is None else args.mask_window
        write_results(records, out / "repair.json", model=args.model, data=args.data, mask_window=mask_window,
                      seed=args.seed)
        plot_repair(records, out / "repair.png", f"{rows[0]['kind']} {rows[0]['size']}: refinement from corrupted "
                                                 f"solutions (w = {mask_window}, {len(rows)} puzzles)")
        write_text_atomic(out / "repair.md", table + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m puzzles.cli puzzles make sudoku ...``."""
    parser = argparse.ArgumentParser(prog="glauber")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
