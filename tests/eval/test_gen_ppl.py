"""Generative perplexity against hand-computed values for a bigram judge whose probabilities are written down."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from eval.gen_ppl import generative_perplexity, judge_windows, sample_texts, unigram_entropy


class BigramJudge(torch.nn.Module):
    """p(next | prev) = softmax(table[prev]): a causal LM whose every probability is known."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)  # float64: the value below is exact to 1e-12
        self.config = SimpleNamespace(n_positions=1024)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


class CharTokenizer:
    """'a' → 1, 'b' → 2; BOS = 0."""

    bos_token_id, eos_token_id, pad_token_id = 0, None, None

    def __call__(self, text, add_special_tokens=False):
        return SimpleNamespace(input_ids=[{"a": 1, "b": 2}[c] for c in text])


TABLE = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.1, 0.2, 0.7], [0.1, 0.5, 0.4]], dtype=torch.float64))


def test_matches_hand_computation():
    judge = BigramJudge(TABLE)
    # "ab": p(a|bos)=0.6, p(b|a)=0.7; "bba": p(b|bos)=0.3, p(b|b)=0.4, p(a|b)=0.5
    nll_ab = -(math.log(0.6) + math.log(0.7))
    nll_bba = -(math.log(0.3) + math.log(0.4) + math.log(0.5))
    result = generative_perplexity(["ab", "bba"], judge, CharTokenizer(), progress=False)
    assert result.corpus_ppl == pytest.approx(math.exp((nll_ab + nll_bba) / 5), rel=1e-12)
    assert result.mean_sample_ppl == pytest.approx((math.exp(nll_ab / 2) + math.exp(nll_bba / 3)) / 2, rel=1e-12)
    # entropies: "ab" → log 2; "bba" → −(2/3 log 2/3 + 1/3 log 1/3)
    expected_entropy = (math.log(2) - (2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))) / 2
    assert result.unigram_entropy == pytest.approx(expected_entropy, rel=1e-12)
    assert result.num_tokens == 5
    # a degenerate sample: lowest entropy
    assert unigram_entropy([2, 2, 2, 2]) == 0.0


def test_windows_predict_every_token_once():
    assert judge_windows([0, 1, 2, 3, 4, 5], 3) == [[0, 1, 2], [2, 3, 4], [4, 5]]
    assert judge_windows([0], 3) == [[0]]
    # a bigram judge only sees one token back, so windows of any size >= 2 give the same value
    texts = ["abbabaab", "bbbbab"]
    full = generative_perplexity(texts, BigramJudge(TABLE), CharTokenizer(), progress=False)
    for size in (2, 3, 5):
        small = generative_perplexity(texts, BigramJudge(TABLE), CharTokenizer(), context_length=size, batch_size=3, progress=False)
        assert small.corpus_ppl == pytest.approx(full.corpus_ppl, rel=1e-12)
    with pytest.raises(ValueError, match="context length"):
        judge_windows([0, 1], 1)


def test_samples_are_seeded_per_row_and_counted(model, tokenizer):
    texts, calls = sample_texts(model, tokenizer, num_samples=3, length=5, num_rounds=1, batch_size=2, seed=4, progress=False)
    again, _ = sample_texts(model, tokenizer, num_samples=3, length=5, num_rounds=1, batch_size=3, seed=4, progress=False)
    assert texts == again and calls == (1 + 1) * 5
    assert all(len(text) == 5 for text in texts)  # printable-ASCII model: one byte, one character
