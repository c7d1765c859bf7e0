"""Baselines on the same network, encoding, data and harness as the Glauber model.

Both baselines are the recipe's own network (`build_model`: the same backbone and the same canvas encoding — factor
tables, given marker, prompt positions, infill without the prompt — run at τ = 1), so a table compares methods, not
encodings.

- Masked diffusion (Ye / Kim): trained with the MDM objective — each free cell masked with probability
  t ~ U(0, 1], encoder laid out as MASK-INFILL's `[R] + P + x_masked + </s>` (one mask token, `<extra_id_0>`, for
  every masked cell), the decoder reads the masked canvas shifted right (token j carrying cell j's position) and
  predicts every cell in one pass; cross-entropy on masked cells. Decoding reveals one cell per
  call, the masked cell with the highest top-1 probability ("Top-K probability") or top-1 minus top-2 margin ("Top-K
  margin", Kim et al.); revealed cells stay fixed.
- Autoregressive in solver order (Shah): encoder laid out as CAUSAL-GEN's `[S] + P + </s>`, decoder emitting
  `(row, col, value)` triplets of the free cells in the `solver_order` column (givens are in the encoder prompt);
  greedy decoding with the KV cache and the triplet grammar enforced. The causal-only model in a random order is the Glauber model's own draft (N = 0).

`infill_topk_predictions` applies the MDM's decoding to a Glauber checkpoint's MASK-INFILL (`glauber puzzles eval
--easy-first`): a diagnostic of the infill apart from the sampler's random order, not a baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from transformers.modeling_outputs import BaseModelOutput

from modeling_glauber.infill import causal_encoder_inputs, infill_encoder_inputs, mask_canvas
from puzzles import zebra
from puzzles.metrics import givens
from puzzles.recipe import canvas_inputs
from puzzles.tokenizer import encoder_prompts
from trainers import GlauberDataCollator, WorkerGenerator

SCORES = ("probability", "margin")


def _mdm_inputs(model, prefix, canvas: torch.Tensor, masked: torch.Tensor, mask_id: int) -> dict[str, torch.Tensor]:
    """Forward arguments: encoder `[R] + P + x_masked + </s>` with MASK-INFILL's canvas annotations, decoder input
    `[start] + x_masked[:-1]`, decoder token j annotated with cell j (the one it predicts)."""
    length = canvas.shape[1]
    positions = torch.arange(length, device=canvas.device)
    masks = torch.full((length,), mask_id, dtype=torch.long, device=canvas.device)
    enc_ids, enc_mask = infill_encoder_inputs(prefix, canvas, positions, masked, masks, model.config.eos_id)
    shown = mask_canvas(canvas, positions, masked, masks)
    start = torch.full_like(shown[:, :1], model.config.decoder_start_id)
    inputs = {"input_ids": enc_ids, "attention_mask": enc_mask, "decoder_input_ids": torch.cat([start, shown[:, :-1]], 1)}
    inputs.update(model.infill_encoder_annotations(prefix, length))
    if model.has_canvas_embedding:
        inputs["decoder_canvas_positions"] = positions.expand_as(shown)
    return inputs


@dataclass
class MaskedDiffusionCollator:
    """MDM training batches: mask each free cell with probability t ~ U(0, 1] (at least one per row)."""

    model: PreTrainedModel
    mask_id: int
    seed: int = 0

    def __post_init__(self):
        self._generators = WorkerGenerator(self.seed)
        self._base = GlauberDataCollator(self.model.config.pad_id)

    @property
    def _rng(self) -> np.random.Generator:
        return self._generators.get()

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self._base(features)
        canvas, frozen = batch["canvas_ids"], batch["frozen"]
        rows, length = canvas.shape
        t = torch.as_tensor(self._rng.random((rows, 1)), dtype=torch.float32)
        masked = (torch.as_tensor(self._rng.random((rows, length)), dtype=torch.float32) < t) & ~frozen
        forced = torch.as_tensor(self._rng.random((rows, length))).masked_fill(frozen, -1.0).argmax(dim=1)
        masked[torch.arange(rows), forced] = True
        prefix = self.model.build_prefix(batch["input_ids"], batch["attention_mask"], frozen_mask=frozen,
                                         device=canvas.device)
        inputs = _mdm_inputs(self.model, prefix, canvas, masked, self.mask_id)
        inputs["labels"] = canvas.masked_fill(~masked, -100)
        return inputs


@torch.no_grad()
def topk_decode(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                legal_ids: list[int], score: str, batch_size: int,
                predict: Callable[[Any, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                ) -> tuple[list[list[str]], int]:
    """Kim et al.'s adaptive decoding, one revealed cell per call: `predict(prefix, canvas, masked)` gives `[B, K, V]`
    logits, the `[B, K]` cells they are for and which of the K slots are masked cells; the slot whose top-1
    probability over the legal values ("probability") or top-1 − top-2 margin ("margin") is highest gets its most
    probable legal value and stays fixed."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    legal = torch.tensor(legal_ids, device=model.device)
    predictions, calls = [], 0
    for start in range(0, len(rows), batch_size):
        ids, attn, canvas, frozen = canvas_inputs(rows[start:start + batch_size], tokenizer, model.device)
        prefix = model.build_prefix(ids, attn, frozen_mask=frozen)
        masked = ~frozen
        steps = 0
        while bool(masked.any()):
            logits, cells, candidates = predict(prefix, canvas, masked)
            probs = logits[..., legal].float().softmax(dim=-1)  # [B, K, |legal|]
            top = probs.topk(2, dim=-1).values
            confidence = top[..., 0] if score == "probability" else top[..., 0] - top[..., 1]
            slot = confidence.masked_fill(~candidates, float("-inf")).argmax(dim=1)
            rows_left = masked.any(dim=1).nonzero().flatten()
            slot = slot[rows_left]
            cell = cells[rows_left, slot]
            canvas[rows_left, cell] = legal[probs[rows_left, slot].argmax(dim=-1)]
            masked[rows_left, cell] = False
            steps += 1
        calls = max(calls, steps)
        predictions += [tokenizer.convert_ids_to_tokens(r) for r in canvas.tolist()]
    return predictions, calls


def mdm_predictions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                    legal_ids: list[int], score: str = "margin", batch_size: int = 256) -> tuple[list[list[str]], int]:
    """Adaptive MDM decoding: one call predicts every cell; the most confident masked cell is revealed (`score`)."""
    mask_id = tokenizer.convert_tokens_to_ids("<extra_id_0>")

    def predict(prefix, canvas, masked):
        logits = model(**_mdm_inputs(model, prefix, canvas, masked, mask_id)).logits
        return logits, torch.arange(canvas.shape[1], device=canvas.device).expand_as(canvas), masked

    return topk_decode(model, tokenizer, rows, legal_ids, score, batch_size, predict)


def infill_topk_predictions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                            score: str = "margin", batch_size: int = 256, timesteps: float = 1.0,
                            ) -> tuple[list[list[str]], int]:
    """A Glauber checkpoint's MASK-INFILL decoded as the MDM baseline is: every unfilled cell masked in one window
    (`infill_block_logits` at τ = `timesteps`, one decoder row per cell), the most confident revealed per call, over
    the values the checkpoint may emit. Not the Glauber sampler (no draft, no fixed random order): a diagnostic of
    what the infill knows apart from that order."""
    free = max(list(r["frozen"]).count(False) for r in rows)
    if free > len(model.sentinel_ids):
        raise ValueError(f"easy-first infill masks every free cell at once: puzzles with {free} free cells need "
                         f"a model with >= {free} sentinels, this one has {len(model.sentinel_ids)}")

    def predict(prefix, canvas, masked):
        left = masked.sum(dim=1, keepdim=True)
        width = int(left.max())
        valid = torch.arange(width, device=canvas.device) < left
        # each row's masked cells first, in canvas order (a stable sort); slots past a row's count are unused
        window = (~masked).to(torch.uint8).argsort(dim=1, stable=True)[:, :width]
        window = torch.where(valid, window, 0)
        return model.infill_block_logits(prefix, canvas, window, valid, timesteps, num_predicted=width), window, valid

    legal = (~model.suppress_mask).nonzero().flatten().tolist()
    return topk_decode(model, tokenizer, rows, legal, score, batch_size, predict)


# ------------------------------------------------------------------------------------------------ AR, solver order
def _grid_width(row: dict[str, Any]) -> int:
    """Columns of the canvas grid: the Sudoku side, the Zebra entity canvas's 6, or the house canvas's houses."""
    return zebra.MAX_SIZE if row["kind"] == zebra.KIND else int(row["size"].split("x")[0])


def _ar_encoder_inputs(model, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                       device: torch.device) -> dict[str, torch.Tensor]:
    """Encoder `[S] + P + </s>` of each row with CAUSAL-GEN's canvas annotations (the prompt's cell positions)."""
    enc = tokenizer(encoder_prompts(tokenizer, [r["prompt"] for r in rows]), add_special_tokens=False,
                    return_tensors="pt", padding=True)
    prefix = model.build_prefix(enc["input_ids"], enc["attention_mask"], device=device)
    ids, mask = causal_encoder_inputs(prefix, model.config.eos_id)
    length = len(rows[0]["canvas"].split())
    return {"input_ids": ids, "attention_mask": mask, **model.causal_encoder_annotations(prefix, length)}


@dataclass
class SolverOrderCollator:
    """Shah-style AR batches: encoder `[S] + P + </s>`, decoder target the free cells' `(r, c, v)` in solver order
    + `</s>` (the backbone shifts the labels right into the decoder input)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        inputs = _ar_encoder_inputs(self.model, tok, features, torch.device("cpu"))
        targets = [tok(" ".join(solver_triplets(f)))["input_ids"] for f in features]
        labels = torch.full((len(features), max(map(len, targets))), -100, dtype=torch.long)
        for i, t in enumerate(targets):
            labels[i, : len(t)] = torch.as_tensor(t)
        inputs["labels"] = labels
        return inputs


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
        encoder = _ar_encoder_inputs(model, tokenizer, chunk, model.device)
        steps = 3 * max(len(r["solver_order"]) for r in chunk)
        token = torch.full((len(chunk), 1), model.config.decoder_start_id, dtype=torch.long, device=model.device)
        inputs, cache, generated = dict(encoder), None, []
        for step in range(steps):
            out = model(**inputs, decoder_input_ids=token, cache=cache, use_cache=True)
            cache = out.cache
            token = (out.logits[:, -1].float() + grammar[step % 3]).argmax(dim=-1, keepdim=True)
            generated.append(token)
            inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=out.encoder_last_hidden_state),
                      "attention_mask": encoder["attention_mask"]}
        calls = max(calls, steps)
        for row, ids in zip(chunk, torch.cat(generated, dim=1).tolist()):
            cells = givens(row)
            # a row with fewer blanks than the batch's longest is forced past its own end: keep its own triplets
            words = tokenizer.convert_ids_to_tokens(ids[: 3 * row["frozen"].count(False)])
            for r, c, v in zip(words[0::3], words[1::3], words[2::3]):
                p = int(r) * width + int(c)
                if not row["frozen"][p]:
                    cells[p] = v
            predictions.append(cells)
    return predictions, calls

