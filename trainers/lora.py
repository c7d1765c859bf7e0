"""LoRA on the Glauber model through peft (paper §4.3: T5-Gemma, N = 1).

Targets are the attention and MLP projections of the backbone; the time conditioning (new, zero-initialised
AdaLN-Zero MLP) and, where the model has them, the canvas embeddings (positions, factors, given marker; new, zero) must
train in full, so they go in `modules_to_save`. `merge_and_unload()` returns a plain `GlauberT5ForDiffusion`.
"""

from __future__ import annotations

from torch import nn

# Attention (self and cross) and MLP projections, matched by module-name suffix.
T5GEMMA_LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
T5_LORA_TARGET_MODULES = ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"]
TIME_CONDITIONING_MODULES = ["time_conditioning"]
CANVAS_MODULES = ["canvas_position_embedding", "canvas_given_embedding"]


def new_modules(model) -> list[str]:
    """The modules conversion added (zero-initialised, so nothing pretrained to adapt): they train in full. Factor
    tables are named one by one: peft wraps modules it can call, not the `ModuleList` holding them."""
    names = TIME_CONDITIONING_MODULES + [name for name in CANVAS_MODULES if getattr(model, name) is not None]
    factors = model.canvas_factor_embeddings
    return names + [f"canvas_factor_embeddings.{f}" for f in range(len(factors) if factors is not None else 0)]


def glauber_lora_config(model, r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.0, **kwargs):
    """A `LoraConfig` for a `GlauberT5ForDiffusion`: backbone projections + the new modules in full."""
    from peft import LoraConfig

    backbone = model.config.backbone.model_type
    targets = T5GEMMA_LORA_TARGET_MODULES if backbone == "t5gemma" else T5_LORA_TARGET_MODULES
    kwargs.setdefault("target_modules", targets)
    kwargs.setdefault("modules_to_save", new_modules(model))
    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, task_type=None, **kwargs)


def apply_lora(model: nn.Module, lora_config):
    """`get_peft_model` with the checks peft leaves out: some module must match, and time conditioning must train."""
    from peft import get_peft_model

    targets = lora_config.target_modules
    if isinstance(targets, str):
        import re

        matched = [n for n, _ in model.named_modules() if re.fullmatch(targets, n)]
    else:
        suffixes = tuple(targets or ())
        matched = [n for n, _ in model.named_modules() if n.split(".")[-1] in suffixes]
    if not matched:
        raise ValueError(
            f"the LoRA config targets no module of this {model.config.backbone.model_type} backbone "
            f"(target_modules={targets!r}); use glauber_lora_config(model) or e.g. {T5GEMMA_LORA_TARGET_MODULES} "
            f"for T5-Gemma, {T5_LORA_TARGET_MODULES} for T5"
        )
    missing = [name for name in new_modules(model) if name not in (lora_config.modules_to_save or ())]
    if missing:
        raise ValueError(
            f"modules_to_save must include {missing}: modules the conversion added start at zero and must be trained"
        )
    return get_peft_model(model, lora_config)


__all__ = [
    "T5GEMMA_LORA_TARGET_MODULES",
    "T5_LORA_TARGET_MODULES",
    "TIME_CONDITIONING_MODULES",
    "CANVAS_MODULES",
    "new_modules",
    "glauber_lora_config",
    "apply_lora",
]
