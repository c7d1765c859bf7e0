"""GlauberT5ForDiffusion: a T5-family / T5-Gemma encoder-decoder turned into a Glauber-dynamics diffusion LM.

One network, two modes (DESIGN §2), conditioned on diffusion time τ through AdaLN-Zero (§3):
CAUSAL-GEN at τ = 1 drafts the canvas in order π_0; MASK-INFILL at τ = t/T resamples position k_t.
`generate()` runs the reverse process of §5: a causal draft, then `num_rounds` reverse Glauber rounds.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCardData
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils import ModelOutput, logging

from .configuration_glauber import SUPPORTED_BACKBONES, GlauberT5Config
from .cross_attention import enable_folded_cross_attention
from .generation_glauber import GlauberGenerationMixin
from .infill import (
    GlauberPrefix,
    build_prefix,
    causal_encoder_inputs,
    infill_canvas_given,
    infill_canvas_positions,
    infill_decoder_inputs,
    infill_encoder_inputs,
    infill_encoder_width,
    infill_span_canvas_positions,
    prefix_canvas_positions,
)
from .peer_attention import PeerBiasHook, PeerBiasState, first_attentions, peer_attention_bias
from .sampling import STREAM_DRAFT, SamplingParams, resolve_seeds, sample_tokens
from .schedule import GlauberSchedule, get_schedule
from .time_conditioning import (
    GlauberTimeConditioning,
    ModulationState,
    attach_time_conditioning,
    checkpoint_with_modulation,
    memoizing_modulation,
)

logger = logging.get_logger(__name__)

# Hugging Face generate() keywords that carry no meaning here and are accepted so that generic callers work.
_IGNORED_GENERATE_KWARGS = frozenset(
    {
        "use_cache",
        "pad_token_id",
        "eos_token_id",
        "bos_token_id",
        "decoder_start_token_id",
        "output_scores",
        "output_logits",
        "output_attentions",
        "output_hidden_states",
        "synced_gpus",
        "min_new_tokens",
    }
)


@dataclass
class GlauberGenerateOutput(ModelOutput):
    """
    Output of `GlauberT5ForDiffusion.generate(..., return_dict_in_generate=True)`.

    sequences: `[B, L]` the canvas after the reverse Glauber rounds (positions in natural order).
    draft_sequences: `[B, L]` x_T: the CAUSAL-GEN draft, or the start that `start` chose.
    num_model_calls: batched network invocations: L for a draft plus one per refinement call ((N+1)·L without
        frozen positions; with `update_block` m, one call per block of up to m steps of a round whose position is
        not frozen in every row, its decoder running m rows per canvas).
    trajectory: optional `[N+1, B, L]`: the draft, then the canvas after each round (n = N … 1).
    """

    sequences: torch.LongTensor | None = None
    draft_sequences: torch.LongTensor | None = None
    num_model_calls: int | None = None
    trajectory: torch.LongTensor | None = None


def _backbone_class(model_type: str) -> type[PreTrainedModel]:
    if model_type == "t5":
        from transformers import T5ForConditionalGeneration

        return T5ForConditionalGeneration
    from transformers import T5GemmaForConditionalGeneration

    return T5GemmaForConditionalGeneration


class GlauberT5PreTrainedModel(PreTrainedModel):
    config_class = GlauberT5Config
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["T5Block", "T5GemmaEncoderLayer", "T5GemmaDecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        # The backbone dispatches to its own _init_weights; this only sees the time conditioning and the canvas
        # position embedding, which starts at zero so that a converted model computes what its backbone did.
        if isinstance(module, nn.Embedding):
            init.zeros_(module.weight)
        elif isinstance(module, nn.Linear):
            if getattr(module, "_zero_init", False):
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)


class GlauberT5ForDiffusion(GlauberT5PreTrainedModel, GlauberGenerationMixin, GenerationMixin):
    r"""
    Backbone + AdaLN-Zero time conditioning on every norm layer of encoder and decoder.

    `forward(input_ids, attention_mask, decoder_input_ids, timesteps, labels=None)` is the backbone's forward at
    normalised diffusion time `timesteps` (τ ∈ [0, 1], one per row or a scalar; default 1). The two modes are
    `causal_logits` / `causal_draft` (CAUSAL-GEN) and `infill_logits` (MASK-INFILL); `generate` composes them;
    `metropolis_refine` (GlauberGenerationMixin) refines towards a causal energy's law p_E^β.
    """

    # Trainer must not hand num_items_in_batch to forward: the losses here are per-batch means.
    accepts_loss_kwargs = False
    # the tokenizer `from_backbone` converted with; `save_pretrained` / `push_to_hub` write it (None after loading)
    tokenizer = None

    def __init__(self, config: GlauberT5Config, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if backbone is None:
            backbone = _backbone_class(config.backbone.model_type)(config.backbone)
        else:
            # Pretrained weights: keep them out of post_init's initialisation.
            for module in backbone.modules():
                module._is_hf_initialized = True
            config.backbone = backbone.config
        self.backbone = backbone
        self._modulation_state = ModulationState()
        norm_dims = attach_time_conditioning(self.backbone, self._modulation_state)
        enable_folded_cross_attention(self.backbone)
        self.time_conditioning = GlauberTimeConditioning(
            norm_dims, config.time_frequency_dim, config.time_embedding_dim
        )
        d_model = self.get_input_embeddings().embedding_dim
        self.canvas_position_embedding = (
            nn.Embedding(config.canvas_position_embeddings, d_model) if config.canvas_position_embeddings else None
        )
        factors = config.canvas_position_factors
        self.canvas_factor_embeddings = (
            nn.ModuleList(nn.Embedding(max(index) + 1, d_model) for index in factors) if factors else None
        )
        self.canvas_given_embedding = nn.Embedding(1, d_model) if config.canvas_given_embedding else None
        # β[f, h] of the encoder's self-attention and of the CAUSAL-GEN decoder's self- and cross-attention
        self.canvas_peer_bias = self.canvas_decoder_peer_bias = self.canvas_cross_peer_bias = None
        self._peer_state = PeerBiasState()
        if config.canvas_peer_attention:
            attentions = first_attentions(self.backbone, config.canvas_peer_attention_decoder)
            heads = attentions["encoder"].n_heads
            self.canvas_peer_bias = nn.Embedding(len(factors), heads)
            if config.canvas_peer_attention_decoder:
                self.canvas_decoder_peer_bias = nn.Embedding(len(factors), heads)
                self.canvas_cross_peer_bias = nn.Embedding(len(factors), heads)
            for name, attention in attentions.items():
                attention.register_forward_pre_hook(PeerBiasHook(self._peer_state, name), with_kwargs=True)
        # Plain tensors, not buffers: from_pretrained materialises buffers from the meta device without values.
        self._special_tensors: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._factor_index: dict[torch.device, torch.Tensor] = {}
        self.post_init()

    def _specials(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        device = self.device if device is None else device
        # keyed on the config's ids too, so that editing them (e.g. suppressing non-value tokens) takes effect
        key = (device, tuple(c.sentinel_token_ids or ()), tuple(c.suppressed_token_ids or ()),
               c.r_mode_token_id, c.s_mode_token_id, c.x_mode_token_id)
        if key not in self._special_tensors:
            stale = [k for k in self._special_tensors if k[0] == device]
            for k in stale:
                del self._special_tensors[k]
            sentinels = torch.tensor(c.sentinel_token_ids or [], dtype=torch.long, device=device)
            self._special_tensors[key] = (self._build_suppress_mask(c).to(device), sentinels)
        return self._special_tensors[key]

    def restrict_canvas_vocabulary(self, allowed_token_ids) -> None:
        """Let both modes emit only `allowed_token_ids` (e.g. a puzzle's cell values); saved with the config."""
        allowed = set(int(i) for i in allowed_token_ids)
        if not allowed or min(allowed) < 0 or max(allowed) >= self.config.vocab_size:
            raise ValueError(f"allowed_token_ids must be non-empty ids in [0, {self.config.vocab_size})")
        self.config.suppressed_token_ids = sorted(set(range(self.config.vocab_size)) - allowed)

    @property
    def suppress_mask(self) -> torch.Tensor:
        """`[V]` True for the tokens neither mode may emit."""
        return self._specials()[0]

    @property
    def sentinel_ids(self) -> torch.Tensor:
        """`<extra_id_0>`, `<extra_id_1>`, … as a tensor on the model's device."""
        return self._specials()[1]

    @staticmethod
    def _build_suppress_mask(config: GlauberT5Config) -> torch.Tensor:
        """Tokens neither mode may emit: specials, sentinels, mode tokens and the config's suppressed ids."""
        mask = torch.zeros(config.vocab_size, dtype=torch.bool)
        ids = [config.pad_id, config.eos_id, config.decoder_start_id]
        ids += [i for i in (config.r_mode_token_id, config.s_mode_token_id, config.x_mode_token_id) if i is not None]
        ids += list(config.sentinel_token_ids or []) + list(config.suppressed_token_ids or [])
        mask[torch.tensor(ids, dtype=torch.long)] = True
        return mask

    # ----------------------------------------------------------------------------------------------- plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.backbone.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_output_embeddings(value)

    def get_encoder(self):
        return self.backbone.get_encoder()

    def time_conditioning_overhead(self) -> dict[str, float]:
        """Parameter count of the backbone, of the time conditioning, and their ratio (the paper adds ≈ 15 %)."""
        backbone = sum(p.numel() for p in self.backbone.parameters())
        time = sum(p.numel() for p in self.time_conditioning.parameters())
        return {"backbone_parameters": backbone, "time_parameters": time, "overhead": time / backbone}

    def _timesteps(self, timesteps, batch_size: int, device: torch.device) -> torch.Tensor:
        if timesteps is None:
            return torch.ones(1, device=device)
        tau = torch.as_tensor(timesteps, dtype=torch.float32, device=device)
        if tau.dim() == 0:
            tau = tau.view(1)
        if tau.shape not in ((batch_size,), (1,)):
            raise ValueError(f"timesteps must be a scalar or have shape ({batch_size},) or (1,), got {tuple(tau.shape)}")
        if bool(((tau < 0) | (tau > 1)).any()):
            raise ValueError("timesteps are normalised diffusion times τ = t/T and must lie in [0, 1]")
        return tau

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=checkpoint, **kwargs) -> None:
        """Checkpointed blocks are recomputed after `modulation` has exited; they get the forward's τ as an input."""
        super()._set_gradient_checkpointing(
            enable, checkpoint_with_modulation(self._modulation_state, gradient_checkpointing_func), **kwargs
        )

    @property
    def is_gradient_checkpointing(self) -> bool:
        """transformers' deprecated alias of `is_activation_checkpointing`, answered without its FutureWarning: peft
        reads it on every `get_peft_model` / `PeftModel.from_pretrained` of this model."""
        return self.is_activation_checkpointing

    def modulation(self, timesteps: torch.Tensor):
        """Context manager: every backbone call inside runs at diffusion times `timesteps` (`[B]` or `[1]`)."""
        return self._modulation_state.use(self._modulation_state.modulation_for(timesteps, self.time_conditioning))

    def prefill_modulation(self, timesteps: torch.Tensor) -> None:
        """Inside `memoized_modulation`: compute the modulation of every τ in `timesteps` `[n]` at once (no-op
        outside)."""
        self._modulation_state.prefill(timesteps, self.time_conditioning)

    def memoized_modulation(self, store: dict | None = None):
        """Context manager for no-grad callers whose weights stay fixed inside it (`generate`, a noising chain): the
        time MLP runs once per distinct τ; `store` (e.g. a reference's, cleared at each refresh) may outlive it."""
        return self._modulation_state.memoized(store)

    @property
    def has_canvas_embedding(self) -> bool:
        """Whether canvas tokens get an added embedding (positions, factors or the given marker)."""
        return any(m is not None for m in (self.canvas_position_embedding, self.canvas_factor_embeddings,
                                           self.canvas_given_embedding))

    def canvas_embedding(self, positions: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """`E[k] = E_pos[k] + Σ_f F_f[index_f(k)]` for every entry k of `positions` (DESIGN §9), plus the given
        marker G where `given` is True; zero where k = -1."""
        held = positions >= 0
        k = positions.clamp(min=0)
        weight = self.get_input_embeddings().weight
        out = torch.zeros(*positions.shape, weight.shape[1], dtype=weight.dtype, device=positions.device)
        if self.canvas_position_embedding is not None:
            out = out + self.canvas_position_embedding(k)
        if self.canvas_factor_embeddings is not None:
            index = self._factor_table(positions.device)
            for f, table in enumerate(self.canvas_factor_embeddings):
                out = out + table(index[f][k])
        out = out * held.unsqueeze(-1)
        if given is not None and self.canvas_given_embedding is not None:
            out = out + self.canvas_given_embedding.weight[0] * (given & held).unsqueeze(-1)
        return out

    def _factor_table(self, device: torch.device) -> torch.Tensor:
        """`[F, L]` index_f(k) of `canvas_position_factors`, one copy per device."""
        if device not in self._factor_index:
            self._factor_index[device] = torch.tensor(self.config.canvas_position_factors, device=device)
        return self._factor_index[device]

    def peer_biases(self, canvas_positions: torch.Tensor | None,
                    decoder_canvas_positions: torch.Tensor | None = None,
                    encoder: bool = True) -> dict[str, torch.Tensor]:
        """Peer biases (`peer_attention.py`) of an encoder input holding `canvas_positions` `[B, S]` and a decoder
        input holding `decoder_canvas_positions` `[B, T]`, by attention (`encoder=False`: the decoder's only, for a
        decoder call over a computed encoder output); empty for a model without them."""
        if self.canvas_peer_bias is None or canvas_positions is None:
            return {}
        index = self._factor_table(canvas_positions.device)
        biases = {}
        if encoder:
            biases["encoder"] = peer_attention_bias(canvas_positions, canvas_positions, index,
                                                    self.canvas_peer_bias.weight)
        if self.canvas_decoder_peer_bias is not None and decoder_canvas_positions is not None:
            biases["decoder"] = peer_attention_bias(decoder_canvas_positions, decoder_canvas_positions, index,
                                                    self.canvas_decoder_peer_bias.weight)
            biases["cross"] = peer_attention_bias(decoder_canvas_positions, canvas_positions, index,
                                                  self.canvas_cross_peer_bias.weight)
        return biases

    def peer_attention(self, canvas_positions: torch.Tensor | None,
                       decoder_canvas_positions: torch.Tensor | None = None, encoder: bool = True):
        """Context manager: the backbone call inside adds the peer biases of its tokens' canvas positions
        (`config.canvas_peer_attention`; a no-op for models without it or calls without positions)."""
        biases = self.peer_biases(canvas_positions, decoder_canvas_positions, encoder)
        return self._peer_state.use(**biases) if biases else nullcontext()

    def embed_with_canvas_positions(
        self,
        embed_tokens: nn.Module,
        ids: torch.Tensor,
        positions: torch.Tensor,
        name: str,
        given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`embed_tokens(ids) + canvas_embedding(positions, given)`: `positions[b, i]` is the canvas position token i
        holds (CAUSAL-GEN decoder: the one it writes), -1 where it holds none."""
        if not self.has_canvas_embedding:
            raise ValueError(
                f"{name} needs a model with a canvas embedding (config.canvas_position_embeddings > 0, "
                "canvas_position_factors or canvas_given_embedding)"
            )
        if ids is None or positions.shape != ids.shape:
            raise ValueError(f"{name} must have the shape of the token ids it annotates, got {tuple(positions.shape)}")
        limit = self.config.canvas_length_limit
        if limit is not None and positions.numel() and int(positions.max()) >= limit:
            raise ValueError(
                f"{name} holds canvas position {int(positions.max())}, but the model embeds canvas positions < {limit} "
                "(canvas_position_embeddings / the length of canvas_position_factors)"
            )
        if given is not None and given.shape != ids.shape:
            raise ValueError(f"canvas_given must have the shape of the token ids, got {tuple(given.shape)}")
        embeds = embed_tokens(ids)
        return embeds + self.canvas_embedding(positions, given).to(embeds.dtype)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        timesteps: torch.Tensor | float | None = None,
        labels: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        canvas_positions: torch.LongTensor | None = None,
        decoder_canvas_positions: torch.LongTensor | None = None,
        canvas_given: torch.BoolTensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""
        canvas_positions / decoder_canvas_positions: `[B, S]` / `[B, T]` canvas position held by each encoder /
            decoder token (-1: none), for models with a canvas embedding (`config.canvas_position_embeddings`,
            `canvas_position_factors`, `canvas_given_embedding`); `infill_inputs` and `causal_inputs` build them.
        canvas_given: `[B, S]` True at encoder tokens of given (frozen) canvas positions (`canvas_given_embedding`).
        """
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None and encoder_outputs is not None:
            reference = encoder_outputs[0]
        if reference is None:
            raise ValueError("forward needs input_ids, inputs_embeds or encoder_outputs")
        tau = self._timesteps(timesteps, reference.shape[0], reference.device)
        if canvas_positions is not None:
            inputs_embeds = self.embed_with_canvas_positions(
                self.backbone.get_encoder().embed_tokens, input_ids, canvas_positions, "canvas_positions", canvas_given
            )
            input_ids = None
        if decoder_canvas_positions is not None:
            decoder_inputs_embeds = self.embed_with_canvas_positions(
                self.backbone.get_decoder().embed_tokens, decoder_input_ids, decoder_canvas_positions,
                "decoder_canvas_positions",
            )
            decoder_input_ids = None
        with self.modulation(tau), self.peer_attention(canvas_positions, decoder_canvas_positions):
            return self.backbone(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
                encoder_outputs=encoder_outputs,
                cache=cache,
                inputs_embeds=inputs_embeds,
                decoder_inputs_embeds=decoder_inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                **kwargs,
            )

    # ----------------------------------------------------------------------------------------------- the modes
    def schedule(self, length: int) -> GlauberSchedule:
        """The fixed schedule (π_0 … π_N, k_t, τ) for a canvas of `length` positions."""
        c = self.config
        return get_schedule(length, c.num_rounds, c.permutation_seed, c.causal_order)

    def build_prefix(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        batch_size: int | None = None,
        frozen_mask: torch.Tensor | None = None,
        device: torch.device | None = None,
    ) -> GlauberPrefix:
        """The prompt P of each row, laid out for both modes (see `infill.build_prefix`); `frozen_mask` `[B, L]` marks
        the givens for a model with `canvas_given_embedding` (ignored otherwise). On `device` (default: the
        model's; a data collator builds it where its batch is)."""
        if batch_size is None:
            if input_ids is None:
                raise ValueError("build_prefix needs input_ids or batch_size")
            batch_size = input_ids.shape[0]
        c = self.config
        return build_prefix(
            input_ids,
            attention_mask,
            batch_size,
            s_mode_token_id=c.s_mode_token_id,
            r_mode_token_id=c.r_mode_token_id,
            eos_token_id=c.eos_id,
            pad_token_id=c.pad_id,
            device=self.device if device is None else device,
            infill_reads_prompt=c.infill_reads_prompt,
            given=frozen_mask if self.canvas_given_embedding is not None else None,
        )

    def causal_encoder_annotations(self, prefix: GlauberPrefix, length: int) -> dict[str, torch.Tensor]:
        """`canvas_positions` of the CAUSAL-GEN encoder tokens `[S] + P + </s>` when the prompt describes the canvas
        (`prompt_canvas_positions`) or names positions (`canvas_position_token_ids`); empty otherwise."""
        c = self.config
        if not (c.prompt_canvas_positions or c.canvas_position_token_ids):
            return {}
        head = prefix_canvas_positions(prefix.causal_ids, prefix.causal_mask, length, c.prompt_canvas_positions,
                                       c.s_mode_token_id is not None, c.canvas_position_token_ids)
        return {"canvas_positions": torch.cat([head, torch.full_like(head[:, :1], -1)], dim=1)}

    def infill_encoder_annotations(self, prefix: GlauberPrefix, length: int) -> dict[str, torch.Tensor]:
        """`canvas_positions` and, with `canvas_given_embedding`, `canvas_given` of an encoder input laid out like
        `infill_encoder_inputs` (`[R] + P + x + </s>`); empty for a model without a canvas embedding."""
        if not self.has_canvas_embedding:
            return {}
        c = self.config
        annotations = {
            "canvas_positions": infill_canvas_positions(
                prefix,
                length,
                prompt_positions=c.prompt_canvas_positions and c.infill_reads_prompt,
                mode_token=c.r_mode_token_id is not None,
                position_token_ids=c.canvas_position_token_ids if c.infill_reads_prompt else None,
            )
        }
        given = infill_canvas_given(prefix, length)
        if given is not None:
            annotations["canvas_given"] = given
        return annotations

    def content_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Float logits with every token neither mode may emit set to -inf."""
        return logits.float().masked_fill(self.suppress_mask, float("-inf"))

    def causal_inputs(self, prefix: GlauberPrefix, canvas: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forced CAUSAL-GEN forward arguments at τ = 1: decoder input `[start] + canvas[π_0][:-1]`
        (with a canvas position embedding: decoder position j carries π_0(j), the position it writes)."""
        order = self.schedule(canvas.shape[1]).causal_order_positions.to(canvas.device)
        ordered = canvas[:, order]
        start = torch.full_like(ordered[:, :1], self.config.decoder_start_id)
        enc_ids, enc_mask = causal_encoder_inputs(prefix, self.config.eos_id)
        inputs = {
            "input_ids": enc_ids,
            "attention_mask": enc_mask,
            "decoder_input_ids": torch.cat([start, ordered[:, :-1]], dim=1),
            "timesteps": torch.ones(1, device=canvas.device),
        }
        if self.has_canvas_embedding:
            inputs["decoder_canvas_positions"] = order.expand_as(ordered)
            inputs.update(self.causal_encoder_annotations(prefix, canvas.shape[1]))
        return inputs

    def infill_inputs(
        self,
        prefix: GlauberPrefix,
        canvas: torch.Tensor,
        window_positions: torch.Tensor,
        window_valid: torch.Tensor,
        timesteps: torch.Tensor | float,
    ) -> dict[str, torch.Tensor]:
        """MASK-INFILL forward arguments (DESIGN §2); the prediction is the logits at decoder position 1. Built on
        the canvas's device, never touching the model's (a DataLoader worker collates on the CPU beside a GPU model)."""
        sentinels = self._specials(canvas.device)[1]
        enc_ids, enc_mask = infill_encoder_inputs(
            prefix, canvas, window_positions, window_valid, sentinels, self.config.eos_id
        )
        dec_ids = infill_decoder_inputs(
            canvas.shape[0], self.config.decoder_start_id, self.config.sentinel_token_ids[0], canvas.device
        )
        tau = torch.as_tensor(timesteps, dtype=torch.float32, device=canvas.device).reshape(-1)
        inputs = {
            "input_ids": enc_ids,
            "attention_mask": enc_mask,
            "decoder_input_ids": dec_ids,
            "timesteps": tau,  # [1] (shared) or [B]
        }
        inputs.update(self.infill_encoder_annotations(prefix, canvas.shape[1]))
        if self.config.infill_decoder_canvas_positions:
            slot = window_positions.expand(canvas.shape[0], -1)[:, :1]
            inputs["decoder_canvas_positions"] = infill_span_canvas_positions(slot)
        return inputs

    def causal_logits(self, prefix: GlauberPrefix, canvas: torch.Tensor) -> torch.Tensor:
        """CAUSAL-GEN at τ = 1, teacher-forced: `[B, L, V]`, entry j predicting `canvas[:, π_0(j)]` (content only)."""
        return self.content_logits(self(**self.causal_inputs(prefix, canvas), use_cache=False).logits)

    def causal_log_likelihood(self, prefix: GlauberPrefix, canvas: torch.Tensor) -> torch.Tensor:
        """`[B, L]` log p_causal of each canvas token, indexed by canvas position (not by π_0 step)."""
        order = self.schedule(canvas.shape[1]).causal_order_positions.to(canvas.device)
        logprobs = self.causal_logits(prefix, canvas).log_softmax(dim=-1)
        per_step = logprobs.gather(2, canvas[:, order].unsqueeze(2)).squeeze(2)
        return torch.empty_like(per_step).scatter_(1, order.expand_as(per_step), per_step)

    @torch.no_grad()
    def causal_draft(
        self,
        prefix: GlauberPrefix,
        canvas: torch.Tensor,
        frozen: torch.Tensor,
        params: SamplingParams,
        seeds: torch.Tensor,
        progress=None,
    ) -> torch.Tensor:
        """CAUSAL-GEN at τ = 1 with the backbone's KV cache, in order π_0; frozen positions are teacher-forced."""
        batch, length = canvas.shape
        order_positions = self.schedule(length).causal_order_positions.to(canvas.device)
        order = order_positions.tolist()
        draft = canvas.clone()
        enc_ids, enc_mask = causal_encoder_inputs(prefix, self.config.eos_id)
        token = torch.full((batch, 1), self.config.decoder_start_id, dtype=torch.long, device=canvas.device)
        # E[π_0(j)] of every step, looked up once: generate() has checked that L fits the table
        step_positions = self.canvas_embedding(order_positions) if self.has_canvas_embedding else None
        embed_tokens = self.backbone.get_decoder().embed_tokens
        annotations = self.causal_encoder_annotations(prefix, length)
        if not annotations:
            encoder_inputs = {"input_ids": enc_ids}
        else:
            encoder_inputs = {"inputs_embeds": self.embed_with_canvas_positions(
                self.backbone.get_encoder().embed_tokens, enc_ids, annotations["canvas_positions"], "canvas_positions"
            )}
        # step j holds π_0(j): its peer-bias rows are row j of the whole draft's, over the j + 1 tokens so far (the
        # encoder pass reads only the "encoder" bias: the decoder's hooks do not run in it)
        biases = self.peer_biases(annotations.get("canvas_positions"), order_positions.expand(batch, -1))
        with self.modulation(torch.ones(1, device=canvas.device)):
            with self._peer_state.use(**biases):
                encoder_outputs = self.backbone.get_encoder()(attention_mask=enc_mask, **encoder_inputs)
            cache = None
            for step, position in enumerate(order):
                if step_positions is None:
                    decoder = {"decoder_input_ids": token}
                else:
                    embeds = embed_tokens(token)
                    decoder = {"decoder_inputs_embeds": embeds + step_positions[step].to(embeds.dtype)}
                step_biases = {"decoder": biases["decoder"][:, :, step:step + 1, :step + 1],
                               "cross": biases["cross"][:, :, step:step + 1]} if "decoder" in biases else {}
                with self._peer_state.use(**step_biases):
                    out = self.backbone(
                        encoder_outputs=encoder_outputs,
                        attention_mask=enc_mask,
                        cache=cache,
                        use_cache=True,
                        **decoder,
                    )
                cache = out.cache
                sampled = sample_tokens(self.content_logits(out.logits[:, -1]), params, seeds, STREAM_DRAFT, step)
                chosen = torch.where(frozen[:, position], draft[:, position], sampled)
                draft[:, position] = chosen
                token = chosen.unsqueeze(1)
                if progress is not None:
                    progress.update(1)
        return draft

    def infill_logits(
        self,
        prefix: GlauberPrefix,
        canvas: torch.Tensor,
        window_positions: torch.Tensor,
        window_valid: torch.Tensor,
        timesteps: torch.Tensor | float,
    ) -> torch.Tensor:
        r"""
        Batched MASK-INFILL: `[B, V]` logits (content tokens only) of `p_θ(x[k] | x∖window, τ)`.

        `window_positions`/`window_valid` are `[B, w]` or `[w]` (shared by every row); slot 0 is the predicted
        position k. `timesteps` is τ per row or a scalar.
        """
        return self.infill_block_logits(prefix, canvas, window_positions, window_valid, timesteps)[:, 0]

    def infill_block_logits(
        self,
        prefix: GlauberPrefix,
        canvas: torch.Tensor,
        window_positions: torch.Tensor,
        window_valid: torch.Tensor,
        timesteps: torch.Tensor | float,
        num_predicted: int = 1,
    ) -> torch.Tensor:
        r"""
        MASK-INFILL of the first `num_predicted` = m window slots from one encoder pass: `[B, m, V]` logits (content
        tokens only). Slot j's decoder row is `[decoder_start, <extra_id_j>]` over the shared encoder output, so
        slot 0 is `infill_logits`; each slot is predicted given the others masked, which is not their joint law
        (parallel Glauber, DESIGN §8). The LM head runs on the predicted decoder position only.
        """
        width = window_positions.shape[-1]
        if isinstance(num_predicted, bool) or not isinstance(num_predicted, int) or not 1 <= num_predicted <= width:
            raise ValueError(
                f"num_predicted must be an integer in [1, {width}] (the window's slots), got {num_predicted!r}"
            )
        inputs = self.infill_inputs(prefix, canvas, window_positions, window_valid, timesteps)
        batch, mask = canvas.shape[0], inputs["attention_mask"]
        tau = self._timesteps(inputs["timesteps"], batch, canvas.device)
        encoder = self.backbone.get_encoder()
        if "canvas_positions" in inputs:
            encoder_inputs = {"inputs_embeds": self.embed_with_canvas_positions(
                encoder.embed_tokens, inputs["input_ids"], inputs["canvas_positions"], "canvas_positions",
                inputs.get("canvas_given"),
            )}
        else:
            encoder_inputs = {"input_ids": inputs["input_ids"]}
        decoder_ids = infill_decoder_inputs(
            batch, self.config.decoder_start_id, self.config.sentinel_token_ids[:num_predicted], canvas.device
        )
        with self.modulation(tau), self.peer_attention(inputs.get("canvas_positions")):
            hidden = encoder(attention_mask=mask, **encoder_inputs).last_hidden_state
            modulation = self._modulation_state.current
        if num_predicted > 1:  # decoder row b·m + j reads row b's encoder output
            hidden, mask = hidden.repeat_interleave(num_predicted, 0), mask.repeat_interleave(num_predicted, 0)
            if modulation.shape[0] > 1:
                modulation = modulation.repeat_interleave(num_predicted, 0)
        decoder = self.backbone.get_decoder()
        decoder_inputs, peer = {"input_ids": decoder_ids}, nullcontext()
        if self.config.infill_decoder_canvas_positions:
            slots = window_positions.expand(batch, -1)[:, :num_predicted].reshape(-1, 1)
            positions = infill_span_canvas_positions(slots)
            decoder_inputs = {"inputs_embeds": self.embed_with_canvas_positions(
                decoder.embed_tokens, decoder_ids, positions, "decoder_canvas_positions"
            )}
            encoder_positions = inputs.get("canvas_positions")
            if encoder_positions is not None:
                peer = self.peer_attention(encoder_positions.repeat_interleave(num_predicted, 0), positions,
                                           encoder=False)
        with self._modulation_state.use(modulation), peer:
            decoded = decoder(
                **decoder_inputs, encoder_hidden_states=hidden, encoder_attention_mask=mask, use_cache=False
            ).last_hidden_state
        logits = self._lm_head(decoded[:, -1:])
        return self.content_logits(logits.view(batch, num_predicted, -1))

    def _lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The backbone's output layer on decoder states, as the backbone's own forward applies it (T5's output
        scaling, T5-Gemma's final soft-capping)."""
        backbone = self.backbone
        if getattr(backbone.config, "scale_decoder_outputs", False):
            hidden = hidden * (backbone.model_dim**-0.5)
        logits = backbone.lm_head(hidden)
        cap = getattr(backbone.get_decoder().config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    # ----------------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    @memoizing_modulation
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
        canvas_ids: torch.LongTensor | None = None,
        frozen_mask: torch.Tensor | None = None,
        num_rounds: int | None = None,
        mask_window: int | None = None,
        update_block: int = 1,
        start: str = "draft",
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        draft_sampling: dict | None = None,
        refine_sampling: dict | None = None,
        seed: int | list[int] | torch.Tensor | None = None,
        return_dict_in_generate: bool | None = None,
        output_trajectory: bool = False,
        progress: bool = False,
        generation_config: GenerationConfig | None = None,
        num_beams: int | None = None,
        num_return_sequences: int | None = None,
        **kwargs,
    ) -> torch.LongTensor | GlauberGenerateOutput:
        r"""
        The reverse Glauber process (DESIGN §5): x_T ~ CAUSAL-GEN(P), then for t = T' … 1 resample x[k_t] by
        MASK-INFILL at τ = t/T (`glauber_refine`). Costs (N+1)·L batched model calls; frozen positions are never
        resampled.

        Args:
            input_ids, attention_mask: the prompts P (encoder-side prefix; any padding side; may be None).
            max_new_tokens: canvas length L (or taken from `canvas_ids` / `generation_config`).
            batch_size: number of rows of an unconditional batch (no `input_ids` or `canvas_ids`); default 1.
            canvas_ids, frozen_mask: `[B, L]` given canvas values and which of them are frozen (infilling, puzzles).
            num_rounds: N' ≤ config.num_rounds; the last N' rounds of the training schedule run, starting from the
                draft (time is still normalised by T = config.num_rounds·L). 0 returns the draft.
            mask_window: w (default: the config's).
            update_block: m, positions of the schedule updated per model call (parallel Glauber, DESIGN §8): one
                encoder pass masks the next m positions of a round (and the mask window beyond) and the decoder
                predicts each of them in its own row, sampled independently. m = 1 is the exact single-site sampler;
                m > 1 is not exact (each position is drawn given the other m - 1 masked, not from their joint) and
                costs L + ⌈N'·L / m⌉ calls (per round, fewer with frozen positions).
            start: x_T, where the N' rounds start: `"draft"` (CAUSAL-GEN, L calls), `"uniform"` (each free position
                uniform over the content tokens) or `"canvas"` (`canvas_ids` as given, e.g. to refine another
                model's output); the last two call the model N'·L times only.
            do_sample, temperature, top_k, top_p: sampling of both modes (greedy when do_sample is False);
                `draft_sampling` / `refine_sampling` override fields for one mode.
            seed: int (row i uses seed + i), one per row, or None (drawn from torch's global generator). A row's
                result depends only on its prompt, canvas and seed, not on the rest of the batch.
            return_dict_in_generate: return a `GlauberGenerateOutput` rather than the sequences.
            output_trajectory: include the canvas after the draft and after each round.
            progress: show a tqdm bar over the model calls.
            generation_config: defaults for max_new_tokens, do_sample, temperature, top_k, top_p and
                return_dict_in_generate; arguments given here win, then this config, then `self.generation_config`
                (saved with the model as generation_config.json).
        """
        unknown = set(kwargs) - _IGNORED_GENERATE_KWARGS
        if unknown:
            hint = " (the canvas length is max_new_tokens)" if "max_length" in unknown else ""
            raise TypeError(
                f"generate() got unexpected keyword argument(s) {sorted(unknown)}{hint}; it accepts the sampling "
                "arguments listed in its docstring and ignores these Hugging Face ones: "
                + ", ".join(sorted(_IGNORED_GENERATE_KWARGS))
            )
        settings = self._generation_settings(
            generation_config,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_beams=num_beams,
            num_return_sequences=num_return_sequences,
            return_dict_in_generate=return_dict_in_generate,
        )
        if settings["num_beams"] not in (None, 1) or settings["num_return_sequences"] not in (None, 1):
            raise ValueError(
                "Glauber generate() supports num_beams=1 and num_return_sequences=1 only (from the arguments or the "
                f"generation config), got {settings['num_beams']} and {settings['num_return_sequences']}; repeat rows "
                "instead"
            )
        max_new_tokens, do_sample, temperature, top_k, top_p, return_dict_in_generate = (
            settings[name]
            for name in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "return_dict_in_generate")
        )
        base = SamplingParams(
            do_sample=True if do_sample is None else bool(do_sample),
            temperature=1.0 if temperature is None else temperature,
            top_k=top_k,
            top_p=top_p,
        )
        draft_params = base.updated(draft_sampling, "draft_sampling")
        refine_params = base.updated(refine_sampling, "refine_sampling")

        self.check_chain_start(start, canvas_ids)
        canvas, frozen, batch = self._validate_canvas(
            input_ids, attention_mask, max_new_tokens, canvas_ids, frozen_mask, batch_size
        )
        length = canvas.shape[1]
        num_rounds, mask_window = self.resolve_rounds_and_window(num_rounds, mask_window, length)
        if bool(frozen.all()):
            raise ValueError("frozen_mask freezes every canvas position: there is nothing to generate")

        prefix = self.build_prefix(input_ids, attention_mask, batch, frozen_mask=frozen)
        limit, width = self.config.max_sequence_length, infill_encoder_width(prefix, length)
        if limit is not None and width > limit:
            prompt = int(prefix.infill_mask.sum(1).max()) - (self.config.r_mode_token_id is not None)
            raise ValueError(
                f"prompt ({prompt} tokens) + canvas ({length}) + {width - prompt - length} special token(s) exceed "
                f"the backbone's maximum sequence length {limit}"
            )
        seeds = resolve_seeds(seed, batch, self.device)
        if isinstance(update_block, bool) or not isinstance(update_block, int) or update_block < 1:
            raise ValueError(
                f"update_block must be an integer >= 1 (positions updated per model call), got {update_block!r}"
            )
        masked = min(update_block, length) + mask_window - 1
        if masked > len(self.sentinel_ids):
            raise ValueError(
                f"update_block={update_block} with mask_window={mask_window} masks up to {masked} positions per call, "
                f"one sentinel each, but the config has {len(self.sentinel_ids)} sentinel_token_ids; lower either"
            )
        schedule = self.schedule(length)
        positions = schedule.positions[: num_rounds * length].to(self.device)
        # steps whose position is frozen in every row need no model call (decided on the host, once)
        movable = (~frozen.all(dim=0)[positions]).tolist()
        blocks = schedule.update_blocks(num_rounds, update_block, movable)
        num_model_calls = (length if start == "draft" else 0) + len(blocks)

        bar = None
        if progress and num_model_calls:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_model_calls, desc="glauber generate", unit="call")
        draft = self.chain_start(start, prefix, canvas, frozen, draft_params, seeds, progress=bar)
        sequences = draft.clone()
        trajectory = [draft.clone()] if output_trajectory else None
        self.glauber_refine(
            prefix, sequences, frozen, blocks, num_rounds, mask_window, refine_params, seeds, trajectory, bar
        )
        if bar is not None:
            bar.close()
        if not return_dict_in_generate:
            return sequences
        return GlauberGenerateOutput(
            sequences=sequences,
            draft_sequences=draft,
            num_model_calls=num_model_calls,
            trajectory=torch.stack(trajectory) if output_trajectory else None,
        )

    def _generation_settings(self, generation_config: GenerationConfig | None, **arguments) -> dict:
        """Each of `arguments` from the call, else from `generation_config`, else from `self.generation_config`.

        A config that sets a field this sampler cannot honour (beam search, penalties, `max_length`, …) is refused
        rather than silently ignored.
        """
        configs = [c for c in (generation_config, self.generation_config) if c is not None]
        understood = set(arguments) | _IGNORED_GENERATE_KWARGS | {"transformers_version", "_from_model_config"}
        for config in configs:
            unsupported = sorted(set(config.to_diff_dict()) - understood)
            if unsupported:
                raise ValueError(
                    f"the generation config sets {unsupported}, which Glauber generate() does not support; it reads "
                    + ", ".join(sorted(arguments))
                )
        settings = {}
        for name, value in arguments.items():
            for config in configs:
                if value is not None:
                    break
                value = getattr(config, name, None)
            settings[name] = value
        return settings

    def resolve_rounds_and_window(self, num_rounds: int | None, mask_window: int | None, length: int) -> tuple[int, int]:
        """(N', w) for a reverse pass over a canvas of `length`: the config's where None (w at most `length`: a canvas
        shorter than the trained window masks all of itself), else checked."""
        num_rounds = self.config.num_rounds if num_rounds is None else num_rounds
        if not isinstance(num_rounds, int) or not 0 <= num_rounds <= self.config.num_rounds:
            raise ValueError(
                f"num_rounds must be an integer in [0, {self.config.num_rounds}] (the config's num_rounds, which lays "
                f"out the time schedule), got {num_rounds!r}"
            )
        return num_rounds, self.resolve_mask_window(mask_window, length)

    def resolve_mask_window(self, mask_window: int | None, length: int) -> int:
        """The mask window w of a canvas of `length`, the one resolver shared by training, `generate` and the bound:
        the config's clipped to `length` where None (a canvas shorter than the trained window masks all of itself),
        else checked."""
        mask_window = min(self.config.mask_window, length) if mask_window is None else mask_window
        if not isinstance(mask_window, int) or not 1 <= mask_window <= length:
            raise ValueError(f"mask_window must be an integer in [1, {length}] (the canvas length), got {mask_window!r}")
        if len(self.sentinel_ids) < mask_window:
            raise ValueError(f"mask_window={mask_window} needs {mask_window} sentinel_token_ids in the config")
        return mask_window

    def _validate_canvas(self, input_ids, attention_mask, max_new_tokens, canvas_ids, frozen_mask, batch_size):
        vocab = self.config.vocab_size
        if batch_size is not None:
            if input_ids is not None or canvas_ids is not None:
                raise ValueError("batch_size is for unconditional batches; with input_ids or canvas_ids it is implied")
            if not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
            raise TypeError(
                f"attention_mask must be a tensor, got {type(attention_mask).__name__} (the second positional argument "
                "is the attention mask here; pass generation_config= by keyword)"
            )
        for name, ids in (("input_ids", input_ids), ("canvas_ids", canvas_ids)):
            if ids is not None and (not isinstance(ids, torch.Tensor) or ids.is_floating_point()):
                raise TypeError(f"{name} must be an integer tensor of token ids, got {getattr(ids, 'dtype', type(ids))}")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be 2-D [batch, prompt_length], got shape {tuple(input_ids.shape)}")
            if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
                raise ValueError(f"input_ids contain ids outside the vocabulary [0, {vocab})")
            if attention_mask is not None and attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
        if canvas_ids is not None:
            if canvas_ids.dim() != 2:
                raise ValueError(f"canvas_ids must be 2-D [batch, L], got shape {tuple(canvas_ids.shape)}")
            if max_new_tokens is not None and max_new_tokens != canvas_ids.shape[1]:
                raise ValueError(f"max_new_tokens={max_new_tokens} disagrees with canvas_ids of length {canvas_ids.shape[1]}")
            if canvas_ids.numel() and (int(canvas_ids.min()) < 0 or int(canvas_ids.max()) >= vocab):
                raise ValueError(f"canvas_ids contain ids outside the vocabulary [0, {vocab})")
            batch, length = canvas_ids.shape
        else:
            if max_new_tokens is None:
                raise ValueError("give max_new_tokens (the canvas length L) or canvas_ids")
            batch, length = (input_ids.shape[0] if input_ids is not None else batch_size or 1), max_new_tokens
        if input_ids is not None and input_ids.shape[0] != batch:
            raise ValueError(f"input_ids has {input_ids.shape[0]} rows but canvas_ids has {batch}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"max_new_tokens (the canvas length L) must be an integer >= 1, got {length!r}")
        table = self.config.canvas_length_limit
        if table is not None and length > table:
            raise ValueError(
                f"the canvas has L={length} positions, but the model embeds canvas positions < {table} "
                "(canvas_position_embeddings / the length of canvas_position_factors)"
            )
        factors = self.config.canvas_position_factors
        if factors and length != len(factors[0]):
            raise ValueError(
                f"the canvas has L={length} positions, but canvas_position_factors describe a canvas of "
                f"{len(factors[0])} positions"
            )
        if frozen_mask is not None:
            if canvas_ids is None:
                raise ValueError("frozen_mask needs canvas_ids (the values of the frozen positions)")
            if frozen_mask.shape != (batch, length):
                raise ValueError(f"frozen_mask must have shape {(batch, length)}, got {tuple(frozen_mask.shape)}")
        canvas = (
            canvas_ids.to(self.device).long()
            if canvas_ids is not None
            else torch.full((batch, length), self.config.pad_id, dtype=torch.long, device=self.device)
        )
        frozen = (
            frozen_mask.to(self.device).bool()
            if frozen_mask is not None
            else torch.zeros((batch, length), dtype=torch.bool, device=self.device)
        )
        return canvas, frozen, batch

    # ----------------------------------------------------------------------------------------------- conversion
    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike | PreTrainedModel,
        tokenizer=None,
        *,
        num_rounds: int = 1,
        mask_window: int = 1,
        permutation_seed: int = 0,
        causal_order: str = "identity",
        time_frequency_dim: int = 256,
        time_embedding_dim: int = 256,
        canvas_position_embeddings: int = 0,
        canvas_position_factors: list[list[int]] | None = None,
        canvas_given_embedding: bool = False,
        canvas_peer_attention: bool = False,
        canvas_peer_attention_decoder: bool = False,
        infill_decoder_canvas_positions: bool = False,
        prompt_canvas_positions: bool = False,
        canvas_position_token_ids: list[int] | None = None,
        infill_reads_prompt: bool = True,
        **from_pretrained_kwargs,
    ) -> "GlauberT5ForDiffusion":
        r"""
        Convert a pretrained T5 / Flan-T5 / UL2 / T5-Gemma model (Hub id, local directory or model object).

        Sentinels (all `<extra_id_i>` of `tokenizer`, at least max(8, w)) and UL2 mode tokens come from `tokenizer`
        when it has them; a tokenizer without sentinels (e.g. T5-Gemma's) gets `<extra_id_0…7>` added and the
        embeddings resized (logged). A Hub id or directory without `tokenizer` uses the tokenizer saved there; a bare
        model object without one gets the T5 convention (sentinels at the top of the tokenizer's vocabulary, see
        `_special_ids`). Only the time-conditioning parameters (and the zero-initialised canvas embeddings and peer
        biases that `canvas_position_embeddings`, `canvas_position_factors`, `canvas_given_embedding` and
        `canvas_peer_attention(_decoder)` ask for) are new. The model keeps the tokenizer it was converted with
        (with any added sentinels) as `model.tokenizer`: `save_pretrained` and `push_to_hub` write it beside the
        weights.
        """
        if isinstance(backbone, PreTrainedModel):
            model = backbone
        else:
            model = AutoModelForSeq2SeqLM.from_pretrained(backbone, **from_pretrained_kwargs)
            if tokenizer is None:
                shared = ("revision", "token", "cache_dir", "local_files_only", "trust_remote_code")
                tokenizer = AutoTokenizer.from_pretrained(
                    backbone, **{k: v for k, v in from_pretrained_kwargs.items() if k in shared}
                )
        if model.config.model_type not in SUPPORTED_BACKBONES:
            raise ValueError(
                f"backbone model_type {model.config.model_type!r} is not supported; allowed: {SUPPORTED_BACKBONES}"
            )
        source = (model.name_or_path or None) if isinstance(backbone, PreTrainedModel) else os.fspath(backbone)
        vocab = model.get_output_embeddings().weight.shape[0]
        sentinels, mode_ids, suppressed = _special_ids(model, tokenizer, vocab, max(8, mask_window))
        config = GlauberT5Config(
            backbone=model.config,
            num_rounds=num_rounds,
            mask_window=mask_window,
            permutation_seed=permutation_seed,
            causal_order=causal_order,
            time_frequency_dim=time_frequency_dim,
            time_embedding_dim=time_embedding_dim,
            canvas_position_embeddings=canvas_position_embeddings,
            canvas_position_factors=canvas_position_factors,
            canvas_given_embedding=canvas_given_embedding,
            canvas_peer_attention=canvas_peer_attention,
            canvas_peer_attention_decoder=canvas_peer_attention_decoder,
            infill_decoder_canvas_positions=infill_decoder_canvas_positions,
            prompt_canvas_positions=prompt_canvas_positions,
            canvas_position_token_ids=canvas_position_token_ids,
            infill_reads_prompt=infill_reads_prompt,
            sentinel_token_ids=sentinels,
            suppressed_token_ids=suppressed,
            backbone_name_or_path=source,
            **mode_ids,
        )
        glauber = cls(config, backbone=model)
        glauber.tokenizer = tokenizer
        # only the new modules: the backbone may keep some layers in float32 on purpose (T5's `wo` under fp16)
        canvas_modules = [glauber.canvas_position_embedding, glauber.canvas_factor_embeddings,
                          glauber.canvas_given_embedding, glauber.canvas_peer_bias, glauber.canvas_decoder_peer_bias,
                          glauber.canvas_cross_peer_bias]
        for module in filter(None, [glauber.time_conditioning, *canvas_modules]):
            module.to(model.device, model.dtype)
        overhead = glauber.time_conditioning_overhead()
        canvas_parameters = sum(p.numel() for m in filter(None, canvas_modules) for p in m.parameters())
        cells = f" and canvas embeddings ({canvas_parameters} parameters, zero)" if canvas_parameters else ""
        logger.warning(
            "Converted %s into a Glauber diffusion model: newly initialised time_conditioning.* (%d parameters, "
            "+%.1f%% over the backbone)%s; every other weight is the backbone's.",
            type(model).__name__,
            overhead["time_parameters"],
            100 * overhead["overhead"],
            cells,
        )
        return glauber

    def save_pretrained(
        self, save_directory, is_main_process: bool = True, *, tokenizer=None, push_to_hub: bool = False, **kwargs
    ):
        """Save weights (safetensors), config with `auto_map`, the flat code files, `generation_config.json`, the
        tokenizer (`tokenizer`, else `self.tokenizer` from `from_backbone`, if any) and, unless the folder already has
        one, the project's model card. `push_to_hub=True` (with `repo_id=`, `token=`, `commit_message=`, …) then
        uploads the folder as `push_to_hub` does."""
        if push_to_hub:
            hub_fields = (
                "repo_id", "commit_message", "commit_description", "private", "revision", "create_pr", "token"
            )
            hub = {name: kwargs.pop(name) for name in hub_fields if name in kwargs}
            hub.setdefault("repo_id", os.path.basename(os.path.normpath(save_directory)))
            self.save_pretrained(save_directory, is_main_process, tokenizer=tokenizer, **kwargs)
            return _upload_folder(save_directory, **hub) if is_main_process else None
        self.config.auto_map = {
            "AutoConfig": "configuration_glauber.GlauberT5Config",
            "AutoModel": "modeling_glauber.GlauberT5ForDiffusion",
            "AutoModelForSeq2SeqLM": "modeling_glauber.GlauberT5ForDiffusion",
        }
        kwargs.setdefault("safe_serialization", True)
        if not kwargs["safe_serialization"]:
            raise ValueError("GlauberT5ForDiffusion saves safetensors only (safe_serialization=True)")
        kwargs.pop("safe_serialization")
        result = super().save_pretrained(save_directory, is_main_process, **kwargs)
        if not is_main_process:
            return result
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)
        card = os.path.join(save_directory, "README.md")
        if not os.path.exists(card):
            with open(card, "w", encoding="utf-8") as handle:
                handle.write(self.model_card())
        return result

    def push_to_hub(
        self,
        repo_id: str,
        *,
        tokenizer=None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
    ):
        """
        Publish the checkpoint to the Hub in one commit: weights, config, the code files, `generation_config.json`,
        the tokenizer (`tokenizer`, else the one `from_backbone` converted with) and the project's model card (with
        `base_model`, `library_name`, `pipeline_tag`, `tags` + `tags` and a `trust_remote_code=True` usage snippet
        for `repo_id`). transformers' own `push_to_hub` would replace the card with its generic one. Returns the
        `CommitInfo`.
        """
        if tokenizer is None and self.tokenizer is None:
            logger.warning(
                "push_to_hub: no tokenizer to publish (the model was not made by from_backbone in this process); pass "
                "tokenizer= so that AutoTokenizer.from_pretrained(%r) works",
                repo_id,
            )
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, tokenizer=tokenizer, max_shard_size=max_shard_size)
            with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
                handle.write(self.model_card(repo_id=repo_id, tags=tags))
            return _upload_folder(
                folder,
                repo_id,
                commit_message=commit_message,
                commit_description=commit_description,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    def model_card(self, repo_id: str | None = None, tags: list[str] | None = None) -> str:
        """A Hub README.md for the checkpoint: metadata block, what the model is, how to load and generate, the cost
        model ((N+1)·L model calls for a canvas of L tokens) and the paper's citation."""
        c = self.config
        overhead = self.time_conditioning_overhead()
        card_tags = ["glauber-diffusion", "diffusion-lm", "text-diffusion", "custom_code"]
        card_tags += [t for t in list(self.model_tags or []) + list(tags or []) if t not in card_tags]
        base_model = _hub_id(c.backbone_name_or_path)
        metadata = ModelCardData(
            library_name="transformers", pipeline_tag="text-generation", tags=card_tags, base_model=base_model
        )
        name = repo_id or "<this folder or repo>"
        return f"""---
{metadata.to_yaml()}
---
# Glauber diffusion model ({c.backbone.model_type} backbone)

A Glauber-dynamics diffusion language model: a pretrained encoder-decoder turned into the energy function of a
discrete diffusion. One network has two modes. CAUSAL-GEN drafts the canvas x_T left to right; MASK-INFILL, told
the diffusion time τ = t/T through AdaLN-Zero, then revisits every position k_t of N fixed random orders and
resamples it given all the others (t = T … 1, T = N·L).

- backbone: `{base_model or c.backbone.model_type}` ({overhead['backbone_parameters']:,} parameters); time
  conditioning {overhead['time_parameters']:,} parameters (+{100 * overhead['overhead']:.1f}%)
- num_rounds N = {c.num_rounds}, mask_window w = {c.mask_window}, permutation_seed = {c.permutation_seed},
  causal order π_0 = {c.causal_order}

## Loading and generating

The code files in this repository are all that loading needs; both the model and the tokenizer take
`trust_remote_code=True` (transformers 5 reads `config.json`, which names custom code, before the tokenizer files).

```python
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("{name}", trust_remote_code=True)
tok = AutoTokenizer.from_pretrained("{name}", trust_remote_code=True)
enc = tok(["The history of"], return_tensors="pt")
out = model.generate(**enc, max_new_tokens=64, num_rounds={c.num_rounds}, do_sample=True, top_p=0.95, seed=0,
                     return_dict_in_generate=True)
print(tok.batch_decode(out.sequences, skip_special_tokens=True))        # refined text
print(tok.batch_decode(out.draft_sequences, skip_special_tokens=True))  # the CAUSAL-GEN draft x_T
print(out.num_model_calls)
```

`num_rounds=0` returns the draft; `num_rounds` N' < N runs the last N' rounds. `canvas_ids` with `frozen_mask` fix
positions that are never resampled (infilling); `mask_window` masks the next w − 1 positions of the order as well.

## Cost

A canvas of L tokens costs L model calls for the draft (KV-cached decoding, as an autoregressive sample) plus N·L
MASK-INFILL calls for the refinement: (N+1)·L model calls in all, so N = 1 costs the calls of two autoregressive
samples. `out.num_model_calls` reports the count (steps at positions frozen in every row are skipped).

## Citation

Made with the `glauber-diffusion` library (`GlauberT5ForDiffusion.from_backbone` converts a backbone,
`GlauberTrainer` trains it). The method:

```bibtex
@misc{{kathuria_kumar_glauber,
  title  = {{Leveraging Pretrained Language Models as Energy Functions for Glauber Dynamics Text Diffusion}},
  author = {{Kathuria, Tarun and Kumar, Sachin}},
}}
```
"""


def _hub_id(name: str | None) -> str | None:
    """`name` if it reads as a Hub repo id (`owner/name`, not a local path), else None."""
    if name and not os.path.exists(name) and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name):
        return name
    return None


def _upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
):
    """Every file under `folder` in one `create_commit` to `repo_id` (created if missing), as transformers pushes."""
    api = HfApi(library_name="glauber-diffusion")
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    root = Path(folder)
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(root).as_posix(), path_or_fileobj=str(path))
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or "Upload Glauber diffusion model",
        commit_description=commit_description,
        token=token,
        create_pr=create_pr,
        revision=revision,
    )


_T5_SENTENCEPIECE_SIZE, _T5_PADDED_VOCAB = 32100, 32128


def _resize_vocabulary(model: PreTrainedModel, size: int) -> None:
    """Resize the embeddings to `size` rows and record it in every config that describes one of them."""
    model.resize_token_embeddings(size)
    # transformers records the new size on the text (decoder) config only; T5-Gemma's encoder config keeps its own
    # `vocab_size`, and a checkpoint saved with the stale one fails to reload (size mismatch on encoder.embed_tokens)
    config = model.config
    for sub in (config, getattr(config, "encoder", None), getattr(config, "decoder", None)):
        if sub is not None and hasattr(sub, "vocab_size"):
            sub.vocab_size = size


def _special_ids(model: PreTrainedModel, tokenizer, vocab: int, num_sentinels: int):
    """Sentinel, UL2 mode and suppressed ids from the tokenizer, or by the T5 convention for a bare model."""
    if tokenizer is None:
        # T5, Flan-T5 and UL2 pad their 32,100-token SentencePiece vocabulary to 32,128 embedding rows: the sentinels
        # sit at the top of the tokenizer's vocabulary and the padding rows must never be emitted
        size = _T5_SENTENCEPIECE_SIZE if model.config.model_type == "t5" and vocab == _T5_PADDED_VOCAB else vocab
        config = model.config
        specials = {i for i in (config.pad_token_id, config.eos_token_id) if isinstance(i, int)}
        logger.warning(
            "No tokenizer given: assuming the T5 convention, sentinels <extra_id_i> = %d - 1 - i and never emitting "
            "%s and ids >= %d",
            size,
            sorted(specials),
            size,
        )
        return [size - 1 - i for i in range(num_sentinels)], {}, sorted(specials | set(range(size, vocab)))
    unk = tokenizer.unk_token_id
    names = [f"<extra_id_{i}>" for i in range(num_sentinels)]
    ids = [tokenizer.convert_tokens_to_ids(name) for name in names]
    if any(i is None or i == unk for i in ids):
        tokenizer.add_special_tokens({"additional_special_tokens": names}, replace_extra_special_tokens=False)
        _resize_vocabulary(model, max(len(tokenizer), vocab))
        ids = [tokenizer.convert_tokens_to_ids(name) for name in names]
        logger.warning(
            "The tokenizer had no sentinels: added %s … %s and resized the embeddings to %d",
            names[0],
            names[-1],
            model.get_output_embeddings().weight.shape[0],
        )
    # every further sentinel the tokenizer has: a UL2 span corruption needs one per span (T5: 100, ByT5: 125)
    while (extra := tokenizer.convert_tokens_to_ids(f"<extra_id_{len(ids)}>")) is not None and extra != unk:
        ids.append(extra)
    modes = {}
    for field, token in (("r_mode_token_id", "[NLU]"), ("s_mode_token_id", "[S2S]"), ("x_mode_token_id", "[NLG]")):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != unk:
            modes[field] = token_id
    out_vocab = model.get_output_embeddings().weight.shape[0]
    # <unk> stays emittable: it stands for text the tokenizer cannot spell (T5's SentencePiece has no `{`, no CJK),
    # and training data or lm-eval continuations that hold it must get a finite likelihood
    specials = set(tokenizer.all_special_ids) - {unk}
    suppressed = sorted(specials | set(range(len(tokenizer), out_vocab)))
    return ids, modes, suppressed


GlauberT5ForDiffusion.register_for_auto_class("AutoModel")

__all__ = ["GlauberT5ForDiffusion", "GlauberT5PreTrainedModel", "GlauberGenerateOutput"]
