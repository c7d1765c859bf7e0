"""Baselines on the same backbone, data and harness as the Glauber model.

- Masked diffusion (Ye / Kim): the recipe's backbone (`build_backbone`: T5 or T5-Gemma) trained with the MDM
  objective — each free cell masked with probability t ~ U(0, 1], encoder `P + x_masked + </s>` (one mask token,
  `<extra_id_0>`, for every masked cell, laid out by `modeling_glauber.infill`), the decoder reads the masked canvas
  shifted right and predicts every cell in one pass; cross-entropy on masked cells. Decoding reveals one cell per
  call, the masked cell with the highest top-1 probability ("Top-K probability") or top-1 minus top-2 margin ("Top-K
  margin", Kim et al.); revealed cells stay fixed.
- Autoregressive in solver order (Shah): the same backbone whose decoder emits `(row, col, value)`
  triplets of the free cells in the `solver_order` column (givens are in the encoder prompt); greedy decoding with
  the triplet grammar enforced. The causal-only model in a random order is the Glauber model's own draft (N = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from modeling_glauber.infill import build_prefix, infill_encoder_inputs, mask_canvas
from puzzles.metrics import givens
from puzzles.recipe import canvas_inputs
from puzzles.tokenizer import encoder_prompts
from trainers import GlauberDataCollator

SCORES = ("probability", "margin")


def _prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor, model: PreTrainedModel):
    c = model.config
    return build_prefix(input_ids, attention_mask, input_ids.shape[0], s_mode_token_id=None, r_mode_token_id=None,
                        eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, device=input_ids.device)


def _mdm_inputs(model, prefix, canvas: torch.Tensor, masked: torch.Tensor, mask_id: int):
    """Encoder ids/mask `P + x_masked + </s>` and decoder input `[start] + x_masked[:-1]`."""
    length = canvas.shape[1]
    positions = torch.arange(length, device=canvas.device)
    masks = torch.full((length,), mask_id, dtype=torch.long, device=canvas.device)
    enc_ids, enc_mask = infill_encoder_inputs(prefix, canvas, positions, masked, masks, model.config.eos_token_id)
    shown = mask_canvas(canvas, positions, masked, masks)
    start = torch.full_like(shown[:, :1], model.config.decoder_start_token_id)
    return enc_ids, enc_mask, torch.cat([start, shown[:, :-1]], dim=1)


@dataclass
class MaskedDiffusionCollator:
    """MDM training batches: mask each free cell with probability t ~ U(0, 1] (at least one per row)."""

    model: PreTrainedModel
    mask_id: int
    seed: int = 0

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)
        self._base = GlauberDataCollator(self.model.config.pad_token_id)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self._base(features)
        canvas, frozen = batch["canvas_ids"], batch["frozen"]
        rows, length = canvas.shape
        t = torch.as_tensor(self._rng.random((rows, 1)), dtype=torch.float32)
        masked = (torch.as_tensor(self._rng.random((rows, length)), dtype=torch.float32) < t) & ~frozen
        forced = torch.as_tensor(self._rng.random((rows, length))).masked_fill(frozen, -1.0).argmax(dim=1)
        masked[torch.arange(rows), forced] = True
        prefix = _prefix(batch["input_ids"], batch["attention_mask"], self.model)
        enc_ids, enc_mask, dec_ids = _mdm_inputs(self.model, prefix, canvas, masked, self.mask_id)
        return {"input_ids": enc_ids, "attention_mask": enc_mask, "decoder_input_ids": dec_ids,
                "labels": canvas.masked_fill(~masked, -100)}


@torch.no_grad()
def mdm_predictions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                    legal_ids: list[int], score: str = "margin", batch_size: int = 256) -> tuple[list[list[str]], int]:
    """Adaptive MDM decoding: one call per revealed cell, the most confident masked cell first (`score`)."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    mask_id = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    legal = torch.tensor(legal_ids, device=model.device)
    predictions, calls = [], 0
    for start in range(0, len(rows), batch_size):
        ids, attn, canvas, frozen = canvas_inputs(rows[start:start + batch_size], tokenizer, model.device)
        prefix = _prefix(ids, attn, model)
        masked = ~frozen
        steps = 0
        while bool(masked.any()):
            enc_ids, enc_mask, dec_ids = _mdm_inputs(model, prefix, canvas, masked, mask_id)
            logits = model(input_ids=enc_ids, attention_mask=enc_mask, decoder_input_ids=dec_ids).logits
            probs = logits[..., legal].float().softmax(dim=-1)  # [B, L, |legal|]
            top = probs.topk(2, dim=-1).values
            confidence = top[..., 0] if score == "probability" else top[..., 0] - top[..., 1]
            cell = confidence.masked_fill(~masked, float("-inf")).argmax(dim=1)
            rows_left = masked.any(dim=1).nonzero().flatten()
            cell = cell[rows_left]
            canvas[rows_left, cell] = legal[probs[rows_left, cell].argmax(dim=-1)]
            masked[rows_left, cell] = False
            steps += 1
        calls = max(calls, steps)
        predictions += [tokenizer.convert_ids_to_tokens(r) for r in canvas.tolist()]
    return predictions, calls


# ------------------------------------------------------------------------------------------------ AR, solver order
def _grid_width(row: dict[str, Any]) -> int:
    """Columns of the canvas grid: the Sudoku side, or the Zebra canvas's 6."""
    return int(row["size"].split("x")[0]) if row["kind"] == "sudoku" else 6


@dataclass
class SolverOrderCollator:
    """Shah-style AR batches: encoder `P + </s>`, decoder target the free cells' `(r, c, v)` in solver order + `</s>`."""

    tokenizer: PreTrainedTokenizerFast

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        encoders = tok(encoder_prompts(tok, [f["prompt"] for f in features]))["input_ids"]
        targets = [tok(" ".join(solver_triplets(f)))["input_ids"] for f in features]
        enc = torch.full((len(features), max(map(len, encoders))), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), max(map(len, targets))), -100, dtype=torch.long)
        for i, (e, t) in enumerate(zip(encoders, targets)):
            enc[i, : len(e)] = torch.as_tensor(e)
            labels[i, : len(t)] = torch.as_tensor(t)
        return {"input_ids": enc, "attention_mask": (enc != tok.pad_token_id).long(), "labels": labels}


def solver_triplets(row: dict[str, Any]) -> list[str]:
    """`r c v` words of the free cells in the row's solver order."""
    width, values = _grid_width(row), row["canvas"].split()
    return [w for p in row["solver_order"] for w in (str(p // width), str(p % width), values[p])]


@torch.no_grad()
def solver_order_predictions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                             rows: list[dict[str, Any]], legal_values: list[str],
                             batch_size: int = 256) -> tuple[list[list[str]], int]:
    """Greedy triplet decoding (row, col, value vocabularies enforced by position), written into the givens' grid."""
    width = _grid_width(rows[0])
    height = len(rows[0]["canvas"].split()) // width
    vocab = len(tokenizer)

    def allowed(words: list[str]) -> torch.Tensor:
        mask = torch.full((vocab,), float("-inf"), device=model.device)
        mask[tokenizer.convert_tokens_to_ids(words)] = 0.0
        return mask

    grammar = [allowed([str(i) for i in range(height)]), allowed([str(i) for i in range(width)]), allowed(legal_values)]
    predictions, calls = [], 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        enc = tokenizer(encoder_prompts(tokenizer, [r["prompt"] for r in chunk]), return_tensors="pt",
                        padding=True).to(model.device)
        steps = 3 * max(len(r["solver_order"]) for r in chunk)
        out = model.generate(**enc, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, num_beams=1,
                             logits_processor=[_Grammar(grammar)])
        calls = max(calls, steps)
        for row, ids in zip(chunk, out[:, 1:].tolist()):
            cells = givens(row)
            # a row with fewer blanks than the batch's longest is forced past its own end: keep its own triplets
            words = tokenizer.convert_ids_to_tokens(ids[: 3 * row["frozen"].count(False)])
            for r, c, v in zip(words[0::3], words[1::3], words[2::3]):
                p = int(r) * width + int(c)
                if not row["frozen"][p]:
                    cells[p] = v
            predictions.append(cells)
    return predictions, calls


class _Grammar:
    """Logits processor: the i-th generated token must come from `masks[i % 3]` (row, column, value)."""

    def __init__(self, masks: list[torch.Tensor]):
        self.masks = masks

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        position = input_ids.shape[1] - 1  # tokens generated so far (after decoder_start)
        return scores + self.masks[position % 3]
