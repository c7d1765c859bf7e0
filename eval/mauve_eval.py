"""MAUVE (Pillutla et al.) of prefix-conditioned generations against human continuations (the paper's table 3).

mauve-text featurises text with gpt2-large from the Hub; here features come from any local HF model instead
(`AutoModel` hidden state of each text's last token, as mauve-text does), and `mauve.compute_mauve` gets features.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


@torch.no_grad()
def featurize(texts: list[str], model, tokenizer, *, batch_size: int = 16, max_length: int = 1024, progress: bool = True) -> np.ndarray:
    """`[n, d]` final-layer hidden state at the last real token of each text (float32 numpy)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    features = []
    for start in tqdm(range(0, len(texts), batch_size), desc="mauve features", disable=not progress):
        ids = [tokenizer(t, add_special_tokens=False).input_ids[:max_length] or [pad] for t in texts[start : start + batch_size]]
        width = max(map(len, ids))
        batch = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        hidden = model(input_ids=batch.to(device), attention_mask=mask.to(device)).last_hidden_state
        last = mask.sum(dim=1).to(device) - 1
        features.append(hidden[torch.arange(len(ids), device=device), last].float().cpu())
    return torch.cat(features).numpy()


def mauve_score(
    model_texts: list[str],
    human_texts: list[str],
    feature_model,
    feature_tokenizer,
    *,
    seed: int = 25,
    num_buckets: int | str = "auto",
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, float]:
    """`{"mauve", "frontier_integral"}` between model and human texts (higher MAUVE = closer)."""
    import mauve

    p = featurize(human_texts, feature_model, feature_tokenizer, batch_size=batch_size, progress=progress)
    q = featurize(model_texts, feature_model, feature_tokenizer, batch_size=batch_size, progress=progress)
    out = mauve.compute_mauve(p_features=p, q_features=q, seed=seed, num_buckets=num_buckets, verbose=False, device_id=-1)
    return {"mauve": float(out.mauve), "frontier_integral": float(out.frontier_integral)}


def split_prefix(
    tokenizer, texts: list[str], prefix_tokens: int, continuation_tokens: int | None = None
) -> tuple[list[str], list[str]]:
    """Prompts (the first `prefix_tokens` tokens of each reference) and the human continuations after them, cut to
    `continuation_tokens` tokens (the model's continuation length) when given."""
    end = None if continuation_tokens is None else prefix_tokens + continuation_tokens
    prompts, continuations = [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        prompts.append(tokenizer.decode(ids[:prefix_tokens], skip_special_tokens=True))
        continuations.append(tokenizer.decode(ids[prefix_tokens:end], skip_special_tokens=True))
    return prompts, continuations


def join_prefix(tokenizer, prompt: str, continuation: str) -> str:
    """`prompt` followed by `continuation`, joined as token sequences: a SentencePiece continuation decoded on its
    own has lost the word boundary at its start, which string concatenation would not restore. Model and human
    texts are joined the same way, so neither side carries an artefact the other lacks."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids + tokenizer(continuation, add_special_tokens=False).input_ids
    return tokenizer.decode(ids, skip_special_tokens=True)


__all__ = ["featurize", "join_prefix", "mauve_score", "split_prefix"]
