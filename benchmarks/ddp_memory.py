"""Per-GPU memory of the training state under DDP for T5-Gemma sizes converted to Glauber models (no weights needed).

Every DDP rank holds the whole training state: weights, gradients, the two AdamW moments and the frozen EMA reference
(`trainers/reference.py`; a bf16/fp16 reference adds a float32 EMA accumulator). DeepSpeed ZeRO-2 (supported) splits
gradients and moments over the G ranks but keeps full weights and a full reference on each. Activations come on top.
The models are built on the meta device from the Gemma 2 decoder configurations the T5-Gemma checkpoints adapt
(2B: hidden 2304, 26 layers; 9B: hidden 3584, 42 layers; vocabulary 256,000) and counted with the default time
conditioning of `from_backbone`.

    python benchmarks/ddp_memory.py --gpu_gb 80 --zero2_gpus 8

LoRA rows: the frozen base in bf16 is the only per-parameter state (the adapter, its moments and its EMA reference,
a second adapter, are well under 1 % of it; the trained time conditioning is counted as base here).
"""

from __future__ import annotations

import argparse

import torch
from transformers import ByT5Tokenizer, T5GemmaConfig, T5GemmaForConditionalGeneration

from modeling_glauber import GlauberT5ForDiffusion

GEMMA2 = {
    "2B": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
               num_key_value_heads=4, head_dim=256),
    "9B": dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
               num_key_value_heads=8, head_dim=256),
}
SIZES = ("2B-2B", "9B-2B", "9B-9B")


def parameter_count(size: str) -> int:
    encoder, decoder = size.split("-")
    config = T5GemmaConfig(encoder=dict(GEMMA2[encoder], vocab_size=256000),
                           decoder=dict(GEMMA2[decoder], vocab_size=256000), vocab_size=256000)
    with torch.device("meta"):
        model = GlauberT5ForDiffusion.from_backbone(T5GemmaForConditionalGeneration(config), ByT5Tokenizer())
    shared = {id(p): p.numel() for p in model.parameters()}  # tied embeddings counted once
    return sum(shared.values())


# bytes per parameter: (weights, gradients, AdamW moments, reference incl. any float32 EMA accumulator)
PRECISIONS = {
    "fp32 weights (fp32, or bf16 autocast)": (4, 4, 8, 4),
    "bf16 weights (moments in bf16)": (2, 2, 4, 2 + 4),
    "LoRA, bf16 base, adapter reference": (2, 0, 0, 0),  # adapter, its moments and its reference: < 1 % here
}


def state_bytes(params: int, precision: str, zero2_gpus: int = 1) -> float:
    """Weights + reference + (gradients + AdamW moments) / zero2_gpus."""
    weights, grads, moments, reference = PRECISIONS[precision]
    return params * (weights + reference + (grads + moments) / zero2_gpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu_gb", type=float, default=80.0)
    parser.add_argument("--zero2_gpus", type=int, default=8)
    args = parser.parse_args()
    gib = 1e9
    print(f"| T5-Gemma | parameters | precision | DDP GB/GPU | fits {args.gpu_gb:.0f} GB | ZeRO-2 on {args.zero2_gpus} "
          f"GPUs GB/GPU | fits |\n|---|---|---|---|---|---|---|")
    for size in SIZES:
        params = parameter_count(size)
        for precision in PRECISIONS:
            ddp, zero2 = state_bytes(params, precision) / gib, state_bytes(params, precision, args.zero2_gpus) / gib
            print(f"| {size} | {params / 1e9:.2f} B | {precision} | {ddp:.0f} | {'yes' if ddp < args.gpu_gb else 'no'} "
                  f"| {zero2:.0f} | {'yes' if zero2 < args.gpu_gb else 'no'} |")
    for precision in PRECISIONS:
        print(f"largest model whose DDP state fits {args.gpu_gb:.0f} GB with {precision}: "
              f"{args.gpu_gb * gib / state_bytes(1, precision) / 1e9:.1f} B parameters (before activations)")

if __name__ == "__main__":
    main()
