"""Glauber generate() with N = 1 against the backbone's own autoregressive generate() (KV cache).

Same backbone weights, prompt, canvas length L and batch, measured in one run. Prints model calls, wall time,
time per call and the ratio Glauber / autoregressive (target for later work: ≤ 2.0).

    python benchmarks/bench_generate.py                     # tiny and T5-small-shaped (~60M) random models, L = 128
    python benchmarks/bench_generate.py --shapes tiny --length 64 --batch 4
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration

from modeling_glauber import GlauberT5ForDiffusion

SHAPES = {
    "tiny": dict(vocab_size=384, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128),
    "t5-small": dict(vocab_size=32128, d_model=512, num_layers=6, num_heads=8, d_kv=64, d_ff=2048),
}


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(shape: str, length: int, batch: int, prompt_length: int, repeats: int) -> dict:
    torch.manual_seed(0)
    config = T5Config(decoder_start_token_id=0, **SHAPES[shape])
    backbone = T5ForConditionalGeneration(config).eval()
    autoregressive = copy.deepcopy(backbone)
    model = GlauberT5ForDiffusion.from_backbone(backbone, num_rounds=1).eval()
    prompt = torch.randint(3, config.vocab_size - 200, (batch, prompt_length))

    def run_glauber():
        return model.generate(input_ids=prompt, max_new_tokens=length, num_rounds=1, seed=0,
                              return_dict_in_generate=True)

    def run_autoregressive():
        with torch.no_grad():
            return autoregressive.generate(input_ids=prompt, max_new_tokens=length, min_new_tokens=length,
                                           do_sample=True, top_k=0)

    calls = run_glauber().num_model_calls
    run_autoregressive()
    glauber_s = best_of(repeats, run_glauber)
    ar_s = best_of(repeats, run_autoregressive)
    params = sum(p.numel() for p in autoregressive.parameters())
    return dict(shape=shape, params=params, L=length, batch=batch, glauber_calls=calls, ar_calls=length,
                glauber_s=glauber_s, ar_s=ar_s, glauber_ms_per_call=1000 * glauber_s / calls,
                ar_ms_per_call=1000 * ar_s / length, ratio=glauber_s / ar_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="tiny,t5-small")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(s, args.length, args.batch, args.prompt_length, args.repeats) for s in args.shapes.split(",")]
    header = "| backbone | params | L | batch | Glauber calls | AR calls | Glauber s | AR s | Glauber ms/call | AR ms/call | ratio |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in rows:
        print(f"| {r['shape']} | {r['params'] / 1e6:.1f}M | {r['L']} | {r['batch']} | {r['glauber_calls']} | "
              f"{r['ar_calls']} | {r['glauber_s']:.2f} | {r['ar_s']:.2f} | {r['glauber_ms_per_call']:.1f} | "
              f"{r['ar_ms_per_call']:.1f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
