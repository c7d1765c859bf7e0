"""The `glauber` console entry point: subcommands register, `generate` prints draft and refinement."""

from __future__ import annotations

import os

import pytest
from tiny_models import make_glauber

from glauber_cli.main import build_parser, main


def test_every_area_contributes_its_subcommand():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert {"generate", "train", "eval", "puzzles"} <= set(choices)


def test_generate_prints_the_draft_and_the_refined_text(tokenizer, tmp_path, capsys):
    model = make_glauber("t5", tokenizer, num_rounds=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    code = main(["generate", "--model", str(tmp_path), "--prompt", "hello", "--prompt", "a longer one",
                 "--max-new-tokens", "5", "--num-rounds", "1", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("draft  :") == 2 and out.count("glauber:") == 2
    assert "model calls: 10" in out


def test_generate_rejects_bad_arguments_clearly(tokenizer, tmp_path):
    make_glauber("t5", tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_rounds"):
        main(["generate", "--model", str(tmp_path), "--num-rounds", "4", "--max-new-tokens", "3"])


def test_generate_refuses_a_puzzle_checkpoint_and_names_puzzles_eval(tmp_path):
    from puzzles.tokenizer import build_puzzle_tokenizer

    tok = build_puzzle_tokenizer("sudoku", 16)
    make_glauber("t5", tok, vocab_size=len(tok)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(SystemExit, match=r"puzzle checkpoint.*glauber puzzles eval --model"):
        main(["generate", "--model", str(tmp_path), "--prompt", "_ _ 4 _", "--max-new-tokens", "16"])


def test_help_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = ("import sys\nfrom glauber_cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train" in result.stdout and "puzzles" in result.stdout  # every subcommand is listed with its help
    assert "HEAVY []" in result.stdout
