"""Generate with a Glauber diffusion model: a causal draft, then N reverse Glauber rounds.

    python examples/generate.py                       # a tiny random T5, converted on the spot (untrained!)
    python examples/generate.py --backbone google/flan-t5-large --num-rounds 3   # real weights (needs the Hub)
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoTokenizer, ByT5Tokenizer, T5Config, T5ForConditionalGeneration

from modeling_glauber import GlauberT5ForDiffusion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="Hub id or directory of a T5 / T5-Gemma model")
    parser.add_argument("--prompt", default="The history of")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--num-rounds", type=int, default=1, help="N >= 0 (0: the causal draft alone)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.num_rounds < 0 or args.max_new_tokens < 1:
        parser.error("--num-rounds must be >= 0 and --max-new-tokens >= 1")

    if args.backbone is None:
        print("NOTE: no --backbone given: using a tiny RANDOMLY INITIALISED T5 (untrained weights), so the text is")
        print("      noise; this run only shows the mechanics. Train one (make demo ARGS=--train) or pass --backbone.")
        torch.manual_seed(0)
        tokenizer = ByT5Tokenizer()
        backbone = T5ForConditionalGeneration(
            T5Config(vocab_size=len(tokenizer), d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128,
                     decoder_start_token_id=0)
        )
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.backbone)
        backbone = args.backbone
    # the schedule needs N >= 1; generating with fewer rounds runs its last ones (N' = 0: the draft)
    model = GlauberT5ForDiffusion.from_backbone(backbone, tokenizer, num_rounds=max(1, args.num_rounds)).eval()
    enc = tokenizer([args.prompt], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=args.max_new_tokens, num_rounds=args.num_rounds, top_p=0.95,
                         seed=args.seed, return_dict_in_generate=True, progress=True)
    print("prompt :", args.prompt)
    print("draft  :", tokenizer.decode(out.draft_sequences[0], skip_special_tokens=True))
    print("glauber:", tokenizer.decode(out.sequences[0], skip_special_tokens=True))
    print(f"model calls: {out.num_model_calls} = (N+1)·L = ({args.num_rounds}+1)·{args.max_new_tokens}")


if __name__ == "__main__":
    main()
