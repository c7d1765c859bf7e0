"""`glauber eval ...`: report, gen-ppl, bound, mauve and best-of-n. Each writes a JSON result file and prints a table.

lm-eval tasks run through `glauber-lm-eval` (lm-eval's own CLI with the `glauber` models registered).
"""

from __future__ import annotations

import argparse
import json
import math


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", required=True, help="Glauber checkpoint directory or Hub id")
    parser.add_argument("--tokenizer", default=None, help="tokenizer (default: the checkpoint's)")
    parser.add_argument("--peft", default=None, help="LoRA adapter directory, applied unmerged")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--out", required=True, help="result JSON file")


def _sampling(args) -> dict:
    return {"do_sample": not args.greedy, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}


def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)


def _load(args):
    from .loading import load_glauber

    return load_glauber(args.pretrained, tokenizer=args.tokenizer, peft=args.peft, dtype=args.dtype, device=args.device)


def run_report(args) -> int:
    from .report import report

    markdown, md_path, png_path = report(args.results, args.out)
    print(markdown)
    print(f"\nwrote {md_path} and {png_path}")
    return 0


def run_gen_ppl(args) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .gen_ppl import generative_perplexity, sample_texts
    from .report import write_result

    model, tokenizer = _load(args)
    prompts = [row["prompt"] for row in _read_jsonl(args.prompts)] if args.prompts else None
    judge = AutoModelForCausalLM.from_pretrained(args.judge).to(args.device).eval()
    judge_tokenizer = AutoTokenizer.from_pretrained(args.judge_tokenizer or args.judge)
    metrics = {}
    for rounds in args.num_rounds:
        texts, calls = sample_texts(
            model, tokenizer, num_samples=args.num_samples, length=args.length, prompts=prompts, num_rounds=rounds,
            batch_size=args.batch_size, seed=args.seed, **_sampling(args),
        )
        result = generative_perplexity(texts, judge, judge_tokenizer, batch_size=args.batch_size)
        metrics[f"N={rounds}"] = {
            "corpus_ppl": result.corpus_ppl, "mean_sample_ppl": result.mean_sample_ppl,
            "unigram_entropy": result.unigram_entropy, "model_calls_per_sample": calls,
        }
    write_result(args.out, "gen_ppl", {**vars(args), "func": None, "aggregation": "corpus exp(mean NLL); per-sample mean of exp(NLL)"}, metrics)
    return 0


def run_bound(args) -> int:
    import torch

    from .bound import causal_nll, glauber_bound
    from .loading import encode_canvas
    from .report import write_result

    model, tokenizer = _load(args)
    rows = _read_jsonl(args.data)
    if not rows:
        raise SystemExit(f"--data {args.data} holds no rows")
    total_bound = total_causal = tokens = 0.0
    for number, row in enumerate(rows, 1):
        prompt, text = row.get("prompt", ""), row["text"]
        ids = encode_canvas(tokenizer, text)
        if not ids:
            raise SystemExit(f"--data {args.data}: row {number} has an empty 'text' (nothing to score)")
        canvas = torch.tensor([ids], device=model.device)
        prefix = model.build_prefix(torch.tensor([tokenizer(prompt).input_ids], device=model.device))
        estimate = glauber_bound(
            model, prefix, canvas, mc_samples=args.mc_samples, seed=args.seed, num_rounds=args.num_rounds,
            batch_size=args.batch_size, progress=True,
        )
        total_bound += float(estimate.mean)
        total_causal += float(causal_nll(model, prefix, canvas))
        tokens += canvas.shape[1]
    metrics = {
        "bound_nll_per_token": total_bound / tokens,
        "bound_ppl": math.exp(total_bound / tokens),
        "causal_nll_per_token": total_causal / tokens,
        "causal_ppl": math.exp(total_causal / tokens),
        "tokens": int(tokens),
    }
    write_result(args.out, "bound", {**vars(args), "func": None}, metrics)
    return 0


def run_mauve(args) -> int:
    from transformers import AutoModel, AutoTokenizer

    from .gen_ppl import sample_texts
    from .mauve_eval import join_prefix, mauve_score, split_prefix
    from .report import write_result

    model, tokenizer = _load(args)
    references = [row["text"] for row in _read_jsonl(args.references)]
    prompts, human = split_prefix(tokenizer, references, args.prefix_tokens, args.length)
    human_texts = [join_prefix(tokenizer, p, h) for p, h in zip(prompts, human)]
    featurizer = AutoModel.from_pretrained(args.featurizer).to(args.device).eval()
    feature_tokenizer = AutoTokenizer.from_pretrained(args.featurizer)
    metrics = {}
    for rounds in args.num_rounds:
        continuations, _ = sample_texts(
            model, tokenizer, num_samples=len(prompts), length=args.length, prompts=prompts, num_rounds=rounds,
            batch_size=args.batch_size, seed=args.seed, **_sampling(args),
        )
        metrics[f"N={rounds}"] = mauve_score(
            [join_prefix(tokenizer, p, c) for p, c in zip(prompts, continuations)], human_texts,
            featurizer, feature_tokenizer, batch_size=args.batch_size,
        )
    write_result(args.out, "mauve", {**vars(args), "func": None}, metrics)
    return 0


def run_best_of_n(args) -> int:
    from .best_of_n import Item, best_of_n
    from .loading import load_glauber
    from .report import write_result

    model, tokenizer = _load(args)
    ar_model = load_glauber(args.ar_pretrained, tokenizer=tokenizer, dtype=args.dtype, device=args.device)[0] if args.ar_pretrained else None
    items = [Item(row["prompt"], str(row["answer"]), row.get("kind", args.kind)) for row in _read_jsonl(args.data)]
    result = best_of_n(
        items, model, tokenizer, k=args.k, length=args.length, ar_model=ar_model, selection=args.selection,
        seed=args.seed, batch_size=args.batch_size, **_sampling(args),
    )
    metrics = {arm: {key: result[arm][key] for key in ("candidates", "accuracy", "model_calls_per_prompt")} for arm in ("glauber", "ar")}
    write_result(args.out, "best_of_n", {**vars(args), "func": None}, metrics)
    return 0


def register(subparsers) -> None:
    """Add `eval {report,gen-ppl,bound,mauve,best-of-n}` to the `glauber` command."""
    group = subparsers.add_parser("eval").add_subparsers(dest="eval_command", required=True)

    parser = group.add_parser("report", help="Markdown table + PNG plot from result JSON files (ours or lm-eval's)")
    parser.add_argument("results", nargs="+")
    parser.add_argument("--out", default="eval_report", help="output directory")
    parser.set_defaults(func=run_report)

    parser = group.add_parser("gen-ppl", help="generative perplexity of samples judged by a causal LM")
    _model_arguments(parser)
    _sampling_arguments(parser)
    parser.add_argument("--judge", required=True, help="AutoModelForCausalLM path or id (gpt2-large in the paper)")
    parser.add_argument("--judge_tokenizer", default=None)
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--length", type=int, default=128, help="canvas length L")
    parser.add_argument("--num_rounds", type=int, nargs="+", default=[0, 1], help="one result per N (0 = draft)")
    parser.add_argument("--prompts", default=None, help="JSONL with a 'prompt' field (prefix-conditioned samples)")
    parser.set_defaults(func=run_gen_ppl)

    parser = group.add_parser("bound", help="the Glauber likelihood bound (and exact causal NLL) on a JSONL corpus")
    _model_arguments(parser)
    parser.add_argument("--data", required=True, help="JSONL with 'text' (and optional 'prompt')")
    parser.add_argument("--mc_samples", type=int, default=8)
    parser.add_argument("--num_rounds", type=int, default=None)
    parser.set_defaults(func=run_bound)

    parser = group.add_parser("mauve", help="MAUVE of prefix-conditioned generations")
    _model_arguments(parser)
    _sampling_arguments(parser)
    parser.add_argument("--references", required=True, help="JSONL with 'text' (human texts; prefix = first tokens)")
    parser.add_argument("--featurizer", required=True, help="local HF model for MAUVE features (gpt2-large in the paper)")
    parser.add_argument("--prefix_tokens", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--num_rounds", type=int, nargs="+", default=[0, 1])
    parser.set_defaults(func=run_mauve)

    parser = group.add_parser("best-of-n", help="iso-compute best-of-N: Glauber BoN=K (N=1) vs AR BoN=2K")
    _model_arguments(parser)
    _sampling_arguments(parser)
    parser.add_argument("--data", required=True, help="JSONL with 'prompt', 'answer' and optional 'kind'")
    parser.add_argument("--ar_pretrained", default=None, help="AR arm checkpoint (default: the same model's causal mode)")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--kind", default="number", choices=["number", "choice", "exact"])
    parser.add_argument("--selection", default="oracle", choices=["oracle", "majority"])
    parser.set_defaults(func=run_best_of_n)


__all__ = ["register"]
