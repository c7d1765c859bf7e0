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
        canvas_position_factors: factorised canvas positions (DESIGN §9), one list per factor f holding index_f(k)
            for every canvas position k (Sudoku: row, column, box): `E[k] = Σ_f F_f[index_f(k)]`, each table F_f
            zero-initialised with `max(index_f) + 1` rows, added wherever the canvas position embedding is. Every
            list has the canvas length L; None (the default) adds nothing.
        canvas_peer_attention: add a learned, zero-initialised score bias β[f, h] to the encoder self-attention
            between two tokens whose canvas positions share factor f's index (peers: the same row, column or box),
            for every head h of a T5 backbone; needs canvas_position_factors (`peer_attention.py`).
        canvas_peer_attention_decoder: the same bias, with its own β, in the CAUSAL-GEN decoder's self-attention
            (step j holds the cell π_0(j) it writes) and in its cross-attention to the prompt's cells; needs
            canvas_peer_attention.
        canvas_given_embedding: add a learned, zero-initialised vector to the MASK-INFILL encoder token of every
            frozen canvas position (a puzzle's givens), so the infill tells givens from values it may change.
        infill_decoder_canvas_positions: the MASK-INFILL decoder's `<extra_id_j>` (the token whose logits predict
            window slot j) gets the canvas embedding of the position it asks for, and with
            canvas_peer_attention_decoder the peer biases of that position, as the CAUSAL-GEN decoder input that
            writes a cell does; False (the default) leaves the infill decoder unannotated, so the cell is found only
            by matching the sentinel in the encoder. Needs canvas positions to embed.
        prompt_canvas_positions: the prompt holds one token per canvas position, in canvas order (a Sudoku grid
            with blanks): prompt token k gets the canvas embedding of position k in both modes.
        canvas_position_token_ids: ids of words that name a canvas position: a prompt token equal to
            `canvas_position_token_ids[k]` gets the canvas embedding of position k in both modes, wherever it stands
            (a Zebra clue naming the cell of an entity), so the link from a clue to its cell is in the input.
        infill_reads_prompt: MASK-INFILL reads `[R] + P + x + </s>` (True, the default); False drops P, for puzzles
            whose givens are frozen canvas cells, so the infill encoder reads only the canvas.
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
    canvas_position_factors: list[list[int]] | None = None
    canvas_given_embedding: bool = False
    canvas_peer_attention: bool = False
    canvas_peer_attention_decoder: bool = False
    infill_decoder_canvas_positions: bool = False
    prompt_canvas_positions: bool = False
    canvas_position_token_ids: list[int] | None = None
    infill_reads_prompt: bool = True
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
        self._validate_canvas_fields()
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

    def _validate_canvas_fields(self) -> None:
        factors = self.canvas_position_factors
        if factors is not None:
            if not isinstance(factors, (list, tuple)) or not factors:
                raise ValueError(f"canvas_position_factors must be a non-empty list of index lists, got {factors!r}")
            lengths = set()
            for f, index in enumerate(factors):
                if not isinstance(index, (list, tuple)) or not index:
                    raise ValueError(f"canvas_position_factors[{f}] must be a non-empty list of indices, got {index!r}")
                bad = [v for v in index if not isinstance(v, int) or isinstance(v, bool) or v < 0]
                if bad:
                    raise ValueError(
                        f"canvas_position_factors[{f}] holds {bad[0]!r}; every index must be an integer >= 0"
                    )
                lengths.add(len(index))
            if len(lengths) != 1:
                raise ValueError(
                    f"canvas_position_factors must give every factor one index per canvas position (the same length), "
                    f"got lengths {sorted(len(index) for index in factors)}"
                )
            if self.canvas_position_embeddings and self.canvas_position_embeddings < lengths.pop():
                raise ValueError(
                    "canvas_position_embeddings must cover the canvas of canvas_position_factors "
                    f"({len(factors[0])} positions), got {self.canvas_position_embeddings}"
                )
        for name in ("canvas_given_embedding", "canvas_peer_attention", "canvas_peer_attention_decoder",
                     "infill_decoder_canvas_positions", "prompt_canvas_positions", "infill_reads_prompt"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        named = self.canvas_position_token_ids
        if named is not None:
            if (not isinstance(named, (list, tuple)) or not named
                    or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in named)):
                raise ValueError(f"canvas_position_token_ids must be a non-empty list of token ids >= 0, got {named!r}")
            if len(set(named)) != len(named):
                raise ValueError("canvas_position_token_ids must name each canvas position by a different token id")
            limit = self.canvas_length_limit
            if limit is None or len(named) > limit:
                raise ValueError(
                    f"canvas_position_token_ids names {len(named)} canvas positions, but the model embeds "
                    f"{limit or 0} (canvas_position_embeddings / the length of canvas_position_factors)"
                )
        if self.canvas_peer_attention and not factors:
            raise ValueError(
                "canvas_peer_attention needs canvas_position_factors (the factors that make two cells peers)"
            )
        if self.canvas_peer_attention_decoder and not self.canvas_peer_attention:
            raise ValueError("canvas_peer_attention_decoder needs canvas_peer_attention=True")
        for name in ("prompt_canvas_positions", "infill_decoder_canvas_positions"):
            if getattr(self, name) and self.canvas_length_limit is None:
                raise ValueError(
                    f"{name} needs canvas positions to embed: set canvas_position_embeddings > 0 or "
                    "canvas_position_factors"
                )

    @property
    def canvas_length_limit(self) -> int | None:
        """Longest canvas the canvas position tables embed; None when the model has none (any length)."""
        limits = [len(self.canvas_position_factors[0])] if self.canvas_position_factors else []
        limits += [self.canvas_position_embeddings] if self.canvas_position_embeddings else []
        return min(limits) if limits else None

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
