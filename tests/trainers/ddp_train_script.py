"""Run by test_multiprocess.py under torchrun or accelerate launch (2 ranks, gloo on CPU): a few DDP steps, then dump weights."""

from __future__ import annotations

import os
import sys

import torch
from datasets import Dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from trainer_fixtures import tiny_t5, toy_rows  # noqa: E402
from trainers import GlauberTrainer, GlauberTrainingArguments  # noqa: E402


def main(output_dir: str) -> None:
    torch.set_num_threads(1)
    args = GlauberTrainingArguments(
        output_dir=output_dir, max_steps=3, per_device_train_batch_size=2, timesteps_per_chain=2,
        reference_update_steps=2, reference_ema_decay=0.5, learning_rate=1e-2, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, causal_loss_weight=0.5,
    )
    rows = toy_rows()
    # three rows in four fully frozen: some steps give one rank only placeholder terms, and its logging must still join
    # the other rank's reduce
    rows["frozen"] = [[1] * len(canvas) if i % 4 else flags for i, (canvas, flags) in
                      enumerate(zip(rows["canvas_ids"], rows["frozen"]))]
    trainer = GlauberTrainer(model=tiny_t5(), args=args, train_dataset=Dataset.from_dict(rows))
    trainer.train()
    rank = trainer.args.process_index
    state = {f"model.{n}": p.detach().clone() for n, p in trainer.model.named_parameters()}
    state.update({f"reference.{n}": r.detach().clone() for n, r, _ in trainer.reference.pairs()})
    torch.save({"world_size": trainer.args.world_size, "state": state}, os.path.join(output_dir, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
