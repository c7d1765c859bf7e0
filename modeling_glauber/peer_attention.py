"""Peer attention bias (DESIGN §9): a learned score bias between encoder tokens whose canvas positions share a factor.

For encoder tokens i, j holding canvas positions p_i, p_j (a Sudoku cell's row, column and box are its factors):

    score_h(i, j) += Σ_f β[f, h] · 1[index_f(p_i) = index_f(p_j)]

β `[F, H]` starts at zero, so a model that enables it computes what it did without. Two cells that share a factor are
peers (a constraint links them); the bias lets every head attend to peers from the first step instead of having to
discover the grid's geometry through the factor embeddings' dot products.

T5 computes its relative position bias once, in the first encoder layer, and every later layer adds the same tensor:
a forward pre-hook on that first self-attention hands it `relative bias + peer bias` as `position_bias`, so every
layer, under the eager and SDPA paths alike, scores with it. The bias of the encoder call in progress lives in a
thread-local state that the model fills around the call (`GlauberT5ForDiffusion.peer_attention`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from torch import nn


def peer_attention_bias(positions: torch.Tensor, factor_index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`[B, H, S, S]` bias for encoder tokens holding canvas `positions` `[B, S]` (-1: none, no bias to or from it);
    `factor_index` `[F, L]` holds index_f(k), `weight` `[F, H]` is β."""
    held = positions >= 0
    index = factor_index[:, positions.clamp(min=0)]  # [F, B, S]
    shared = (index.unsqueeze(-1) == index.unsqueeze(-2)) & (held.unsqueeze(-1) & held.unsqueeze(-2))  # [F, B, S, S]
    return torch.einsum("fbij,fh->bhij", shared.to(weight.dtype), weight)


class PeerBiasState(threading.local):
    """The peer bias of the encoder call in progress (None outside one), per thread like the time modulation."""

    def __init__(self):
        self.bias: torch.Tensor | None = None

    def __deepcopy__(self, memo) -> PeerBiasState:
        # a copied model (the trainer's EMA reference) gets its own state, shared by its copied hook through `memo`
        return PeerBiasState()

    @contextmanager
    def use(self, bias: torch.Tensor | None):
        previous, self.bias = self.bias, bias
        try:
            yield
        finally:
            self.bias = previous


class PeerBiasHook:
    """Forward pre-hook of the encoder's first self-attention: its `position_bias` becomes T5's relative bias plus the
    state's peer bias (later layers reuse what the first returns)."""

    def __init__(self, state: PeerBiasState):
        self.state = state

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        bias = self.state.bias
        if bias is None or kwargs.get("position_bias") is not None:
            return None
        length = args[0].shape[1] if args else kwargs["hidden_states"].shape[1]
        if bias.shape[-1] != length:
            raise ValueError(
                f"the peer attention bias covers {bias.shape[-1]} encoder tokens, but the encoder reads {length}: "
                "canvas_positions must annotate every encoder token"
            )
        relative = module.compute_bias(length, length, device=bias.device)
        return args, {**kwargs, "position_bias": relative.to(bias.dtype) + bias}


def first_encoder_self_attention(backbone: nn.Module) -> nn.Module:
    """The encoder self-attention that computes T5's relative position bias; a clear error for other backbones."""
    encoder = backbone.get_encoder()
    blocks = getattr(encoder, "block", None)
    attention = getattr(blocks[0].layer[0], "SelfAttention", None) if blocks else None
    if attention is None or not getattr(attention, "has_relative_attention_bias", False):
        raise ValueError(
            f"canvas_peer_attention needs a T5 backbone (relative attention bias in the first encoder layer), got "
            f"{type(backbone).__name__}"
        )
    return attention
