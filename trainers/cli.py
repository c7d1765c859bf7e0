"""`glauber train ...`: the two-stage text recipe, arguments parsed by `HfArgumentParser`.

    glauber train --output_dir out --max_steps 200 --num_rounds 1 --canvas_length 32 [--model_name_or_path google/flan-t5-small]

Every `GlauberTrainingArguments` / `TextRecipeArguments` field is a flag (`glauber train --help` lists them).
"""

from __future__ import annotations

import argparse


def parse_train_args(argv: list[str]):
    from transformers import HfArgumentParser

    from .arguments import GlauberTrainingArguments
    from .recipe import TextRecipeArguments

    parser = HfArgumentParser((TextRecipeArguments, GlauberTrainingArguments), prog="glauber train")
    return parser.parse_args_into_dataclasses(args=argv)


def _run(namespace: argparse.Namespace) -> int:
    from .recipe import run_text_recipe

    recipe, training = parse_train_args(namespace.hf_args)
    run_text_recipe(recipe, training)
    return 0


def register(subparsers) -> None:
    """Add the `train` subcommand; everything after it goes to `HfArgumentParser`."""
    # prefix_chars="+": leave every --flag (and --help) to HfArgumentParser
    parser = subparsers.add_parser("train", add_help=False, prefix_chars="+")
    parser.add_argument("hf_args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=_run)


__all__ = ["register", "parse_train_args"]
