"""Loading a Glauber checkpoint (optionally with a LoRA adapter) and its tokenizer, shared by every evaluator."""

from __future__ import annotations

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

import modeling_glauber  # noqa: F401  (registers the Auto classes, so the package's code wins over checkpoint copies)

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`"float32"`/`"bfloat16"`/`"float16"`/`"auto"` (None = the checkpoint's) or a torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def load_glauber(
    pretrained: str | PreTrainedModel,
    *,
    tokenizer=None,
    peft: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
):
    """`(model, tokenizer)` in eval mode. `peft` wraps the model with a LoRA adapter (unmerged: the adapter's layers
    run inside the base model's own methods, so `infill_logits`, `generate`, … all see it)."""
    if isinstance(pretrained, PreTrainedModel):
        model = pretrained
    else:
        torch_dtype = resolve_dtype(dtype)
        model = AutoModel.from_pretrained(pretrained, trust_remote_code=True, **({"dtype": torch_dtype} if torch_dtype else {}))
    if getattr(model.config, "model_type", None) != "glauber_t5":
        raise ValueError(
            f"pretrained={pretrained!r} is a {getattr(model.config, 'model_type', type(model).__name__)!r} model, not a "
            "Glauber checkpoint (model_type 'glauber_t5'); convert it with GlauberT5ForDiffusion.from_backbone"
        )
    if isinstance(dtype, (str, torch.dtype)) and resolve_dtype(dtype) is not None:
        model = model.to(resolve_dtype(dtype))
    if peft is not None:
        from peft import PeftModel

        # The LoRA layers are injected into the base model in place; keep the base object for its Glauber methods.
        model = PeftModel.from_pretrained(model, peft).get_base_model()
    model = model.to(device).eval()
    if tokenizer is None:
        if not isinstance(pretrained, str):
            raise ValueError("a model object needs an explicit tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(pretrained)
    elif isinstance(tokenizer, str):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    return model, tokenizer


def encode_prompts(tokenizer, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompt ids and mask (build_prefix accepts any padding side and drops the trailing `</s>`)."""
    ids = [tokenizer(text).input_ids for text in texts]
    width = max(1, max(len(i) for i in ids))
    pad = tokenizer.pad_token_id or 0
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids.to(device), mask.to(device)


def encode_canvas(tokenizer, text: str) -> list[int]:
    """Canvas ids of a continuation: no special tokens (canvases never hold eos/pad/sentinels)."""
    return tokenizer(text, add_special_tokens=False).input_ids


def decode_canvas(tokenizer, ids: torch.Tensor) -> list[str]:
    return tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)
