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


def _save_gpt2(path, vocab_size: int, tokenizer=None, poison: bool = False):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    judge = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=1, eos_token_id=1))
    if poison:
        with torch.no_grad():
            judge.transformer.wte.weight.fill_(float("nan"))
    judge.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def checkpoint(tokenizer, tmp_path):
    make_glauber("t5", tokenizer, num_rounds=2).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


@pytest.mark.parametrize("energy", ["self", "judge"])
def test_generate_with_an_energy_prints_the_metropolis_text_acceptance_and_both_call_counts(
    checkpoint, tokenizer, tmp_path, capsys, energy
):
    if energy == "judge":
        energy = _save_gpt2(tmp_path / "judge", 384, tokenizer)
    code = main(["generate", "--model", checkpoint, "--prompt", "hello", "--prompt", "a longer one",
                 "--max-new-tokens", "4", "--num-rounds", "3", "--energy", energy, "--energy-beta", "1.5"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("metropolis:") == 2 and out.count("start     :") == 2
    rates = out.split("acceptance per round:")[1].split("\n")[0].split(",")
    assert len(rates) == 3 and all(0 <= float(rate) <= 1 for rate in rates)
    assert "model calls: 4 draft + 12 infill (batched); energy calls:" in out


@pytest.mark.parametrize("beta", ["0", "-1", "nan"])
def test_generate_refuses_a_non_positive_energy_beta(checkpoint, beta):
    with pytest.raises(ValueError, match="energy_beta must be a finite number > 0"):
        main(["generate", "--model", checkpoint, "--max-new-tokens", "3", "--energy", "self", "--energy-beta", beta])


def test_generate_refuses_an_energy_with_another_vocabulary_and_no_tokenizer(checkpoint, tmp_path):
    judge = _save_gpt2(tmp_path / "judge", 100)
    with pytest.raises(ValueError, match="energy has a vocabulary of 100 ids but this model's has 384"):
        main(["generate", "--model", checkpoint, "--max-new-tokens", "3", "--energy", judge])


def test_generate_refuses_an_energy_returning_non_finite_values(checkpoint, tmp_path):
    judge = _save_gpt2(tmp_path / "judge", 384, poison=True)
    with pytest.raises(ValueError, match="energy returned non-finite log p_E"):
        main(["generate", "--model", checkpoint, "--max-new-tokens", "3", "--energy", judge])
