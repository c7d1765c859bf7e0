"""Tiny random models and data shared by the trainer tests (no Hub access)."""

from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration  # noqa: E402

from modeling_glauber import GlauberT5ForDiffusion  # noqa: E402

CORPUS = os.path.join(ROOT, "examples", "data", "corpus.txt")


def tiny_t5(num_rounds: int = 2, mask_window: int = 1, seed: int = 0, dropout: float = 0.1, **kwargs):
    torch.manual_seed(seed)
    config = T5Config(vocab_size=384, d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64,
                      decoder_start_token_id=0, dropout_rate=dropout)
    backbone = T5ForConditionalGeneration(config)
    return GlauberT5ForDiffusion.from_backbone(
        backbone, ByT5Tokenizer(), num_rounds=num_rounds, mask_window=mask_window,
        time_frequency_dim=16, time_embedding_dim=16, **kwargs
    )


def tiny_t5gemma(num_rounds: int = 1, seed: int = 0):
    from transformers import T5GemmaConfig, T5GemmaForConditionalGeneration

    torch.manual_seed(seed)
    module = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, vocab_size=384)
    backbone = T5GemmaForConditionalGeneration(T5GemmaConfig(encoder=dict(module), decoder=dict(module)))
    return GlauberT5ForDiffusion.from_backbone(
        backbone, ByT5Tokenizer(), num_rounds=num_rounds, time_frequency_dim=16, time_embedding_dim=16
    )


def toy_rows(num: int = 16, length: int = 6, prompt: bool = True, seed: int = 0) -> dict[str, list]:
    g = torch.Generator().manual_seed(seed)
    canvas = torch.randint(70, 90, (num, length), generator=g).tolist()
    prompts = [torch.randint(70, 90, (i % 3 + 1,), generator=g).tolist() if prompt and i % 2 else [] for i in range(num)]
    frozen = [[int(j == i % length and i % 4 == 0) for j in range(length)] for i in range(num)]
    return {"input_ids": prompts, "canvas_ids": canvas, "frozen": frozen}
