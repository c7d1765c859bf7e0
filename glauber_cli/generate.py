"""`glauber generate`: draft and Glauber-refined text from a checkpoint."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate")
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--prompt", action="append", default=None, help="prompt text (repeat for a batch)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="canvas length L")
    parser.add_argument("--num-rounds", type=int, default=None, help="Glauber rounds N (default: the config's)")
    parser.add_argument("--mask-window", type=int, default=None)
    parser.add_argument("--greedy", action="store_true", help="argmax instead of sampling")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow code a Hub checkpoint names in its config (a Glauber checkpoint runs on this "
                        "installed package's code, which is registered for its Auto classes)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModel, AutoTokenizer

    import modeling_glauber  # noqa: F401  (registers the Auto classes)

    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    if is_puzzle_tokenizer(tokenizer):
        raise SystemExit(
            f"glauber generate: {args.model} is a puzzle checkpoint. A puzzle's givens must be encoded the way it was "
            "trained and frozen on the canvas, which text generation does not do; solve puzzles with "
            f"`glauber puzzles eval --model {args.model} --data PUZZLES` (a .jsonl of rows or a saved dataset)"
        )
    model = AutoModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code).to(args.device).eval()
    prompts = args.prompt or [""]
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(args.device)
    out = model.generate(
        **enc,
        max_new_tokens=args.max_new_tokens,
        num_rounds=args.num_rounds,
        mask_window=args.mask_window,
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        return_dict_in_generate=True,
        progress=True,
    )
    drafts = tokenizer.batch_decode(out.draft_sequences, skip_special_tokens=True)
    refined = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
    for prompt, draft, final in zip(prompts, drafts, refined):
        print(f"prompt : {prompt!r}")
        print(f"draft  : {draft!r}")
        print(f"glauber: {final!r}")
    print(f"model calls: {out.num_model_calls} (batched; (N+1)·L without frozen positions)")
    return 0


def is_puzzle_tokenizer(tokenizer) -> bool:
    """Whether `tokenizer` is the puzzles' word-level tokenizer: every word in it belongs to the puzzle vocabulary."""
    from puzzles.tokenizer import MAX_CANVAS_CELLS, puzzle_vocab

    return set(tokenizer.get_vocab()) <= set(puzzle_vocab(None, MAX_CANVAS_CELLS))
