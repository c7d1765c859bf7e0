"""`glauber generate`: draft and Glauber-refined text from a checkpoint, or Metropolis-refined towards a causal
energy (`--energy`)."""

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
    parser.add_argument("--energy", default=None,
                        help="Metropolis refinement towards a causal LM's law instead of Glauber rounds: 'self' "
                        "(this model's CAUSAL-GEN) or a causal LM's Hub id or directory (re-tokenised with its own "
                        "tokenizer; without one it must share this model's vocabulary); --num-rounds then counts "
                        "Metropolis rounds")
    parser.add_argument("--energy-beta", type=float, default=1.0, help="β > 0: the chain targets p_E^β")
    parser.add_argument("--energy-start", choices=("draft", "uniform"), default="draft",
                        help="the Metropolis chain's start: the CAUSAL-GEN draft or uniform noise")
    parser.set_defaults(func=run)


def load_energy(name: str, tokenizer, trust_remote_code: bool, device: str):
    """'self', or `CausalLMEnergy` around the causal LM at `name` (with its tokenizer when it has one)."""
    if name == "self":
        return "self"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_glauber import CausalLMEnergy

    model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=trust_remote_code).to(device).eval()
    try:
        energy_tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError):
        energy_tokenizer = None
    # a folder without tokenizer files still loads, as a tokenizer with an empty vocabulary
    if energy_tokenizer is None or len(energy_tokenizer.get_vocab()) <= 1:
        return CausalLMEnergy(model)
    return CausalLMEnergy(model, tokenizer=energy_tokenizer, canvas_tokenizer=tokenizer)


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
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                    mask_window=args.mask_window, max_new_tokens=args.max_new_tokens, return_dict_in_generate=True,
                    progress=True)
    if args.energy is not None:
        if args.greedy:
            raise ValueError("--greedy cannot be used with --energy: a Metropolis proposal must be sampled")
        out = model.metropolis_refine(
            **enc, energy=load_energy(args.energy, tokenizer, args.trust_remote_code, args.device),
            energy_beta=args.energy_beta, start=args.energy_start, num_rounds=args.num_rounds, **sampling,
        )
        starts = tokenizer.batch_decode(out.start_sequences, skip_special_tokens=True)
        refined = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
        for row, (prompt, begin, final) in enumerate(zip(prompts, starts, refined)):
            print(f"prompt    : {prompt!r}")
            print(f"start     : {begin!r}")
            print(f"metropolis: {final!r}  (log p_E {float(out.energy_log_prob[row]):.2f})")
        rates = ", ".join(f"{rate:.3f}" for rate in out.acceptance_rate.nanmean(dim=1).tolist())
        print(f"acceptance per round: {rates}")
        print(f"model calls: {out.num_draft_calls} draft + {out.num_infill_calls} infill (batched); "
              f"energy calls: {out.num_energy_calls}")
        return 0
    out = model.generate(**enc, num_rounds=args.num_rounds, do_sample=not args.greedy, **sampling)
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
