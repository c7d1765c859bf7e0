"""Cross-attention of a short decoder (the 2-token MASK-INFILL decoder) without projecting the encoder's keys and values.

For head h with query `q_h = W_q^h y` over encoder states `e_1 … e_S` (d_model wide):

    q_h · (W_k^h e_s) = (W_k^hᵀ q_h) · e_s          Σ_s a_s (W_v^h e_s) = W_v^h (Σ_s a_s e_s)

so folding the query through W_k and the attention-weighted encoder states through W_v costs ≈ 2·Q·H·S·d_model
multiply-adds instead of the 2·S·d_model·(H_kv·d_kv) of projecting K and V (Q decoder tokens, H query heads, H_kv
key/value heads): fewer whenever `Q·H < H_kv·d_kv`, as for every MASK-INFILL call (Q = 2). The folded path is taken
only there (and never while training, with a KV cache or through adapted / quantised projections); it computes the
same attention as the backbone's eager and SDPA paths up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.t5.modeling_t5 import T5Attention
from transformers.models.t5gemma.modeling_t5gemma import T5GemmaCrossAttention

_FOLDABLE_IMPLEMENTATIONS = ("eager", "sdpa")


def folding_is_cheaper(query_length: int, num_heads: int, kv_heads: int, head_dim: int) -> bool:
    """Whether folding costs fewer multiply-adds than projecting the encoder's K and V (module docstring)."""
    return query_length * num_heads < kv_heads * head_dim


def _can_fold(module: nn.Module, query_length: int, k_proj: nn.Module, v_proj: nn.Module, cache,
              num_heads: int, kv_heads: int, head_dim: int) -> bool:
    # exact nn.Linear only: a LoRA layer's or a quantised layer's `.weight` is not the map it applies
    return (
        cache is None
        and not module.training
        and module.config._attn_implementation in _FOLDABLE_IMPLEMENTATIONS
        and type(k_proj) is nn.Linear
        and type(v_proj) is nn.Linear
        and folding_is_cheaper(query_length, num_heads, kv_heads, head_dim)
    )


def folded_cross_attention(
    query: torch.Tensor,
    encoder_states: torch.Tensor,
    k_proj: nn.Linear,
    v_proj: nn.Linear,
    mask: torch.Tensor | None,
    scaling: float,
    position_bias: torch.Tensor | None = None,
    softcap: float | None = None,
    softmax_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Attention of `query` `[B, H, Q, d_kv]` over `encoder_states` `[B, S, d]` through the K/V projections, folded:
    returns the heads' outputs `[B, Q, H·d_kv]` (before the output projection) and the weights `[B, H, Q, S]`.

    Scores are `q·k · scaling`, soft-capped (`softcap`), plus `position_bias` and `mask` (additive float, or boolean
    True where attended), softmaxed in `softmax_dtype` (default the query's), as the backbones' eager path does.
    Query head h reads key/value head `h // (H / H_kv)` (grouped-query attention).
    """
    batch, heads, length, head_dim = query.shape
    kv_heads = k_proj.weight.shape[0] // head_dim
    grouped = query.reshape(batch, kv_heads, heads // kv_heads * length, head_dim)
    w_k = k_proj.weight.view(kv_heads, head_dim, -1)
    w_v = v_proj.weight.view(kv_heads, head_dim, -1)
    folded = torch.einsum("bgqc,gcm->bgqm", grouped, w_k)  # W_kᵀ q per head: [B, H_kv, H/H_kv·Q, d]
    scores = torch.matmul(folded.reshape(batch, heads * length, -1), encoder_states.transpose(1, 2))
    scores = scores.view(batch, heads, length, -1)
    if k_proj.bias is not None:
        key_bias = torch.einsum("bgqc,gc->bgq", grouped, k_proj.bias.view(kv_heads, head_dim))
        scores = scores + key_bias.reshape(batch, heads, length, 1)
    scores = scores * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if position_bias is not None:
        scores = scores + position_bias
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else scores + mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=softmax_dtype).to(query.dtype)
    mixed = torch.matmul(weights.reshape(batch, heads * length, -1), encoder_states)  # Σ_s a_s e_s: [B, H·Q, d]
    out = torch.einsum("bgqm,gcm->bgqc", mixed.view(batch, kv_heads, -1, mixed.shape[-1]), w_v)
    if v_proj.bias is not None:  # the weights sum to one, so the value bias passes through unchanged
        out = out + v_proj.bias.view(1, kv_heads, 1, head_dim)
    out = out.reshape(batch, heads, length, head_dim).transpose(1, 2).reshape(batch, length, heads * head_dim)
    return out, weights


class FoldingT5Attention(T5Attention):
    """T5's attention; as decoder cross-attention of a short query it folds the projections (module docstring)."""

    def forward(self, hidden_states, mask=None, key_value_states=None, position_bias=None, cache=None, **kwargs):
        heads, head_dim = self.n_heads, self.key_value_proj_dim
        if key_value_states is None or not _can_fold(
            self, hidden_states.shape[1], self.k, self.v, cache, heads, heads, head_dim
        ):
            return super().forward(hidden_states, mask, key_value_states, position_bias, cache, **kwargs)
        query = self.q(hidden_states).view(*hidden_states.shape[:-1], heads, head_dim).transpose(1, 2)
        out, weights = folded_cross_attention(
            query, key_value_states, self.k, self.v, mask, self.scaling, position_bias=position_bias
        )
        # a cross-attention layer without relative attention bias hands on no bias: the next layer's is zero too
        return self.o(out), position_bias, weights


class FoldingT5GemmaCrossAttention(T5GemmaCrossAttention):
    """T5-Gemma's cross-attention, folding the projections for a short query (module docstring)."""

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, cache=None, **kwargs):
        head_dim = self.head_dim
        heads = self.q_proj.out_features // head_dim
        kv_heads = heads // self.num_key_value_groups
        if encoder_hidden_states is None or not _can_fold(
            self, hidden_states.shape[1], self.k_proj, self.v_proj, cache, heads, kv_heads, head_dim
        ):
            return super().forward(hidden_states, attention_mask, encoder_hidden_states, cache, **kwargs)
        query = self.q_proj(hidden_states).view(*hidden_states.shape[:-1], heads, head_dim).transpose(1, 2)
        out, weights = folded_cross_attention(
            query, encoder_hidden_states, self.k_proj, self.v_proj, attention_mask, self.scaling,
            softcap=self.attn_logit_softcapping, softmax_dtype=torch.float32,
        )
        return self.o_proj(out), weights


_FOLDING_CLASSES = {T5Attention: FoldingT5Attention, T5GemmaCrossAttention: FoldingT5GemmaCrossAttention}


def enable_folded_cross_attention(backbone: nn.Module) -> int:
    """Give every decoder cross-attention module of `backbone` its folding class (same parameters and state-dict
    keys, a subclass of the backbone's); returns how many. T5 self-attention modules are left as they are."""
    count = 0
    for name, module in backbone.named_modules():
        folding = _FOLDING_CLASSES.get(type(module))
        if folding is not None and (folding is not FoldingT5Attention or name.endswith("EncDecAttention")):
            module.__class__ = folding
            count += 1
    return count


__all__ = [
    "FoldingT5Attention",
    "FoldingT5GemmaCrossAttention",
    "enable_folded_cross_attention",
    "folded_cross_attention",
    "folding_is_cheaper",
]
