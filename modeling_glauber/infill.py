"""The encodings of the two modes (DESIGN §2), built once and shared by generate, the trainer and the evaluator.

- CAUSAL-GEN encoder input: `[S-mode] + P + </s>`; the decoder emits the canvas in order π_0.
- MASK-INFILL encoder input: `[R-mode] + P + x + </s>` with the window's positions replaced by `<extra_id_0>` (the
  predicted position), `<extra_id_1>`, …; decoder input `[decoder_start, <extra_id_0>]`.

Prompts are left-padded so that every row's canvas starts at the same column (T5's relative and T5-Gemma's rotary
positions make the padding invisible to the content).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GlauberPrefix:
    """Left-padded `[mode] + P` for each mode: ids and attention masks, `[B, P_causal]` and `[B, P_infill]`; and,
    for models that mark givens (`canvas_given_embedding`), `given` `[B, L]`: which canvas positions are frozen."""

    causal_ids: torch.Tensor
    causal_mask: torch.Tensor
    infill_ids: torch.Tensor
    infill_mask: torch.Tensor
    given: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.causal_ids.shape[0]

    def select(self, rows: torch.Tensor) -> "GlauberPrefix":
        """The prefix of a subset (or repetition) of rows."""
        given = None if self.given is None else self.given[rows]
        return GlauberPrefix(
            self.causal_ids[rows], self.causal_mask[rows], self.infill_ids[rows], self.infill_mask[rows], given
        )


def _left_pack(tokens: torch.Tensor, keep: torch.Tensor, lead: int | None, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's kept tokens (in order) to the right end, preceded by `lead` when given."""
    batch = tokens.shape[0]
    lengths = keep.sum(dim=1)
    width = int(lengths.max().item()) if tokens.numel() else 0
    width += lead is not None
    ids = torch.full((batch, width), pad_id, dtype=torch.long, device=tokens.device)
    mask = torch.zeros((batch, width), dtype=torch.long, device=tokens.device)
    if tokens.numel():
        rank = keep.long().cumsum(dim=1) - 1
        column = width - lengths.unsqueeze(1) + rank
        rows = torch.arange(batch, device=tokens.device).unsqueeze(1).expand_as(tokens)
        ids[rows[keep], column[keep]] = tokens[keep]
        mask[rows[keep], column[keep]] = 1
    if lead is not None:
        lead_column = width - 1 - lengths
        ids[torch.arange(batch, device=tokens.device), lead_column] = lead
        mask[torch.arange(batch, device=tokens.device), lead_column] = 1
    return ids, mask


def build_prefix(
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    batch_size: int,
    *,
    s_mode_token_id: int | None,
    r_mode_token_id: int | None,
    eos_token_id: int,
    pad_token_id: int,
    device: torch.device,
    infill_reads_prompt: bool = True,
    given: torch.Tensor | None = None,
) -> GlauberPrefix:
    """Turn prompts (any padding side; a trailing `</s>` added by the tokenizer is dropped) into a `GlauberPrefix`.

    Without an `attention_mask`, pad tokens are padding, as Hugging Face's generate infers. With
    `infill_reads_prompt=False` the MASK-INFILL prefix is the mode token alone (the givens are on the canvas).
    `given`: `[B, L]` frozen canvas positions, carried for `canvas_given_embedding`."""
    if input_ids is None:
        tokens = torch.zeros((batch_size, 0), dtype=torch.long, device=device)
        keep = torch.zeros((batch_size, 0), dtype=torch.bool, device=device)
    else:
        tokens = input_ids.to(device)
        keep = tokens != pad_token_id if attention_mask is None else attention_mask.to(device).bool()
        if tokens.shape[1]:
            last = (keep.long() * torch.arange(1, tokens.shape[1] + 1, device=device)).argmax(dim=1)
            rows = torch.arange(tokens.shape[0], device=device)
            trailing_eos = keep[rows, last] & (tokens[rows, last] == eos_token_id)
            keep = keep.clone()
            keep[rows[trailing_eos], last[trailing_eos]] = False
    causal_ids, causal_mask = _left_pack(tokens, keep, s_mode_token_id, pad_token_id)
    if not infill_reads_prompt:
        tokens, keep = tokens[:, :0], keep[:, :0]
    infill_ids, infill_mask = _left_pack(tokens, keep, r_mode_token_id, pad_token_id)
    given = None if given is None else given.to(device).bool()
    return GlauberPrefix(causal_ids, causal_mask, infill_ids, infill_mask, given)


def causal_encoder_inputs(prefix: GlauberPrefix, eos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CAUSAL-GEN encoder input `[S] + P + </s>` and its mask."""
    eos = torch.full((prefix.batch_size, 1), eos_token_id, dtype=torch.long, device=prefix.causal_ids.device)
    ids = torch.cat([prefix.causal_ids, eos], dim=1)
    mask = torch.cat([prefix.causal_mask, torch.ones_like(eos)], dim=1)
    return ids, mask


def mask_canvas(
    canvas: torch.Tensor, window_positions: torch.Tensor, window_valid: torch.Tensor, sentinel_ids: torch.Tensor
) -> torch.Tensor:
    """Replace the valid window slots of each row by sentinels: slot j gets `sentinel_ids[j]` (`<extra_id_j>`).

    `window_positions`/`window_valid` are `[B, w]` (or `[w]`, shared by all rows). Invalid slots write into a dummy
    column that is dropped, so no position is written twice.
    """
    batch, length = canvas.shape
    window_positions = window_positions.expand(batch, -1)
    window_valid = window_valid.expand(batch, -1)
    target = torch.where(window_valid, window_positions, torch.full_like(window_positions, length))
    widened = torch.cat([canvas, canvas.new_zeros((batch, 1))], dim=1)
    sentinels = sentinel_ids[: window_positions.shape[1]].to(canvas.device).expand(batch, -1)
    return widened.scatter(1, target, sentinels)[:, :length]


def infill_encoder_inputs(
    prefix: GlauberPrefix,
    canvas: torch.Tensor,
    window_positions: torch.Tensor,
    window_valid: torch.Tensor,
    sentinel_ids: torch.Tensor,
    eos_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MASK-INFILL encoder input `[R] + P + x_masked + </s>` and its mask."""
    masked = mask_canvas(canvas, window_positions, window_valid, sentinel_ids)
    eos = torch.full((canvas.shape[0], 1), eos_token_id, dtype=torch.long, device=canvas.device)
    ids = torch.cat([prefix.infill_ids, masked, eos], dim=1)
    mask = torch.cat([prefix.infill_mask, torch.ones_like(masked), torch.ones_like(eos)], dim=1)
    return ids, mask


def infill_encoder_width(prefix: GlauberPrefix, length: int) -> int:
    """Columns of `infill_encoder_inputs` for a canvas of `length`: the left-padded `[R] + P`, x and `</s>`."""
    return prefix.infill_ids.shape[1] + length + 1


def prompt_canvas_positions(prefix_mask: torch.Tensor, length: int, mode_token: bool) -> torch.Tensor:
    """`[B, W]` canvas position of each column of a left-packed `[mode] + P` whose prompt P is one token per canvas
    position in canvas order (its last L columns hold positions 0 … L-1); -1 elsewhere."""
    prompt_lengths = prefix_mask.sum(dim=1) - int(mode_token)
    if bool((prompt_lengths != length).any()):
        raise ValueError(
            f"prompt_canvas_positions needs a prompt of exactly one token per canvas position (L={length}), got "
            f"prompts of {sorted(set(prompt_lengths.tolist()))} tokens"
        )
    batch, width = prefix_mask.shape
    positions = torch.full((batch, width), -1, dtype=torch.long, device=prefix_mask.device)
    positions[:, width - length:] = torch.arange(length, device=prefix_mask.device)
    return positions


def named_canvas_positions(ids: torch.Tensor, position_token_ids: list[int]) -> torch.Tensor:
    """`[B, W]` canvas position k of each token equal to `position_token_ids[k]`; -1 for every other token."""
    table = torch.full((max(position_token_ids) + 1,), -1, dtype=torch.long, device=ids.device)
    table[torch.as_tensor(position_token_ids, device=ids.device)] = torch.arange(len(position_token_ids),
                                                                                 device=ids.device)
    inside = ids < table.shape[0]
    return torch.where(inside, table[ids.clamp(max=table.shape[0] - 1)], -1)


def prefix_canvas_positions(
    ids: torch.Tensor, mask: torch.Tensor, length: int, prompt_positions: bool, mode_token: bool,
    position_token_ids: list[int] | None,
) -> torch.Tensor:
    """Canvas positions of a left-packed `[mode] + P`: the grid's (`prompt_canvas_positions`) and those of the words
    that name a position (`named_canvas_positions`); -1 elsewhere."""
    if prompt_positions:
        head = prompt_canvas_positions(mask, length, mode_token)
    else:
        head = torch.full(ids.shape, -1, dtype=torch.long, device=ids.device)
    if position_token_ids:
        named = named_canvas_positions(ids, position_token_ids)
        head = torch.where((named >= 0) & mask.bool(), named, head)
    return head


def infill_canvas_positions(
    prefix: GlauberPrefix, length: int, prompt_positions: bool = False, mode_token: bool = False,
    position_token_ids: list[int] | None = None,
) -> torch.Tensor:
    """Canvas position of each token of `infill_encoder_inputs` (-1 for the prefix and `</s>`): `[B, P + L + 1]`.
    With `prompt_positions` or `position_token_ids`, prompt tokens hold theirs too (`prefix_canvas_positions`)."""
    device = prefix.infill_ids.device
    head = prefix_canvas_positions(prefix.infill_ids, prefix.infill_mask, length, prompt_positions, mode_token,
                                   position_token_ids)
    canvas = torch.arange(length, device=device).expand(prefix.batch_size, -1)
    eos = torch.full((prefix.batch_size, 1), -1, dtype=torch.long, device=device)
    return torch.cat([head, canvas, eos], dim=1)


def infill_canvas_given(prefix: GlauberPrefix, length: int) -> torch.Tensor | None:
    """`[B, P + L + 1]` True at the encoder tokens of given (frozen) canvas positions; None without `prefix.given`."""
    if prefix.given is None:
        return None
    if prefix.given.shape != (prefix.batch_size, length):
        raise ValueError(f"the prefix's given mask must have shape {(prefix.batch_size, length)}, got "
                         f"{tuple(prefix.given.shape)}")
    head = torch.zeros((prefix.batch_size, prefix.infill_ids.shape[1]), dtype=torch.bool, device=prefix.given.device)
    eos = torch.zeros((prefix.batch_size, 1), dtype=torch.bool, device=prefix.given.device)
    return torch.cat([head, prefix.given, eos], dim=1)


def infill_decoder_inputs(
    batch_size: int, decoder_start_id: int, sentinels: int | list[int], device: torch.device
) -> torch.Tensor:
    """MASK-INFILL decoder input `[decoder_start, <extra_id_0>]` (`sentinels` an id): `[B, 2]`. With a list of the
    first m sentinel ids (parallel updates), one row `[decoder_start, <extra_id_j>]` per row b and slot j, in the
    order (b, j): `[B·m, 2]`."""
    ids = [sentinels] if isinstance(sentinels, int) else list(sentinels)
    rows = torch.tensor([[decoder_start_id, s] for s in ids], dtype=torch.long, device=device)
    return rows.repeat(batch_size, 1) if len(ids) > 1 else rows.expand(batch_size, -1)


def infill_span_canvas_positions(
    window_positions: torch.Tensor, window_valid: torch.Tensor | None = None, slot_order: torch.Tensor | None = None
) -> torch.Tensor:
    """`decoder_canvas_positions` of the `infill_span_targets` decoder `[decoder_start, <extra_id_0>, v_0, …]`:
    each `<extra_id_j>` holds its slot's position (the cell its logits predict), every other token none (-1).
    Arguments as in `infill_span_targets` (`window_valid` None: every slot valid); `[B, 2m]`. With one slot this is
    the MASK-INFILL decoder `[decoder_start, <extra_id_0>]` that generation reads: `[-1, k]`."""
    batch, slots = window_positions.shape
    held = window_positions
    if window_valid is not None:
        held = torch.where(window_valid, window_positions, torch.full_like(window_positions, -1))
    if slot_order is not None:
        held = held.gather(1, slot_order)
    pairs = torch.stack([held, torch.full_like(held, -1)], dim=2).reshape(batch, 2 * slots)
    return torch.cat([torch.full_like(held[:, :1], -1), pairs[:, :-1]], dim=1)


def infill_span_targets(
    targets: torch.Tensor,
    window_valid: torch.Tensor,
    decoder_start_id: int,
    sentinel_token_ids: list[int],
    slot_order: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-only UL2 R-denoising decoder: `[decoder_start, <extra_id_0>, v_0, <extra_id_1>, v_1, …]` and labels
    scoring each `v_j` (the true value behind sentinel j).

    It starts with `infill_decoder_inputs`, so the first score is exactly the MASK-INFILL prediction that generation
    reads; the later ones give one encoder pass several targets, as T5 span corruption does.
    `targets`/`window_valid` are `[B, m]`; rows with fewer valid slots are padded with -100 labels. `slot_order`
    `[B, m]` (a permutation of the slots per row, valid ones first) visits the slots in that order instead:
    `[decoder_start, <extra_id_j>, v_j, …]` for j = `slot_order[b, 0]` first, the row that a parallel update
    (`generate(update_block=m)`) reads for slot j.
    """
    batch, slots = targets.shape
    sentinels = torch.tensor(sentinel_token_ids[:slots], dtype=torch.long, device=targets.device).expand(batch, -1)
    if slot_order is not None:
        sentinels, targets, window_valid = (t.gather(1, slot_order) for t in (sentinels, targets, window_valid))
    pairs = torch.stack([sentinels, targets], dim=2).reshape(batch, 2 * slots)  # s_0 v_0 s_1 v_1 …
    head = torch.full((batch, 1), decoder_start_id, dtype=torch.long, device=targets.device)
    decoder_ids = torch.cat([head, pairs[:, :-1]], dim=1)
    scored = torch.stack([torch.zeros_like(window_valid), window_valid], dim=2).reshape(batch, 2 * slots)
    labels = torch.where(scored, pairs, torch.full_like(pairs, -100))
    return decoder_ids, labels


def concat_mode_inputs(batches: list[dict[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack forward arguments of several mode batches (e.g. MASK-INFILL and CAUSAL-GEN rows) into one forward.

    Right padding is invisible: padded encoder keys are masked and the causal decoder's padded tail changes no
    earlier logit. Canvas positions (models with a canvas position embedding) are -1 where a batch has none.
    """

    def stack(key: str, value: int, like: str | None = None) -> torch.Tensor:
        tensors = [(b[key] if key in b else torch.full_like(b[like], value)).long() for b in batches]
        width = max(t.shape[1] for t in tensors)
        return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])

    stacked = {
        "input_ids": stack("input_ids", pad_token_id),
        "attention_mask": stack("attention_mask", 0),
        "decoder_input_ids": stack("decoder_input_ids", pad_token_id),
        "timesteps": torch.cat([b["timesteps"].expand(b["input_ids"].shape[0]) for b in batches]),
    }
    for key, like in (("canvas_positions", "input_ids"), ("decoder_canvas_positions", "decoder_input_ids")):
        if any(key in b for b in batches):
            stacked[key] = stack(key, -1, like)
    if any("canvas_given" in b for b in batches):
        stacked["canvas_given"] = stack("canvas_given", 0, "input_ids").bool()
    return stacked


__all__ = [
    "concat_mode_inputs",
    "GlauberPrefix",
    "build_prefix",
    "causal_encoder_inputs",
    "infill_canvas_given",
    "infill_canvas_positions",
    "named_canvas_positions",
    "prefix_canvas_positions",
    "prompt_canvas_positions",
    "infill_encoder_inputs",
    "infill_decoder_inputs",
    "infill_span_canvas_positions",
    "mask_canvas",
]
