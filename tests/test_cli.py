"""The `glauber` console entry point: subcommands register, `generate` prints draft and refinement."""

from __future__ import annotations

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
