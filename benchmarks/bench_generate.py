"""Glauber generate() (N = 1, update_block m) against the backbone's own autoregressive generate() (KV cache).

Same backbone weights, prompt, canvas length L and batch, all measured in one run; the autoregressive sampler is the
baseline. Prints per method: model calls, seconds per generate (best of `--repeats`, wall clock; on the CPU also the
process's CPU time, which a busy machine disturbs less), milliseconds per call, FLOPs per sample (counted by
torch's FlopCounterMode: matmuls and attention, the bulk of the work) and the ratio to the autoregressive sampler.
m = 1 is the exact sampler; m > 1 updates m positions per call (parallel Glauber, not exact). `--precisions
fp32,bf16` adds every method again under bf16 autocast, still against the fp32 autoregressive sampler.

    python benchmarks/bench_generate.py                           # tiny and T5-small-shaped (~60M) models, L = 128
    python benchmarks/bench_generate.py --shapes t5-small --update-blocks 1,2,4,8 --threads 1
    python benchmarks/bench_generate.py --shapes t5-small --update-blocks 1 --precisions fp32,bf16 --threads 1
    python benchmarks/bench_generate.py --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import copy
import functools
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import T5Config, T5ForConditionalGeneration

from modeling_glauber import GlauberT5ForDiffusion

PRECISIONS = ("fp32", "bf16")
SHAPES = {
    "tiny": dict(vocab_size=384, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128),
    "t5-small": dict(vocab_size=32128, d_model=512, num_layers=6, num_heads=8, d_kv=64, d_ff=2048),
}


def timed(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """Best-of-`repeats` (wall seconds, CPU seconds) of `fn()`."""
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def bench(shape: str, length: int, batch: int, prompt_length: int, repeats: int, blocks: list[int],
          device: torch.device, precisions: list[str]) -> list[dict]:
    torch.manual_seed(0)
    config = T5Config(decoder_start_token_id=0, **SHAPES[shape])
    backbone = T5ForConditionalGeneration(config).eval()
    autoregressive = copy.deepcopy(backbone).to(device)
    model = GlauberT5ForDiffusion.from_backbone(backbone, num_rounds=1, mask_window=1).eval().to(device)
    prompt = torch.randint(3, config.vocab_size - 200, (batch, prompt_length), device=device)
    params = sum(p.numel() for p in autoregressive.parameters())

    def run_autoregressive():
        with torch.no_grad():
            return autoregressive.generate(input_ids=prompt, max_new_tokens=length, min_new_tokens=length,
                                           do_sample=True, top_k=0)

    def run_glauber(m: int):
        return model.generate(input_ids=prompt, max_new_tokens=length, num_rounds=1, update_block=m, seed=0,
                              return_dict_in_generate=True)

    def in_precision(fn, precision: str):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                return fn()
        return run

    methods = []
    for precision in precisions:
        suffix = "" if precision == "fp32" else f" {precision}"
        methods.append((f"autoregressive{suffix}", length, in_precision(run_autoregressive, precision)))
        methods += [(f"glauber m={m}{suffix}", run_glauber(m).num_model_calls,
                     in_precision(functools.partial(run_glauber, m), precision)) for m in blocks]
    rows = []
    for name, calls, fn in methods:
        fn()  # warm-up
        wall, cpu = timed(fn, repeats, device)
        rows.append(dict(shape=shape, params=params, L=length, batch=batch, method=name, calls=calls, wall=wall,
                         cpu=cpu, flops_per_sample=flops(fn) / batch))
    baseline = rows[0]
    for r in rows:
        r["ms_per_call"] = 1000 * r["wall"] / r["calls"]
        r["ratio"] = r["wall"] / baseline["wall"]
        r["cpu_ratio"] = r["cpu"] / baseline["cpu"]
        r["flops_ratio"] = r["flops_per_sample"] / baseline["flops_per_sample"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="tiny,t5-small")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update-blocks", default="1,2,4,8", help="the m of each Glauber row (1: exact)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N)")
    parser.add_argument("--precisions", default="fp32",
                        help="comma list of fp32 and bf16 (autocast); the ratio's baseline is the first's AR")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    blocks = [int(m) for m in args.update_blocks.split(",")]
    precisions = args.precisions.split(",")
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise SystemExit(f"--precisions must be a comma list of {PRECISIONS}, got {args.precisions!r}")
    rows = [r for s in args.shapes.split(",") for r in bench(s, args.length, args.batch, args.prompt_length,
                                                              args.repeats, blocks, device, precisions)]
    print(f"device={device} threads={torch.get_num_threads()} prompt={args.prompt_length} repeats={args.repeats}")
    header = ("| backbone | params | L | batch | method | calls | wall s | CPU s | ms/call | GFLOPs/sample | "
              "ratio (wall) | ratio (CPU) | ratio (FLOPs) |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in rows:
        print(f"| {r['shape']} | {r['params'] / 1e6:.1f}M | {r['L']} | {r['batch']} | {r['method']} | {r['calls']} | "
              f"{r['wall']:.2f} | {r['cpu']:.2f} | {r['ms_per_call']:.1f} | {r['flops_per_sample'] / 1e9:.2f} | "
              f"{r['ratio']:.2f} | {r['cpu_ratio']:.2f} | {r['flops_ratio']:.1f} |")


if __name__ == "__main__":
    main()
