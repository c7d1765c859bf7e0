"""`glauber train` (HfArgumentParser behind argparse), the two-stage recipe and the loss-vs-τ plot."""

from __future__ import annotations

import argparse
import os

from trainers import cli
from trainers.plot_loss import plot


def test_train_subcommand_runs_both_stages_and_plots(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="glauber")
    cli.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "run"
    namespace = parser.parse_args([
        "train", "--output_dir", str(out), "--max_steps", "3", "--ul2_steps", "2", "--num_rounds", "1",
        "--canvas_length", "16", "--timesteps_per_chain", "2", "--per_device_train_batch_size", "2", "--use_cpu",
        "--logging_steps", "1", "--save_steps", "3", "--disable_tqdm", "true", "--sample_rows", "1",
    ])
    assert namespace.func(namespace) == 0
    assert os.path.isfile(out / "model.safetensors")
    assert os.path.isfile(out / "checkpoint-3" / "glauber_reference" / "model.safetensors")
    assert "sample:" in capsys.readouterr().out
    png = plot(str(out))
    assert os.path.getsize(png) > 1000
