"""Iso-compute best-of-N (paper §4.3, table 1): per prompt, K Glauber candidates with N = 1 round ((1+1)·L model
invocations each) against 2K autoregressive candidates of the same backbone (its causal mode, L invocations each),
so both arms spend 2·K·L invocations per prompt. The invocations are counted, not assumed, and reported.

Selection by the task's criterion: `oracle` = a prompt is solved when any candidate's extracted answer matches the
gold answer (a perfect verifier, as for GSM8K answer match or multiple-choice correctness); `majority` = the most
frequent extracted answer is compared (no access to the gold answer).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .loading import decode_canvas, encode_prompts

ANSWER_KINDS = ("number", "choice", "exact")
SELECTIONS = ("oracle", "majority")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CHOICE = re.compile(r"\b([A-E1-5])\b")


@dataclass(frozen=True)
class Item:
    """One prompt, its gold answer and how answers are read from a candidate."""

    prompt: str
    answer: str
    kind: str = "number"


def extract_answer(text: str, kind: str) -> str | None:
    """number: the last number (GSM8K style, commas dropped); choice: the first option label; exact: the stripped text."""
    if kind == "number":
        found = _NUMBER.findall(text)
        return found[-1].replace(",", "").rstrip(".") if found else None
    if kind == "choice":
        found = _CHOICE.search(text)
        return found.group(1) if found else None
    if kind == "exact":
        return text.strip()
    raise ValueError(f"answer kind must be one of {ANSWER_KINDS}, got {kind!r}")


def select(candidates: list[str], item: Item, selection: str) -> bool:
    """Whether the prompt counts as solved under `selection`."""
    answers = [extract_answer(text, item.kind) for text in candidates]
    gold = extract_answer(item.answer, item.kind) if item.kind != "exact" else item.answer.strip()
    if selection == "oracle":
        return any(answer == gold for answer in answers)
    if selection == "majority":
        counted = Counter(answer for answer in answers if answer is not None)
        return bool(counted) and counted.most_common(1)[0][0] == gold
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")


@torch.no_grad()
def _candidates(model, tokenizer, items, per_prompt, length, num_rounds, seed, batch_size, progress, desc, sampling):
    """`per_prompt` candidates for every item and the model invocations spent per prompt (summed over its rows)."""
    rows = [(i, j) for i in range(len(items)) for j in range(per_prompt)]
    texts: list[list[str]] = [[] for _ in items]
    invocations = [0] * len(items)
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=not progress):
        chunk = rows[start : start + batch_size]
        input_ids, mask = encode_prompts(tokenizer, [items[i].prompt for i, _ in chunk], model.device)
        out = model.generate(
            input_ids, mask, max_new_tokens=length, num_rounds=num_rounds, return_dict_in_generate=True,
            seed=[seed + 100_003 * i + j for i, j in chunk], **sampling,
        )
        # every row of a batched call is one invocation of the network on that row
        for (i, _), text in zip(chunk, decode_canvas(tokenizer, out.sequences)):
            texts[i].append(text)
            invocations[i] += out.num_model_calls
    return texts, invocations


def best_of_n(
    items: list[Item],
    model,
    tokenizer,
    *,
    k: int,
    length: int,
    ar_model=None,
    selection: str = "oracle",
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    **sampling,
) -> dict:
    """Accuracy and counted invocations per prompt of Glauber BoN=K (N = 1) and AR BoN=2K (`ar_model`'s causal
    mode, default the same model with num_rounds = 0)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    arms = {
        "glauber": (model, k, 1),
        "ar": (ar_model if ar_model is not None else model, 2 * k, 0),
    }
    result = {"k": k, "length": length, "selection": selection, "num_prompts": len(items)}
    for name, (arm_model, per_prompt, num_rounds) in arms.items():
        texts, invocations = _candidates(
            arm_model, tokenizer, items, per_prompt, length, num_rounds, seed, batch_size, progress, f"best-of-n {name}", sampling
        )
        solved = [select(candidates, item, selection) for candidates, item in zip(texts, items)]
        result[name] = {
            "candidates": per_prompt,
            "accuracy": sum(solved) / len(items),
            "model_calls_per_prompt": sum(invocations) / len(items),
            "samples": texts,
        }
    return result


__all__ = ["Item", "best_of_n", "extract_answer", "select", "ANSWER_KINDS", "SELECTIONS"]
