"""Tiny random backbones and converted Glauber models for tests (no files, no network)."""

from __future__ import annotations

import torch
from transformers import (
    ByT5Tokenizer,
    T5Config,
    T5ForConditionalGeneration,
    T5GemmaConfig,
    T5GemmaForConditionalGeneration,
)


def tiny_t5(seed: int = 0, vocab_size: int = 384) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size, d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64, decoder_start_token_id=0,
        dropout_rate=0.0,
    )
    return T5ForConditionalGeneration(config).eval()


def tiny_t5gemma(seed: int = 0, vocab_size: int = 384) -> T5GemmaForConditionalGeneration:
    torch.manual_seed(seed)
    module = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=16, vocab_size=vocab_size, dropout_rate=0.0, attention_dropout=0.0,
    )
    return T5GemmaForConditionalGeneration(T5GemmaConfig(encoder=dict(module), decoder=dict(module))).eval()


BACKBONES = {"t5": tiny_t5, "t5gemma": tiny_t5gemma}


def tokenizer_without_sentinels():
    """A 44-word fast tokenizer with T5-Gemma's specials (pad 0, eos 1, bos 2) and no `<extra_id_*>`, as T5-Gemma's own
    tokenizer: `from_backbone` must add the sentinels and resize."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<bos>", "<unk>"] + [f"w{i}" for i in range(40)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", bos_token="<bos>",
                                   unk_token="<unk>")



def make_glauber(kind: str = "t5", tokenizer=None, seed: int = 0, perturb_time: bool = True, vocab_size: int = 384,
                 **kwargs):
    """A tiny converted model; `perturb_time` gives the zero-initialised time projection random values so that
    tests see a model whose output really depends on τ."""
    from modeling_glauber import GlauberT5ForDiffusion

    backbone = BACKBONES[kind](seed, vocab_size=vocab_size)
    model = GlauberT5ForDiffusion.from_backbone(backbone, tokenizer or ByT5Tokenizer(), **kwargs).eval()
    if perturb_time:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            weight = model.time_conditioning.modulation.weight
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.2)
    return model
