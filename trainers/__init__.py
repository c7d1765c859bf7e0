"""Training for Glauber diffusion LMs: the SEDD trainer with its frozen EMA reference, the UL2 stage, data, LoRA."""

from .arguments import GlauberTrainingArguments
from .data import (
    GlauberDataCollator,
    WorkerGenerator,
    load_text_dataset,
    pack_text_dataset,
    tokenize_prompt_canvas_rows,
)
from .lora import (
    T5_LORA_TARGET_MODULES,
    T5GEMMA_LORA_TARGET_MODULES,
    TIME_CONDITIONING_MODULES,
    apply_lora,
    glauber_lora_config,
)
from .reference import AdapterReference, CopyReference, GlauberReference, parameter_bytes
from .trainer import GlauberTrainer, ReferenceRefreshCallback, glauber_model_of
from .ul2 import UL2DataCollator, UL2Denoiser, default_ul2_mixture

__all__ = [
    "GlauberTrainer",
    "GlauberTrainingArguments",
    "GlauberDataCollator",
    "WorkerGenerator",
    "ReferenceRefreshCallback",
    "GlauberReference",
    "CopyReference",
    "AdapterReference",
    "UL2DataCollator",
    "UL2Denoiser",
    "default_ul2_mixture",
    "load_text_dataset",
    "pack_text_dataset",
    "tokenize_prompt_canvas_rows",
    "glauber_lora_config",
    "apply_lora",
    "glauber_model_of",
    "parameter_bytes",
    "T5_LORA_TARGET_MODULES",
    "T5GEMMA_LORA_TARGET_MODULES",
    "TIME_CONDITIONING_MODULES",
]
