"""Trainer throughput: samples/s, loss terms/s and the share of step time spent in noising, with/without chain reuse.

    python benchmarks/bench_train.py [--steps 10 --batch 8 --length 32 --num-rounds 1 --threads 1]

Chain reuse = `timesteps_per_chain` K loss terms per noising chain (appendix A, K = 32); without it K = 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from datasets import Dataset
from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_glauber import GlauberT5ForDiffusion  # noqa: E402
from trainers import GlauberTrainer, GlauberTrainingArguments  # noqa: E402


def run(steps: int, batch: int, length: int, num_rounds: int, per_chain: int, d_model: int) -> dict[str, float]:
    torch.manual_seed(0)
    config = T5Config(vocab_size=384, d_model=d_model, num_layers=2, num_heads=4, d_kv=d_model // 4,
                      d_ff=4 * d_model, decoder_start_token_id=0)
    model = GlauberT5ForDiffusion.from_backbone(T5ForConditionalGeneration(config), ByT5Tokenizer(),
                                                num_rounds=num_rounds)
    canvas = torch.randint(70, 120, (steps * batch, length)).tolist()
    data = Dataset.from_dict({"input_ids": [[] for _ in canvas], "canvas_ids": canvas})
    args = GlauberTrainingArguments(output_dir="/tmp/bench_train", max_steps=steps, per_device_train_batch_size=batch,
                                    timesteps_per_chain=per_chain, use_cpu=True, report_to="none",
                                    save_strategy="no", logging_steps=steps, disable_tqdm=True)
    trainer = GlauberTrainer(model=model, args=args, train_dataset=data)
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    return {
        "samples_per_s": steps * batch / elapsed,
        "loss_terms_per_s": steps * batch * per_chain / elapsed,
        "noising_share": trainer.noising_seconds / elapsed,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--num-rounds", type=int, default=1)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--per-chain", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    run(2, a.batch, a.length, a.num_rounds, 1, a.d_model)  # warm-up (lazy imports, allocator)
    print(f"device=cpu threads={torch.get_num_threads()} L={a.length} N={a.num_rounds} batch={a.batch} steps={a.steps}")
    for per_chain in (a.per_chain, 1):
        r = run(a.steps, a.batch, a.length, a.num_rounds, per_chain, a.d_model)
        print(f"timesteps_per_chain={per_chain:3d}: {r['samples_per_s']:.2f} samples/s, "
              f"{r['loss_terms_per_s']:.1f} loss terms/s, noising {100 * r['noising_share']:.0f}% of step time")


if __name__ == "__main__":
    main()
