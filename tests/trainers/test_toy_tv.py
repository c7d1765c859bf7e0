"""End to end on a known law: GlauberTrainer + generate() reproduce it (total variation), for N = 1 and N = 3."""

from __future__ import annotations

import itertools
import time

import torch
from datasets import Dataset

from trainer_fixtures import tiny_t5
from trainers import GlauberTrainer, GlauberTrainingArguments

ALPHABET = [80, 81, 82]  # three content tokens; every other id is suppressed
LAW = {(0, 1, 2): 0.3, (1, 2, 0): 0.25, (2, 0, 1): 0.2, (0, 0, 0): 0.15, (2, 2, 1): 0.1}
LENGTH = 3


def toy_model(num_rounds: int):
    model = tiny_t5(num_rounds=num_rounds, dropout=0.0)
    model.restrict_canvas_vocabulary(ALPHABET)
    return model


def sample_law(num: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    keys = list(LAW)
    picks = torch.multinomial(torch.tensor([LAW[k] for k in keys]), num, replacement=True, generator=g)
    return [[ALPHABET[i] for i in keys[j]] for j in picks.tolist()]


def total_variation(samples: torch.Tensor) -> float:
    counts = {}
    for row in samples.tolist():
        key = tuple(ALPHABET.index(v) if v in ALPHABET else -1 for v in row)
        counts[key] = counts.get(key, 0) + 1
    states = set(itertools.product(range(3), repeat=LENGTH)) | set(counts)
    n = samples.shape[0]
    return 0.5 * sum(abs(counts.get(s, 0) / n - LAW.get(s, 0.0)) for s in states)


def train_and_measure(tmp_path, num_rounds: int, steps: int, causal_target: str = "data", samples: int = 3000,
                      lr: float = 1e-3, batch: int = 32):
    model = toy_model(num_rounds)
    data = Dataset.from_dict({"input_ids": [[] for _ in range(1024)], "canvas_ids": sample_law(1024, 0)})
    args = GlauberTrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
        warmup_steps=10, timesteps_per_chain=num_rounds * LENGTH, reference_update_steps=10, reference_ema_decay=0.5,
        causal_loss_weight=1.0, causal_loss_target=causal_target, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=50, disable_tqdm=True, seed=0,
    )
    started = time.perf_counter()
    GlauberTrainer(model=model, args=args, train_dataset=data).train()
    model.eval()
    out = model.generate(max_new_tokens=LENGTH, canvas_ids=torch.full((samples, LENGTH), ALPHABET[0]),
                         seed=123, return_dict_in_generate=True)
    tv, tv_draft = total_variation(out.sequences), total_variation(out.draft_sequences)
    print(f"N={num_rounds} causal target={causal_target}: TV={tv:.4f} (draft TV={tv_draft:.4f}), "
          f"{steps} steps in {time.perf_counter() - started:.1f}s")
    return tv


def test_trained_toy_reproduces_the_law_and_more_rounds_are_no_worse(tmp_path):
    # DESIGN §5 measured: the draft must start the reverse chain at p_T, so the causal loss targets the chain's x_T
    # (with causal_loss_target="data", N=1 and 600 steps gave TV = 0.102 although the draft alone was at 0.027).
    # measured (shared 2-core CPU, one thread as in this suite): N=1, 800 steps of batch 32 at lr 2e-3: TV 0.032 (400
    # steps at lr 1e-3: 0.056, 0.035 with other CPU kernels; 400 of batch 64 at 3e-3: 0.053; 400 of batch
    # 128 at 3e-3: 0.041; 600 of batch 64 at 3e-3: 0.060, within the ≈0.016 Monte-Carlo spread of the estimate);
    # N=3, 400 steps of batch 64 at lr 3e-3: TV 0.028 (draft TV 0.99: after 9 reference steps the chain has left the
    # data's support, and the 9 reverse steps bring it back). N=3 with 1000 steps of batch 32 at lr 2e-3 reached 0.048
    # in twice the time: the chains' cost per step hardly grows with the batch
    tv1 = train_and_measure(tmp_path / "n1", num_rounds=1, steps=800, causal_target="chain", lr=2e-3)
    tv3 = train_and_measure(tmp_path / "n3", num_rounds=3, steps=400, causal_target="chain", lr=3e-3, batch=64)
    assert tv1 <= 0.05 and tv3 <= 0.05
    assert tv3 <= tv1 + 0.02  # up to Monte-Carlo error (≈0.016 at 3000 samples)
