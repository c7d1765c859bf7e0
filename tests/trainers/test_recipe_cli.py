"""`glauber train` (HfArgumentParser behind argparse), the two-stage recipe and the loss-vs-τ plot."""

from __future__ import annotations

import argparse
import os

import torch
from safetensors.torch import load_file

from trainers import cli
from trainers.plot_loss import plot


def test_train_subcommand_runs_both_stages_and_plots(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="glauber")
    cli.register(parser.add_subparsers(dest="command", required=True))
    def train(out, *extra):
        namespace = parser.parse_args([
            "train", "--output_dir", str(out), "--max_steps", "3", "--ul2_steps", "2", "--num_rounds", "1",
            "--canvas_length", "16", "--timesteps_per_chain", "2", "--per_device_train_batch_size", "2", "--use_cpu",
            "--logging_steps", "1", "--disable_tqdm", "true", *extra,
        ])
        assert namespace.func(namespace) == 0
        return load_file(out / "model.safetensors")

    out = tmp_path / "run"
    weights = train(out, "--save_steps", "3", "--sample_rows", "1")
    # --seed fixes everything, the converted model's new weights included
    again = train(tmp_path / "again", "--save_strategy", "no", "--sample_rows", "0")
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
    assert os.path.isfile(out / "checkpoint-3" / "glauber_reference" / "model.safetensors")
    assert "sample:" in capsys.readouterr().out
    png = plot(str(out))
    assert os.path.getsize(png) > 1000


def test_the_ul2_stage_trains_with_the_runs_training_arguments(tmp_path):
    from trainers import GlauberTrainingArguments
    from trainers.recipe import ul2_training_arguments

    args = GlauberTrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=3, warmup_steps=5,
                                    max_grad_norm=0.5, weight_decay=0.1, lr_scheduler_type="constant", use_cpu=True,
                                    eval_strategy="steps", eval_steps=2, save_steps=4)
    ul2 = ul2_training_arguments(args, steps=7)
    for name in ("gradient_accumulation_steps", "warmup_steps", "max_grad_norm", "weight_decay", "lr_scheduler_type",
                 "use_cpu", "seed", "learning_rate", "per_device_train_batch_size"):
        assert getattr(ul2, name) == getattr(args, name), name
    assert (ul2.max_steps, ul2.save_strategy, ul2.eval_strategy) == (7, "no", "no")
    assert ul2.output_dir == os.path.join(str(tmp_path), "ul2")
