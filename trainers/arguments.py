"""`GlauberTrainingArguments`: `TrainingArguments` plus the fields of the Glauber SEDD objective (DESIGN §4, §6)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from transformers import TrainingArguments

from modeling_glauber.schedule import TIMESTEP_SAMPLINGS

SCORE_PARAMETRIZATIONS = ("normalized", "unnormalized")
CAUSAL_LOSS_TARGETS = ("data", "chain")
LORA_REFERENCES = ("adapter", "copy")
SHARDED_PARAMETERS_UNSUPPORTED = (
    "GlauberTrainer does not support {what}: its EMA reference pairs each trained parameter with a full copy, and "
    "sharded parameters are replaced and split when the model is wrapped, so the reference would silently stop "
    "following training; use DDP or DeepSpeed ZeRO-1/2 (which shard only gradients and optimiser states), or LoRA "
    "with lora_reference='adapter' for a model whose full training state does not fit one device (per-GPU memory "
    "of T5-Gemma sizes: docs/training.md, 'Which model sizes fit')"
)


def _deepspeed_zero_stage(deepspeed) -> int | None:
    """The `zero_optimization.stage` of a DeepSpeed config given as a dict or a JSON file path."""
    if isinstance(deepspeed, str):
        with open(deepspeed, encoding="utf-8") as handle:
            deepspeed = json.load(handle)
    stage = deepspeed.get("zero_optimization", {}).get("stage") if isinstance(deepspeed, dict) else None
    return None if stage in (None, "auto") else int(stage)


@dataclass
class GlauberTrainingArguments(TrainingArguments):
    r"""
    Args:
        num_rounds: N of the schedule; None takes the model config's, any other value must equal it.
        timesteps_per_chain: K, loss terms taken from one noising chain. K = 1 is one time point per chain.
        timestep_sampling: where the K terms fall: "t_max" (appendix A: `ceil(j·t_max/K)`, j = 1 … K, for
            `t_max ~ U{1 … T}`; small t is visited more often) or "stratified" (one uniform draw in each of K equal
            strata of 1 … T: every term's time is exactly uniform, as DESIGN §6 asks).
        reference_update_steps: optimiser steps between refreshes of the frozen reference.
        reference_ema_decay: β of the refresh `ref ← β·ref + (1-β)·θ`; 0 is the hard copy of algorithm 1. The
            reference lags the model by `reference_update_steps / (1 - β)` optimiser steps (the EMA's time
            constant); the defaults (10, 0.99) give 1,000, so it tracks within a run (docs/training.md).
        score_parametrization: "normalized" (ℓ = log-softmax: cross-entropy) or "unnormalized" (raw-logit score entropy).
        causal_loss_weight: weight of the CAUSAL-GEN (τ = 1) next-token loss added to the DWDSE loss; 0 leaves the
            draft as it is (e.g. fitted by a UL2 stage).
        causal_loss_target: what the causal loss fits: the chain's own x_T ("chain", the default, which runs every
            chain to T), so that the draft starts the reverse chain at p_T and the sampler is exact (DESIGN §5); or
            the data x_0 ("data"), which leaves the sampler inexact unless p_T is close to the data.
        loss_time_buckets: number of equal τ-buckets the logged per-time loss is split into.
        lora_reference: with a peft model, keep the reference as a second adapter on the shared base ("adapter") or
            as a deep copy of the whole model ("copy").
        canvas_length: L; when set, every canvas must have exactly this length.
    """

    num_rounds: int | None = field(default=None, metadata={"help": "N (must equal the model config's when set)"})
    timesteps_per_chain: int = field(default=32, metadata={"help": "loss time points per noising chain"})
    timestep_sampling: str = field(default="t_max", metadata={"help": "t_max (appendix A) | stratified"})
    reference_update_steps: int = field(default=10, metadata={"help": "optimiser steps between reference refreshes"})
    reference_ema_decay: float = field(default=0.99, metadata={"help": "EMA decay of the reference; 0 = hard copy"})
    score_parametrization: str = field(default="normalized", metadata={"help": "normalized | unnormalized"})
    causal_loss_weight: float = field(default=1.0, metadata={"help": "weight of the CAUSAL-GEN loss"})
    causal_loss_target: str = field(default="chain", metadata={"help": "chain (x_T: exact sampler) | data"})
    loss_time_buckets: int = field(default=10, metadata={"help": "τ buckets of the logged per-time loss"})
    lora_reference: str = field(default="adapter", metadata={"help": "adapter | copy (peft models only)"})
    canvas_length: int | None = field(default=None, metadata={"help": "L; checked on every batch when set"})
    # The Glauber columns (canvas_ids, frozen) are not arguments of forward: keep them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "must stay False for GlauberTrainer"})

    def __post_init__(self):
        if self.deepspeed and _deepspeed_zero_stage(self.deepspeed) == 3:
            raise ValueError(SHARDED_PARAMETERS_UNSUPPORTED.format(what="deepspeed with ZeRO stage 3"))
        super().__post_init__()
        if self.fsdp:
            raise ValueError(SHARDED_PARAMETERS_UNSUPPORTED.format(what=f"fsdp={self.fsdp!r}"))
        if not isinstance(self.timesteps_per_chain, int) or self.timesteps_per_chain < 1:
            raise ValueError(f"timesteps_per_chain must be an integer >= 1, got {self.timesteps_per_chain!r}")
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, got {self.timestep_sampling!r}")
        if self.num_rounds is not None and (not isinstance(self.num_rounds, int) or self.num_rounds < 1):
            raise ValueError(f"num_rounds must be None or an integer >= 1, got {self.num_rounds!r}")
        if not isinstance(self.reference_update_steps, int) or self.reference_update_steps < 1:
            raise ValueError(f"reference_update_steps must be an integer >= 1, got {self.reference_update_steps!r}")
        if not 0.0 <= self.reference_ema_decay < 1.0:
            raise ValueError(f"reference_ema_decay must be in [0, 1), got {self.reference_ema_decay!r}")
        if self.score_parametrization not in SCORE_PARAMETRIZATIONS:
            raise ValueError(f"score_parametrization must be one of {SCORE_PARAMETRIZATIONS}")
        if self.causal_loss_weight < 0:
            raise ValueError(f"causal_loss_weight must be >= 0, got {self.causal_loss_weight}")
        if self.causal_loss_target not in CAUSAL_LOSS_TARGETS:
            raise ValueError(f"causal_loss_target must be one of {CAUSAL_LOSS_TARGETS}")
        if not isinstance(self.loss_time_buckets, int) or self.loss_time_buckets < 1:
            raise ValueError(f"loss_time_buckets must be an integer >= 1, got {self.loss_time_buckets!r}")
        if self.lora_reference not in LORA_REFERENCES:
            raise ValueError(f"lora_reference must be one of {LORA_REFERENCES}")
        if self.canvas_length is not None and self.canvas_length < 1:
            raise ValueError(f"canvas_length must be None or >= 1, got {self.canvas_length}")


__all__ = ["GlauberTrainingArguments"]
