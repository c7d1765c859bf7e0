"""Configuration of a Glauber-dynamics diffusion model built on a T5-family or T5-Gemma backbone."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

SUPPORTED_BACKBONES = ("t5", "t5gemma")
CAUSAL_ORDERS = ("identity", "random")


class GlauberT5Config(PreTrainedConfig):
    r"""
    Holds the backbone's config (`backbone`, a `T5Config` or `T5GemmaConfig`) and the Glauber fields of DESIGN.md.

    Args:
        backbone: config (or dict) of the encoder-decoder backbone; `model_type` must be one of `SUPPORTED_BACKBONES`.
        num_rounds: N, the number of Glauber rounds the time schedule is laid out for (T = N·L).
        mask_window: w, how many upcoming positions of the reverse pass are masked at each MASK-INFILL step.
        permutation_seed: seed of the fixed permutations π_0 … π_N (identical at training and inference).
        causal_order: order π_0 of the CAUSAL-GEN draft: "identity" (text) or "random" (puzzles).
        time_frequency_dim: size of the sinusoidal features of τ.
        time_embedding_dim: width of the time MLP that feeds the AdaLN-Zero projection.
        canvas_position_embeddings: L_max > 0 adds a learned, zero-initialised embedding of canvas position k
            (k < L_max) to the canvas token at k in the MASK-INFILL encoder and to the CAUSAL-GEN decoder input that
            writes k, so that a cell knows where it is without deriving it from relative positions (puzzles); 0 (the
            default) adds nothing, as text needs.
        r_mode_token_id / s_mode_token_id / x_mode_token_id: UL2 mode tokens ([NLU], [S2S], [NLG]); None omits them.
        sentinel_token_ids: ids of `<extra_id_0>`, `<extra_id_1>`, … (at least `mask_window` of them).
        suppressed_token_ids: ids neither mode may emit (specials, sentinels, ids past the tokenizer's vocabulary).
        backbone_name_or_path: Hub id or directory the backbone was converted from (the model card's `base_model`);
            None when unknown.
    """

    model_type = "glauber_t5"
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="t5")}

    backbone: dict | PreTrainedConfig | None = None
    num_rounds: int = 1
    mask_window: int = 1
    permutation_seed: int = 0
    causal_order: str = "identity"
    time_frequency_dim: int = 256
    time_embedding_dim: int = 256
    canvas_position_embeddings: int = 0
    r_mode_token_id: int | None = None
    s_mode_token_id: int | None = None
    x_mode_token_id: int | None = None
    sentinel_token_ids: list[int] | None = None
    suppressed_token_ids: list[int] | None = None
    backbone_name_or_path: str | None = None
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        # The base class resets the attention implementation of every sub-config; a live backbone keeps its own
        # (T5-Gemma must stay on eager attention, its softcapping rules out sdpa).
        kept = _attention_implementations(self.backbone) if isinstance(self.backbone, PreTrainedConfig) else []
        super().__post_init__(**kwargs)
        for config, implementation in kept:
            config._attn_implementation_internal = implementation
        self.validate_glauber_fields()

    def validate_glauber_fields(self) -> None:
        """Raise `ValueError` naming the first field outside its allowed range."""
        if self.backbone.model_type not in SUPPORTED_BACKBONES:
            raise ValueError(
                f"backbone.model_type={self.backbone.model_type!r} is not supported; allowed: {SUPPORTED_BACKBONES}"
            )
        for name, low in (
            ("num_rounds", 1),
            ("mask_window", 1),
            ("time_frequency_dim", 2),
            ("time_embedding_dim", 1),
            ("canvas_position_embeddings", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.time_frequency_dim % 2:
            raise ValueError(f"time_frequency_dim must be even, got {self.time_frequency_dim}")
        if not isinstance(self.permutation_seed, int) or self.permutation_seed < 0:
            raise ValueError(f"permutation_seed must be a non-negative integer, got {self.permutation_seed!r}")
        if self.causal_order not in CAUSAL_ORDERS:
            raise ValueError(f"causal_order must be one of {CAUSAL_ORDERS}, got {self.causal_order!r}")
        vocab = self.vocab_size
        ids = {
            "r_mode_token_id": [self.r_mode_token_id],
            "s_mode_token_id": [self.s_mode_token_id],
            "x_mode_token_id": [self.x_mode_token_id],
            "sentinel_token_ids": self.sentinel_token_ids or [],
            "suppressed_token_ids": self.suppressed_token_ids or [],
        }
        for name, values in ids.items():
            for value in values:
                if value is not None and not 0 <= int(value) < vocab:
                    raise ValueError(f"{name} contains {value}, outside the vocabulary [0, {vocab})")
        if self.sentinel_token_ids is not None:
            if len(set(self.sentinel_token_ids)) != len(self.sentinel_token_ids):
                raise ValueError("sentinel_token_ids must be distinct")
            if len(self.sentinel_token_ids) < self.mask_window:
                raise ValueError(
                    f"mask_window={self.mask_window} needs at least that many sentinel_token_ids, "
                    f"got {len(self.sentinel_token_ids)}"
                )

    @property
    def vocab_size(self) -> int:
        """Output vocabulary of the backbone (the decoder's, for T5-Gemma)."""
        if self.backbone.model_type == "t5gemma":
            return self.backbone.decoder.vocab_size
        return self.backbone.vocab_size

    @property
    def pad_id(self) -> int:
        return self.backbone.pad_token_id if self.backbone.pad_token_id is not None else 0

    @property
    def eos_id(self) -> int:
        eos = self.backbone.eos_token_id
        if isinstance(eos, (list, tuple)):
            eos = eos[0]
        return 1 if eos is None else int(eos)

    @property
    def decoder_start_id(self) -> int:
        """T5 starts the decoder with pad, T5-Gemma with bos."""
        start = getattr(self.backbone, "decoder_start_token_id", None)
        if start is None and self.backbone.model_type == "t5gemma":
            start = self.backbone.bos_token_id
        return self.pad_id if start is None else int(start)

    @property
    def max_sequence_length(self) -> int | None:
        """Longest encoder input the backbone accepts; None for T5, whose relative positions allow any length (its
        `n_positions` is a tokenizer-era hint, not a limit of the network)."""
        if self.backbone.model_type == "t5gemma":
            return getattr(self.backbone.encoder, "max_position_embeddings", None)
        return None


def _attention_implementations(config: PreTrainedConfig) -> list[tuple[PreTrainedConfig, str | None]]:
    found = [(config, getattr(config, "_attn_implementation_internal", None))]
    for key in config.sub_configs:
        sub = getattr(config, key, None)
        if isinstance(sub, PreTrainedConfig):
            found += _attention_implementations(sub)
    return found


__all__ = ["GlauberT5Config", "SUPPORTED_BACKBONES", "CAUSAL_ORDERS"]
