"""Generative perplexity: samples of a Glauber model judged by an independent causal LM (GPT-2 Large in the paper).

Each sample is re-tokenised with the judge's tokenizer and prefixed with the judge's BOS (or EOS when it has no
BOS). The sequence `[bos] + tokens` is cut into windows of the judge's context length C that overlap by one token,
so every sample token is predicted exactly once, with the preceding tokens of its window (at least one) as context.
Log-probabilities are taken in float64. Two aggregations are reported, since published numbers differ:

    corpus_ppl      = exp( Σ_samples Σ_tokens NLL / Σ_samples n_tokens )       (MDLM's)
    mean_sample_ppl = mean over samples of exp( mean NLL of the sample )      (SEDD's)

beside the unigram entropy of the samples' judge tokens (nats; mean over samples), which exposes degenerate,
repetitive samples that a judge rates as likely.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .loading import decode_canvas, encode_prompts


@dataclass
class GenPPLResult:
    corpus_ppl: float
    mean_sample_ppl: float
    unigram_entropy: float
    num_samples: int
    num_tokens: int
    sample_nll: list[float]  # mean NLL per token of each sample

    def to_dict(self) -> dict:
        return asdict(self)


def unigram_entropy(tokens: list[int]) -> float:
    """H = −Σ_v p_v log p_v (nats) of the empirical token distribution of one sample."""
    if not tokens:
        return 0.0
    counts = torch.tensor(list(Counter(tokens).values()), dtype=torch.float64)
    probs = counts / counts.sum()
    return float(-(probs * probs.log()).sum())


def judge_windows(ids: list[int], context_length: int) -> list[list[int]]:
    """Windows of at most C tokens over `ids` (its first element is the BOS), consecutive ones sharing one token."""
    if context_length < 2:
        raise ValueError(f"the judge's context length must be >= 2, got {context_length}")
    step = context_length - 1
    return [ids[start : start + context_length] for start in range(0, max(1, len(ids) - 1), step)]


def _context_length(judge, override: int | None) -> int:
    if override is not None:
        return override
    config = getattr(judge, "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ValueError("cannot tell the judge's context length; pass context_length")


@torch.no_grad()
def generative_perplexity(
    texts: list[str],
    judge,
    judge_tokenizer,
    *,
    batch_size: int = 8,
    context_length: int | None = None,
    progress: bool = True,
) -> GenPPLResult:
    """Judge `texts` with the causal LM `judge` (any module returning `.logits` `[B, T, V]` for `input_ids`)."""
    length = _context_length(judge, context_length)
    bos = judge_tokenizer.bos_token_id if judge_tokenizer.bos_token_id is not None else judge_tokenizer.eos_token_id
    if bos is None:
        raise ValueError("the judge tokenizer has neither a BOS nor an EOS token to start each sample with")
    sample_tokens = [judge_tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    windows = [(sample, window) for sample, ids in enumerate(sample_tokens) for window in judge_windows([bos] + ids, length)]
    nll = [0.0] * len(texts)
    device = next(judge.parameters()).device if hasattr(judge, "parameters") else torch.device("cpu")
    pad = judge_tokenizer.pad_token_id if judge_tokenizer.pad_token_id is not None else bos
    for start in tqdm(range(0, len(windows), batch_size), desc="gen-ppl judge", disable=not progress):
        chunk = windows[start : start + batch_size]
        width = max(len(window) for _, window in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (_, window) in enumerate(chunk):
            ids[row, : len(window)] = torch.tensor(window)
            mask[row, : len(window)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = judge(input_ids=ids, attention_mask=mask).logits.double()
        logprobs = logits[:, :-1].log_softmax(dim=-1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
        logprobs = logprobs * mask[:, 1:]
        for row, (sample, _) in enumerate(chunk):
            nll[sample] -= float(logprobs[row].sum())
    counts = [len(ids) for ids in sample_tokens]
    if sum(counts) == 0:
        raise ValueError("the samples contain no judge tokens")
    per_sample = [total / count if count else 0.0 for total, count in zip(nll, counts)]
    scored = [value for value, count in zip(per_sample, counts) if count]
    return GenPPLResult(
        corpus_ppl=math.exp(sum(nll) / sum(counts)),
        mean_sample_ppl=sum(math.exp(value) for value in scored) / len(scored),
        unigram_entropy=sum(unigram_entropy(ids) for ids in sample_tokens) / len(sample_tokens),
        num_samples=len(texts),
        num_tokens=sum(counts),
        sample_nll=per_sample,
    )


@torch.no_grad()
def sample_texts(
    model,
    tokenizer,
    *,
    num_samples: int,
    length: int,
    prompts: list[str] | None = None,
    num_rounds: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    **sampling,
) -> tuple[list[str], int]:
    """`num_samples` canvases of `length` tokens (unconditional, or one per prompt, cycling through `prompts`) and
    the model invocations per sample ((N+1)·L). Sample i uses seed `seed + i`, whatever the batching."""
    texts: list[str] = []
    calls = 0
    for start in tqdm(range(0, num_samples, batch_size), desc="glauber samples", disable=not progress):
        rows = list(range(start, min(start + batch_size, num_samples)))
        input_ids = mask = None
        if prompts:
            input_ids, mask = encode_prompts(tokenizer, [prompts[i % len(prompts)] for i in rows], model.device)
        out = model.generate(
            input_ids, mask, max_new_tokens=length, batch_size=None if prompts else len(rows), num_rounds=num_rounds,
            seed=[seed + i for i in rows],
            return_dict_in_generate=True, **sampling,
        )
        texts += decode_canvas(tokenizer, out.sequences)
        calls = out.num_model_calls
    return texts, calls


__all__ = ["GenPPLResult", "generative_perplexity", "judge_windows", "sample_texts", "unigram_entropy"]
