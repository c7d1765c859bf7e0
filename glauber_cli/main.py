"""`glauber` console entry point: `glauber generate|train|puzzles|eval ...`.

Each area of the project contributes its subcommands through a `register(subparsers)` function.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES = ("glauber_cli.generate", "trainers.cli", "eval.cli", "puzzles.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glauber", description="Glauber-dynamics diffusion language models")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
