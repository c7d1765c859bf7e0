"""Small-scale measurements of issue 4 (no pretrained weights can be downloaded here, so everything is tiny):

1. Bound vs exact NLL on an enumerable toy (3 content tokens, L = 3, a known data law), after Glauber training:
   the exact NLL and the exact expected bound by enumeration, and Monte-Carlo estimates for several `mc_samples`
   (the plain estimate's spread shrinks; the importance-weighted one tightens towards the exact NLL).
2. Generative perplexity of unconditional samples after Glauber training on local text, draft (N = 0) vs N = 1, 3,
   judged by a separately trained tiny GPT-2, with unigram entropy beside it and held-out text as a reference.

    python examples/eval_small_scale.py --out eval_small_scale

Both trainings use `GlauberTrainer`'s defaults for the objective (draft trained on the chains' x_T, reference EMA
every 10 steps with decay 0.99); `--causal_loss_target`, `--causal_loss_weight`, `--reference_update_steps` and
`--reference_ema_decay` override them for the text run (e.g. `--causal_loss_target data` to compare), and
`gen_ppl.json` keeps the text run's last logged losses (infill, causal, per τ bucket). `--skip_toy` runs part 2 only.
Writes `bound_toy.json` and `gen_ppl.json` (render with `glauber eval report`) and prints both tables.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import torch
from datasets import Dataset
from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from eval.bound import BoundEstimate, enumerate_toy, glauber_bound
from eval.gen_ppl import generative_perplexity, sample_texts
from eval.report import write_result
from modeling_glauber import GlauberT5ForDiffusion
from trainers import GlauberTrainer, GlauberTrainingArguments, pack_text_dataset

PRINTABLE = [byte + 3 for byte in range(32, 127)]  # ByT5 ids of printable ASCII
TOY_CONTENT = [100, 101, 102]  # "a", "b", "c"
TOY_LAW = {"abc": 0.5, "acb": 0.3, "cab": 0.2}


def glauber_model(tokenizer, content: list[int], num_rounds: int, width: int, seed: int) -> GlauberT5ForDiffusion:
    """A small random T5 turned Glauber model that may emit only `content`."""
    torch.manual_seed(seed)
    backbone = T5ForConditionalGeneration(
        T5Config(vocab_size=384, d_model=width, num_layers=2, num_heads=4, d_kv=width // 4, d_ff=2 * width,
                 decoder_start_token_id=0, dropout_rate=0.0)
    )
    model = GlauberT5ForDiffusion.from_backbone(
        backbone, tokenizer, num_rounds=num_rounds, time_frequency_dim=32, time_embedding_dim=64
    )
    model.restrict_canvas_vocabulary(content)
    return model


OBJECTIVE_ARGUMENTS = ("causal_loss_weight", "causal_loss_target", "reference_update_steps", "reference_ema_decay")


def train_glauber(model, tokenizer, dataset, out_dir: str, steps: int, batch_size: int, lr: float,
                  objective: dict | None = None):
    """`GlauberTrainer` with the library's defaults for the objective, except the `objective` arguments given;
    returns the model and the last logged entry (losses per τ bucket, infill, causal)."""
    args = GlauberTrainingArguments(
        output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
        warmup_steps=min(50, steps // 10), timesteps_per_chain=8, logging_steps=max(1, steps // 5),
        save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True, **(objective or {}),
    )
    trainer = GlauberTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    last_log = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    return model.eval(), {"objective": {name: getattr(args, name) for name in OBJECTIVE_ARGUMENTS}, **last_log}


def bound_on_toy(tokenizer, out_dir: str, steps: int) -> dict:
    rng = random.Random(0)
    words = rng.choices(list(TOY_LAW), weights=list(TOY_LAW.values()), k=2048)
    rows = Dataset.from_dict({"input_ids": [[] for _ in words], "canvas_ids": [[ord(c) + 3 for c in w] for w in words]})
    model, _ = train_glauber(glauber_model(tokenizer, TOY_CONTENT, 2, 32, 0), tokenizer, rows, out_dir, steps, 32, 3e-3)
    prefix = model.build_prefix(None, batch_size=1)
    metrics = {}
    for word, probability in TOY_LAW.items():
        x0 = torch.tensor([[ord(c) + 3 for c in word]])
        exact = enumerate_toy(model, prefix, x0, TOY_CONTENT)
        repeats, largest = 50, 64
        pool = glauber_bound(model, prefix, x0, mc_samples=repeats * largest, seed=11, batch_size=2048).samples[0]
        row = {"data_nll": -float(torch.tensor(probability).log()), "exact_nll": exact.nll, "exact_bound": exact.bound}
        for m in (1, 4, 16, 64):
            estimate = BoundEstimate(pool[: repeats * m].view(repeats, m), 0)
            row[f"M={m}"] = {
                "mean": float(estimate.mean.mean()),
                "spread": float(estimate.mean.std()),
                "importance_weighted": float(estimate.importance_weighted.mean()),
            }
        metrics[word] = row
    return metrics


def train_judge(ids: list[int], context: int, steps: int, seed: int) -> GPT2LMHeadModel:
    """A tiny GPT-2 on the same bytes (BOS = ByT5's </s>, id 1), trained on random windows."""
    torch.manual_seed(seed)
    judge = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_positions=context, n_embd=64, n_layer=2, n_head=4,
                                       bos_token_id=1, eos_token_id=1))
    optimiser = torch.optim.AdamW(judge.parameters(), lr=2e-3)
    data = torch.tensor(ids)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - context, (32,))
        batch = torch.stack([data[s : s + context - 1] for s in starts.tolist()])
        batch = torch.cat([torch.ones(32, 1, dtype=torch.long), batch], dim=1)
        loss = judge(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return judge.eval()


def gen_ppl_on_text(tokenizer, corpus: str, out_dir: str, steps: int, judge_steps: int, length: int, num_samples: int,
                    objective: dict | None = None) -> dict:
    lines = [line for line in corpus.splitlines() if line.strip()]
    split = int(0.9 * len(lines))
    train_text, heldout_text = " ".join(lines[:split]), " ".join(lines[split:])
    dataset = pack_text_dataset(Dataset.from_dict({"text": [train_text]}), tokenizer, canvas_length=length)
    model, last_log = train_glauber(glauber_model(tokenizer, PRINTABLE, 3, 64, 0), tokenizer, dataset, out_dir, steps,
                                    16, 2e-3, objective)
    judge = train_judge(tokenizer(train_text, add_special_tokens=False).input_ids, 128, judge_steps, 1)
    heldout_ids = tokenizer(heldout_text, add_special_tokens=False).input_ids
    heldout = [tokenizer.decode(heldout_ids[s : s + length]) for s in range(0, len(heldout_ids) - length + 1, length)]
    metrics = {"heldout text": generative_perplexity(heldout, judge, tokenizer, progress=False).to_dict()}
    for rounds in (0, 1, 3):
        texts, calls = sample_texts(model, tokenizer, num_samples=num_samples, length=length, num_rounds=rounds,
                                    seed=0, progress=False)
        result = generative_perplexity(texts, judge, tokenizer, progress=False).to_dict()
        metrics[f"N={rounds}"] = {**result, "model_calls_per_sample": calls, "example": texts[0]}
    for row in metrics.values():
        row.pop("sample_nll")
    metrics["training"] = last_log
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="eval_small_scale")
    parser.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "data", "corpus.txt"))
    parser.add_argument("--toy_steps", type=int, default=300)
    parser.add_argument("--text_steps", type=int, default=600)
    parser.add_argument("--judge_steps", type=int, default=600)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--skip_toy", action="store_true", help="only the generative-perplexity part")
    parser.add_argument("--causal_loss_weight", type=float, default=None, help="default: the trainer's")
    parser.add_argument("--causal_loss_target", choices=("chain", "data"), default=None, help="default: the trainer's")
    parser.add_argument("--reference_update_steps", type=int, default=None, help="default: the trainer's")
    parser.add_argument("--reference_ema_decay", type=float, default=None, help="default: the trainer's")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    objective = {name: getattr(args, name) for name in OBJECTIVE_ARGUMENTS if getattr(args, name) is not None}
    torch.set_num_threads(args.threads)
    tokenizer = ByT5Tokenizer()
    start = time.time()
    if not args.skip_toy:
        toy = bound_on_toy(tokenizer, os.path.join(args.out, "toy_run"), args.toy_steps)
        write_result(os.path.join(args.out, "bound_toy.json"), "bound_toy", {**vars(args), "law": TOY_LAW}, toy)
    with open(args.corpus, encoding="utf-8") as handle:
        corpus = handle.read()
    text = gen_ppl_on_text(tokenizer, corpus, os.path.join(args.out, "text_run"), args.text_steps, args.judge_steps,
                           args.length, args.num_samples, objective)
    config = {**vars(args), "aggregation": "corpus exp(mean NLL) and per-sample mean of exp(mean NLL); entropy in nats"}
    write_result(os.path.join(args.out, "gen_ppl.json"), "gen_ppl", config, text)
    print(f"\ntotal {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
