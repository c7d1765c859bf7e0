"""Every command in README.md's fenced code blocks still parses, so the docs cannot drift from the code.

A command is a line (backslash continuations joined) of a non-Python fenced block whose first word is `glauber`,
`glauber-lm-eval`, `python`, `make`, `accelerate launch` or `torchrun`. Nothing is run, only parsed:

- `glauber SUB ...`: the CLI's own parser (`glauber_cli.main.build_parser`); `glauber train ...` also builds its
  `HfArgumentParser` dataclasses;
- `glauber-lm-eval ...`: lm-eval's parser, and the `--model_args` keys against `GlauberLM`'s arguments;
- `python SCRIPT.py ...`, `python -m MODULE ...` (modules of this repository) and the script of `accelerate launch` /
  `torchrun`: the script runs as `__main__` until its outermost argparse call has parsed the arguments, then stops;
- `make TARGET VAR=...`: the Makefile has the target and the variable, and a recipe line `python SCRIPT.py $(ARGS)`
  parses ARGS as above.

Abbreviated flags are refused (argparse would accept `--time-budget` for `--time-budget-s`), and a path into one of
the repository's folders (`examples/configs/x.json`) must exist.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROGRAMS = ("glauber", "glauber-lm-eval", "python", "make", "accelerate", "torchrun")
REPO_FOLDERS = ("assets", "benchmarks", "docs", "eval", "examples", "glauber_cli", "modeling_glauber", "puzzles",
                "tests", "trainers")


class CommandError(AssertionError):
    """A documented command that no longer parses."""


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every ``` fenced block."""
    return re.findall(r"^```([^\n`]*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def commands_in(text: str) -> list[list[str]]:
    """The argv of every command line in the non-Python fenced blocks of a Markdown text."""
    commands = []
    for info, body in fenced_blocks(text):
        if info.strip().lower() in ("python", "py", "bibtex", "json", "yaml"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] in PROGRAMS:
                commands.append(argv)
    return commands


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace, extras: list[str]):
        super().__init__("parsed")
        self.namespace, self.extras = namespace, extras


@contextlib.contextmanager
def _stop_after_parsing():
    """Make the outermost `ArgumentParser.parse_known_args` raise `_Parsed` with its result (so a script's `main`
    stops right after parsing), refusing abbreviated flags in every parser and subparser."""
    original = argparse.ArgumentParser.parse_known_args
    depth = 0

    def parse_known_args(self, args=None, namespace=None):
        nonlocal depth
        self.allow_abbrev = False
        depth += 1
        try:
            result = original(self, args, namespace)
        finally:
            depth -= 1
        if depth == 0:
            raise _Parsed(*result)
        return result

    argparse.ArgumentParser.parse_known_args = parse_known_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original


def _wants_help(args: list[str]) -> bool:
    return "--help" in args or "-h" in args


@contextlib.contextmanager
def _usage_errors_raised(command: str, args: list[str]):
    """argparse's usage errors (SystemExit 2) as CommandError; `--help` (SystemExit 0) only where asked for."""
    try:
        yield
    except SystemExit as exit_:
        if exit_.code == 0 and _wants_help(args):
            return
        raise CommandError(f"{command!r} exits with {exit_.code} while parsing its arguments") from None


def _check_paths(command: str, args: list[str]) -> None:
    for arg in args:
        value = arg.split("=", 1)[-1]
        first = value.split("/", 1)[0]
        if "/" in value and first in REPO_FOLDERS and Path(value).suffix and not (ROOT / value).exists():
            raise CommandError(f"{command!r} names {value}, which does not exist")


def _check_python(command: str, target: list[str], args: list[str]) -> None:
    """`target` is [script.py] or ["-m", module]: run it as __main__ until its arguments are parsed."""
    _check_paths(command, target + args)
    if target[0] == "-m":
        module = target[1]
        if not (ROOT / (module.replace(".", "/") + ".py")).exists():
            raise CommandError(f"{command!r}: {module} is not a module of this repository")
        run, name = (lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)), module
    else:
        script = ROOT / target[0]
        if script.suffix != ".py" or not script.exists():
            raise CommandError(f"{command!r}: {target[0]} is not a Python script of this repository")
        run, name = (lambda: runpy.run_path(str(script), run_name="__main__")), str(script)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [name, *args]
    try:
        with _stop_after_parsing(), _usage_errors_raised(command, args):
            run()
        if not _wants_help(args):
            raise CommandError(f"{command!r}: the script finished without parsing arguments with argparse")
    except _Parsed as parsed:
        if parsed.extras:
            raise CommandError(f"{command!r}: unrecognised arguments {parsed.extras}") from None
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _check_glauber(command: str, args: list[str]) -> None:
    from glauber_cli.main import SUBCOMMANDS, build_parser

    _check_paths(command, args)
    subcommand = next((arg for arg in args if not arg.startswith("-")), None)
    with _usage_errors_raised(command, args):
        namespace = build_parser({subcommand} & set(SUBCOMMANDS)).parse_args(args)
        if subcommand == "train":
            from trainers.cli import parse_train_args

            try:
                parse_train_args(namespace.hf_args)
            except ValueError as error:  # HfArgumentParser's unused arguments, the dataclasses' own checks
                raise CommandError(f"{command!r}: {error}") from None


def _check_lm_eval(command: str, args: list[str]) -> None:
    from lm_eval._cli.harness import HarnessCLI

    from eval.lm_eval_adapter import GlauberLM

    _check_paths(command, args)
    cli = HarnessCLI()
    argv = args if args and args[0] in cli._subparsers.choices else ["run", *args]
    with _usage_errors_raised(command, args):
        namespace = cli._parser.parse_args(argv)
    if getattr(namespace, "model", None) in ("glauber", "glauber_ar"):
        model_args = namespace.model_args or {}
        if isinstance(model_args, str):
            model_args = dict(pair.split("=", 1) for pair in model_args.split(",") if pair)
        accepted = set(inspect.signature(GlauberLM.__init__).parameters) - {"self"}
        unknown = sorted(set(model_args) - accepted)
        if unknown:
            raise CommandError(f"{command!r}: --model_args {unknown} are not GlauberLM arguments ({sorted(accepted)})")


def _makefile() -> tuple[dict[str, list[str]], dict[str, str]]:
    """Targets → recipe lines, and variables → default values, of the repository's Makefile."""
    targets: dict[str, list[str]] = {}
    variables: dict[str, str] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            targets[current].append(line.strip())
            continue
        assignment = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=\s*(.*)$", line)
        rule = re.match(r"^([A-Za-z0-9_-][A-Za-z0-9_.-]*)\s*:(?!=)", line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2).strip()
        elif rule:
            current = rule.group(1)
            targets[current] = []
        elif not line.strip() or not line.startswith(" "):
            current = None
    return targets, variables


def _check_make(command: str, args: list[str]) -> None:
    targets, variables = _makefile()
    given = dict(arg.split("=", 1) for arg in args if "=" in arg)
    goals = [arg for arg in args if "=" not in arg and not arg.startswith("-")]
    for name in given:
        if name not in variables:
            raise CommandError(f"{command!r}: the Makefile has no variable {name}")
    for goal in goals or ["install"]:
        if goal not in targets:
            raise CommandError(f"{command!r}: the Makefile has no target {goal!r} (it has {sorted(targets)})")
        for recipe in targets[goal]:
            words = recipe.split()
            scripts = [i for i, word in enumerate(words) if word.endswith(".py")]
            if "$(ARGS)" in words and scripts and words[scripts[0] - 1].endswith("python"):
                script_args = shlex.split(given.get("ARGS", variables.get("ARGS", "")))
                _check_python(command, [words[scripts[0]]], script_args)


def check_command(argv: list[str]) -> None:
    """Raise CommandError unless `argv` parses as the documented program would parse it."""
    command = shlex.join(argv)
    program, args = argv[0], argv[1:]
    if program == "glauber":
        _check_glauber(command, args)
    elif program == "glauber-lm-eval":
        _check_lm_eval(command, args)
    elif program == "make":
        _check_make(command, args)
    elif program == "python":
        if not args:
            raise CommandError(f"{command!r}: no script")
        split = 2 if args[0] == "-m" else 1
        _check_python(command, args[:split], args[split:])
    elif program in ("accelerate", "torchrun"):
        script = next((i for i, arg in enumerate(args) if arg.endswith(".py")), None)
        if script is None:
            raise CommandError(f"{command!r}: no script to launch")
        _check_python(command, [args[script]], args[script + 1:])
    else:
        raise CommandError(f"{command!r}: not a command this check knows")


README_COMMANDS = commands_in(README.read_text(encoding="utf-8"))


def test_readme_documents_the_two_commands_and_the_cli_in_checkable_blocks():
    programs = [argv[0] for argv in README_COMMANDS]
    assert ["make", "demo"] in README_COMMANDS and ["make", "test"] in README_COMMANDS
    assert programs.count("glauber") >= 5 and programs.count("python") >= 5 and "glauber-lm-eval" in programs


@pytest.mark.parametrize("argv", README_COMMANDS, ids=[shlex.join(argv)[:80] for argv in README_COMMANDS])
def test_readme_command_parses(argv, capsys):
    check_command(argv)


def _renamed_flag(argv: list[str]) -> list[str]:
    flag = next(i for i, arg in enumerate(argv) if arg.startswith("--") and i > 1)
    return argv[:flag] + [argv[flag].split("=", 1)[0] + "-renamed"] + argv[flag + 1:]


@pytest.mark.parametrize("program", ["python", "glauber"])
def test_a_readme_command_with_a_renamed_flag_fails(program, capsys):
    original = next(argv for argv in README_COMMANDS
                    if argv[0] == program and any(arg.startswith("--") for arg in argv[2:]))
    check_command(original)
    with pytest.raises(CommandError):
        check_command(_renamed_flag(original))


@pytest.mark.parametrize("broken", [
    "python examples/sudoku.py --config examples/configs/sudoku-4x4.json --out runs/x --time-budget 60",  # abbreviated
    "python examples/sudoku.py --config examples/configs/sudoku-5x5.json --out runs/x",  # no such config
    "python examples/sudoku.py --config examples/configs/sudoku-4x4.json --out runs/x --set no_such_field=1",
    "python examples/sudoku.py --config examples/configs/sudoku-4x4.json",  # --out is required
    "python examples/no_such_script.py --help",
    "python -m trainers.plot_loss",  # its log directory is a required positional
    "python benchmarks/bench_generate.py extra",
    "glauber puzzles eval --model assets/sudoku-4x4 --data assets/sudoku-4x4/test.jsonl --rounds 3",
    "glauber puzzles make sudoku --size 5 --n 10 --out data/x",
    "glauber train --output_dir out --no_such_field 3",
    "glauber-lm-eval --model glauber --model_args pretrained=ckpt,no_such_arg=1 --tasks piqa",
    "make no-such-target",
    "make demo ARGS=--no-such-flag",
    "make demo NO_SUCH_VARIABLE=1",
    "accelerate launch --num_processes 2 examples/train_text.py --output_dir out --no_such_field 1",
])
def test_a_broken_command_fails(broken, capsys):
    with pytest.raises(CommandError):
        check_command(shlex.split(broken))
