"""Peer attention bias (DESIGN §9): a learned score bias between tokens whose canvas positions share a factor.

For a query token holding canvas position p and a key token holding q (a Sudoku cell's row, column and box are its
factors):

    score_h(p, q) += Σ_f β[f, h] · 1[index_f(p) = index_f(q)]

β `[F, H]` starts at zero, so a model that enables it computes what it did without. Two cells that share a factor are
peers (a constraint links them); the bias lets every head attend to peers from the first step instead of having to
discover the grid's geometry through the factor embeddings' dot products. Three attentions can carry one, each with
its own β: the encoder's self-attention (`canvas_peer_attention`), and (`canvas_peer_attention_decoder`) the
CAUSAL-GEN decoder's self-attention (step j holds π_0(j), the cell it writes) and its cross-attention to the prompt
cells, so a draft step reads the givens and the cells already written among its peers.

T5 computes a stack's position bias once, in its first layer, and every later layer adds the same tensor: a forward
pre-hook on that first attention hands it `relative bias + peer bias` as `position_bias`, so every layer, under the
eager and SDPA paths alike, scores with it. The biases of the call in progress live in a thread-local state that the
model fills around the call (`GlauberT5ForDiffusion.peer_attention`); a KV-cached step gets the rows of its query.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from torch import nn

ATTENTIONS = ("encoder", "decoder", "cross")


def peer_attention_bias(query_positions: torch.Tensor, key_positions: torch.Tensor, factor_index: torch.Tensor,
                        weight: torch.Tensor) -> torch.Tensor:
    """`[B, H, Q, K]` bias between tokens holding canvas `query_positions` `[B, Q]` and `key_positions` `[B, K]` (-1:
    none, no bias to or from it); `factor_index` `[F, L]` holds index_f(k), `weight` `[F, H]` is β."""
    query = factor_index[:, query_positions.clamp(min=0)]  # [F, B, Q]
    key = factor_index[:, key_positions.clamp(min=0)]  # [F, B, K]
    held = (query_positions >= 0).unsqueeze(-1) & (key_positions >= 0).unsqueeze(-2)
    shared = (query.unsqueeze(-1) == key.unsqueeze(-2)) & held  # [F, B, Q, K]
    return torch.einsum("fbqk,fh->bhqk", shared.to(weight.dtype), weight)


class PeerBiasState(threading.local):
    """The peer bias of each attention (`ATTENTIONS`) for the call in progress, per thread like the time modulation."""

    def __init__(self):
        self.biases: dict[str, torch.Tensor] = {}

    def __deepcopy__(self, memo) -> PeerBiasState:
        # a copied model (the trainer's EMA reference) gets its own state, shared by its copied hooks through `memo`
        return PeerBiasState()

    @contextmanager
    def use(self, **biases: torch.Tensor):
        previous, self.biases = self.biases, {**self.biases, **biases}
        try:
            yield
        finally:
            self.biases = previous


class PeerBiasHook:
    """Forward pre-hook of a stack's first self- or cross-attention: its `position_bias` becomes T5's relative bias
    (self-attention; for a cached decoder step, the rows of its query) plus the state's peer bias of `attention`."""

    def __init__(self, state: PeerBiasState, attention: str):
        self.state, self.attention = state, attention

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        bias = self.state.biases.get(self.attention)
        if bias is None or kwargs.get("position_bias") is not None:
            return None
        queries = args[0].shape[1] if args else kwargs["hidden_states"].shape[1]
        length, keys = bias.shape[-2:]
        if length != queries:
            raise ValueError(
                f"the {self.attention} peer attention bias covers {length} query tokens, but the attention reads "
                f"{queries}: the canvas positions must annotate every token of the call"
            )
        if module.has_relative_attention_bias:
            bias = module.compute_bias(queries, keys, device=bias.device, past_seen_tokens=keys - queries).to(
                bias.dtype) + bias
        return args, {**kwargs, "position_bias": bias}


def first_attentions(backbone: nn.Module, decoder: bool) -> dict[str, nn.Module]:
    """The attentions that compute a T5 stack's shared position bias, by `ATTENTIONS` name; a clear error for other
    backbones."""
    encoder_blocks = getattr(backbone.get_encoder(), "block", None)
    attention = getattr(encoder_blocks[0].layer[0], "SelfAttention", None) if encoder_blocks else None
    if attention is None or not getattr(attention, "has_relative_attention_bias", False):
        raise ValueError(
            f"canvas_peer_attention needs a T5 backbone (relative attention bias in the first encoder layer), got "
            f"{type(backbone).__name__}"
        )
    found = {"encoder": attention}
    if decoder:
        first = backbone.get_decoder().block[0]
        found["decoder"], found["cross"] = first.layer[0].SelfAttention, first.layer[1].EncDecAttention
    return found
