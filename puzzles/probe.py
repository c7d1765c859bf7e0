"""Does a puzzle model read its prompt? The stage-1 losses with each puzzle's own prompt against another puzzle's,
and whether its MASK-INFILL prediction looks at the cell it fills (`readout_attention`).

A Zebra canvas has no givens: everything that singles out the answer is in the prompt, so a model that scores the
canvas as well with a stranger's clues as with its own has learned the canvas's structure (each attribute row a
permutation) and nothing about the clues, and no number of Glauber rounds can solve with it. The comparison is
paired: the same rows, masks and corruptions (one collator seed), only the prompts swapped, each for the next one of
the same size in the set (a size met once keeps its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerFast

from modeling_glauber import GlauberT5ForDiffusion
from puzzles.recipe import PuzzleUL2Collator, legal_canvas_tokens, tokenized

# the stage-1 tasks measured: (name, collator settings)
TASKS: tuple[tuple[str, dict[str, float | int]], ...] = (
    ("causal draft (CAUSAL-GEN)", {"causal_fraction": 1.0}),
    ("infill 1–8 cells, the rest true", {"causal_fraction": 0.0, "max_corruption": 0.0, "infill_targets": 8}),
    ("infill 1–8 cells, the rest relabelled", {"causal_fraction": 0.0, "relabel_corruption": 1.0, "infill_targets": 8}),
)


def other_prompts(rows: list[dict[str, Any]]) -> list[str]:
    """Each row's prompt replaced by that of the next row of the same `size` (cyclically)."""
    by_size: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_size.setdefault(row["size"], []).append(i)
    swapped = [row["prompt"] for row in rows]
    for members in by_size.values():
        for j, i in enumerate(members):
            swapped[i] = rows[members[(j + 1) % len(members)]]["prompt"]
    return swapped


def _legal_ids(tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]]) -> list[int]:
    """The token ids a free canvas cell of `rows`' puzzle kind and size may hold."""
    if not rows:
        raise ValueError("rows must hold at least one puzzle")
    kind, size = rows[0]["kind"], rows[0]["size"].split("x")[0]
    return tokenizer.convert_tokens_to_ids(legal_canvas_tokens(kind, size))


@contextmanager
def _measuring(model: GlauberT5ForDiffusion, attention: str | None = None) -> Iterator[None]:
    """The model in eval mode (and with attention implementation `attention`, when given); both restored after."""
    was_training, previous = model.training, model.backbone.config._attn_implementation
    model.eval()
    if attention is not None:
        model.set_attn_implementation(attention)
    try:
        yield
    finally:
        if attention is not None:
            model.set_attn_implementation(previous)
        model.train(was_training)


@torch.no_grad()
def _nll(
    model: GlauberT5ForDiffusion, collator: PuzzleUL2Collator, features: list[dict[str, Any]], batch_size: int
) -> tuple[float, float]:
    """Mean NLL per scored cell and the argmax accuracy of `collator`'s batches of `features`. The NLL is the
    backbone's own label loss, the one stage 1 trains, weighted by each batch's scored cells."""
    total, count, correct = 0.0, 0, 0
    for start in range(0, len(features), batch_size):
        batch = {k: v.to(model.device) for k, v in collator(features[start : start + batch_size]).items()}
        out = model(**batch)
        scored = batch["labels"] != -100
        cells = int(scored.sum())
        total += float(out.loss) * cells
        correct += int((out.logits.argmax(-1) == batch["labels"])[scored].sum())
        count += cells
    return total / count, correct / count


def prompt_reliance(
    model: GlauberT5ForDiffusion,
    tokenizer: PreTrainedTokenizerFast,
    rows: list[dict[str, Any]],
    batch_size: int = 64,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per task of `TASKS`: mean NLL (nats per scored cell) and accuracy with the own and with another prompt."""
    legal = _legal_ids(tokenizer, rows)
    own_features = list(tokenized(Dataset.from_list(rows), tokenizer))
    swapped = [dict(r, prompt=p) for r, p in zip(rows, other_prompts(rows))]
    other_features = list(tokenized(Dataset.from_list(swapped), tokenizer))
    results = []
    with _measuring(model):
        for name, settings in TASKS:
            measured = {}
            for label, features in (("own", own_features), ("other", other_features)):
                collator = PuzzleUL2Collator(model, legal, infill_per_row=1, seed=seed, **settings)
                measured[f"nll_{label}"], measured[f"accuracy_{label}"] = _nll(model, collator, features, batch_size)
            results.append({"task": name, **measured, "nll_gap": measured["nll_other"] - measured["nll_own"]})
    return results


@torch.no_grad()
def readout_attention(
    model: GlauberT5ForDiffusion,
    tokenizer: PreTrainedTokenizerFast,
    rows: list[dict[str, Any]],
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Share of the MASK-INFILL decoder token `<extra_id_0>`'s cross-attention that each (layer, head) puts on the
    encoder's `<extra_id_0>`, the cell it predicts, on canvases whose other cells are true (the stage-1 infill task
    with 1 … w masked cells and no corruption), averaged over `rows`.

    Returns `share` (`[layers, heads]`) and `uniform`, the mean share of a head that attends evenly (1 / attended
    encoder positions). A model that reads a masked cell's encoder state through such a head has one well above
    `uniform`; where every head stays near or below it, the prediction is pooled from the other cells, which can tell
    a row's one missing value but not what a clue says about the cell (`docs/puzzles.md`, Zebra).
    """
    legal = _legal_ids(tokenizer, rows)
    features = list(tokenized(Dataset.from_list(rows), tokenizer))
    collator = PuzzleUL2Collator(
        model, legal, infill_per_row=1, seed=seed, causal_fraction=0.0, max_corruption=0.0, infill_targets=1
    )
    sentinel = model.config.sentinel_token_ids[0]
    share, uniform = None, 0.0
    with _measuring(model, attention="eager"):  # the fused kernels return no attention weights
        for start in range(0, len(features), batch_size):
            batch = {k: v.to(model.device) for k, v in collator(features[start : start + batch_size]).items()}
            out = model(**batch, output_attentions=True)
            at_sentinel = (batch["input_ids"] == sentinel).float()  # [B, S], one position per row
            # decoder position 1 is `<extra_id_0>` (`infill_decoder_inputs`): [B, layers, heads]
            mass = torch.stack([(a[:, :, 1, :] * at_sentinel[:, None, :]).sum(-1) for a in out.cross_attentions], 1)
            share = mass.sum(0) if share is None else share + mass.sum(0)
            uniform += float((1.0 / batch["attention_mask"].sum(-1)).sum())
    return {"share": share.cpu() / len(features), "uniform": uniform / len(features)}


def format_readout(readout: dict[str, Any]) -> str:
    """One line: the head of `readout_attention` that looks most at the masked cell, against an even spread."""
    share = readout["share"]
    layer, head = divmod(int(share.argmax()), share.shape[1])
    return (
        f"MASK-INFILL readout: at most {100 * float(share.max()):.1f} % of a cross-attention head of `<extra_id_0>` on "
        f"the masked cell (layer {layer}, head {head}); an even spread gives {100 * readout['uniform']:.1f} %"
    )


def format_reliance(results: list[dict[str, Any]]) -> str:
    """Markdown table of `prompt_reliance`."""
    lines = [
        "| task | NLL, own prompt | NLL, another puzzle's | gap | accuracy %, own → another |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['nll_own']:.4f} | {r['nll_other']:.4f} | {r['nll_gap']:+.4f} | "
            f"{100 * r['accuracy_own']:.1f} → {100 * r['accuracy_other']:.1f} |"
        )
    return "\n".join(lines)
