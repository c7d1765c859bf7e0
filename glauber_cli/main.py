"""`glauber` console entry point: `glauber generate|train|puzzles|eval ...`.

Each area of the project contributes its subcommand through a `register(subparsers)` function. Only the module of the
subcommand being run is imported (`glauber --help` imports none of them: torch, transformers and peft take seconds).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with its `register(subparsers)`, the one-line help `glauber --help` lists)
SUBCOMMANDS = {
    "generate": ("glauber_cli.generate", "generate text with a Glauber diffusion model"),
    "train": ("trainers.cli", "UL2 stage then Glauber SEDD training (flags: glauber train --help)"),
    "eval": ("eval.cli", "evaluate Glauber models"),
    "puzzles": ("puzzles.cli", "generate and evaluate Sudoku / Zebra benchmarks"),
}


def build_parser(commands: set[str] | None = None) -> argparse.ArgumentParser:
    """The `glauber` parser with the full parsers of `commands` (default: every subcommand); each other subcommand is
    a placeholder that imports nothing."""
    parser = argparse.ArgumentParser(prog="glauber", description="Glauber-dynamics diffusion language models")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser({command} & set(SUBCOMMANDS)).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
