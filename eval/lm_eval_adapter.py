"""lm-eval adapter: `--model glauber` (and `glauber_ar`, the same backbone's causal mode as the AR baseline).

- `loglikelihood(context, continuation)`: the context is the prompt P, the continuation the canvas x_0.
  `scorer="elbo"`: −(Monte-Carlo Glauber bound of DESIGN §7), a lower bound on log p_θ(x_0 | P) in expectation;
  `is_greedy` = the model's greedy Glauber generation (do_sample=False, same num_rounds) reproduces the continuation.
  `scorer="causal"`: the exact CAUSAL-GEN log-likelihood at τ = 1; `is_greedy` = every teacher-forced argmax hits.
- `loglikelihood_rolling`: disjoint windows of `max_length` tokens (lm-eval's rolling windows), each scored as
  above with the preceding tokens as its prompt; the document's value is the sum.
- `generate_until`: Glauber `generate()`, fixed length `max_gen_toks`, cut at the first `until` string.

Every generation request draws from its own seed, a hash of `seed`, the request and how many identical requests came
before it (lm-eval's repeats), so results depend neither on the batch size nor on which other requests (tasks,
`--limit`) share the run; the bound's trajectories use seed … seed + mc_samples − 1 for every request.
lm-eval has no plugin mechanism: the `glauber-lm-eval` console script (`cli_evaluate`) imports this module, which
registers the models, and hands over to lm-eval's own CLI.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm

from .bound import causal_nll, glauber_bound
from .loading import decode_canvas, encode_canvas, encode_prompts, load_glauber

logger = logging.getLogger(__name__)

SCORERS = ("elbo", "causal")
GEN_KWARGS = frozenset({"until", "max_gen_toks", "max_new_tokens", "do_sample", "temperature", "top_k", "top_p"})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"glauber model_args: {message}")


def _positive_int(name: str, value) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
    return value


@register_model("glauber")
class GlauberLM(LM):
    """lm-eval model for Glauber checkpoints. `model_args`: see `__init__`; unknown keys raise a `ValueError`."""

    DEFAULTS = dict(scorer="elbo", num_rounds=None)

    def __init__(
        self,
        pretrained,
        *,
        tokenizer=None,
        peft: str | None = None,
        scorer: str | None = None,
        num_rounds: int | None = None,
        mc_samples: int = 8,
        mask_window: int | None = None,
        batch_size: int | str = 16,
        dtype: str = "float32",
        device: str | None = None,
        seed: int = 0,
        max_length: int = 512,
        max_gen_toks: int = 256,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        progress: bool = True,
        **unknown,
    ):
        """
        Args:
            pretrained: checkpoint directory / Hub id, or a model object (then `tokenizer` is required).
            tokenizer: tokenizer path or object (default: the checkpoint's).
            peft: LoRA adapter directory, applied unmerged on top of `pretrained`.
            scorer: "elbo" (the Glauber bound, default) or "causal" (exact CAUSAL-GEN log-likelihood).
            num_rounds: N' ≤ config.num_rounds for generation and the bound (default: the config's; 0 = causal only).
            mask_window: w (default: the checkpoint's, clipped to a shorter continuation; a w given here is not).
            mc_samples: noising trajectories averaged per request by the elbo scorer.
            batch_size: rows per model call (the elbo scorer counts a trajectory as a row).
            device: where the model runs; default "cuda" when available, else "cpu". A CUDA device asked for on a
                machine without one falls back to the CPU with a warning (the lm-eval command line asks for "cuda:0"
                unless given --device), as lm-eval's own Hugging Face model does.
            seed: base seed of generation (hashed with each request) and of the bound's trajectories
                (seed … seed + mc_samples − 1).
            max_length: tokens per window of `loglikelihood_rolling`.
            max_gen_toks, do_sample, temperature, top_k, top_p: generation defaults (requests may override).
        """
        super().__init__()
        if unknown:
            allowed = [name for name in inspect.signature(GlauberLM.__init__).parameters if name not in ("self", "unknown")]
            _check(False, f"unknown argument(s) {sorted(unknown)}; allowed: {', '.join(allowed)}")
        scorer = self.DEFAULTS["scorer"] if scorer is None else scorer
        _check(scorer in SCORERS, f"scorer must be one of {SCORERS}, got {scorer!r}")
        _check(batch_size != "auto", "batch_size=auto is not supported; give an integer")
        self.batch_size = _positive_int("batch_size", int(batch_size) if str(batch_size).isdigit() else batch_size)
        self.mc_samples = _positive_int("mc_samples", mc_samples)
        self.max_length = _positive_int("max_length", max_length)
        self.max_gen_toks = _positive_int("max_gen_toks", max_gen_toks)
        _check(isinstance(seed, int), f"seed must be an integer, got {seed!r}")
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            if device is not None:
                logger.warning("device=%s was asked for but CUDA is not available: running on the CPU", device)
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.tokenizer = load_glauber(pretrained, tokenizer=tokenizer, peft=peft, dtype=dtype, device=device)
        config = self.model.config
        num_rounds = self.DEFAULTS["num_rounds"] if num_rounds is None else num_rounds
        self.num_rounds = config.num_rounds if num_rounds is None else num_rounds
        _check(
            isinstance(self.num_rounds, int) and 0 <= self.num_rounds <= config.num_rounds,
            f"num_rounds must be an integer in [0, {config.num_rounds}] (the checkpoint's num_rounds), got {num_rounds!r}",
        )
        # None: the checkpoint's w, which generate and the bound clip to a shorter continuation
        self.mask_window = None if mask_window is None else _positive_int("mask_window", mask_window)
        self.scorer = scorer
        self.seed = seed
        self.sampling = dict(do_sample=bool(do_sample), temperature=temperature, top_k=top_k, top_p=top_p)
        self.progress = bool(progress)

    # --------------------------------------------------------------------------------------------- scoring
    def _score(self, pairs: list[tuple[list[int], list[int]]], want_greedy: bool, desc: str) -> list[tuple[float, bool]]:
        """log p (or its bound) of each (prompt ids, canvas ids) pair, and whether greedy decoding yields the canvas.

        Pairs are grouped by canvas length (the schedule depends on L) and batched within a group."""
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        groups: dict[int, list[int]] = defaultdict(list)
        for index, (_, canvas) in enumerate(pairs):
            if canvas:
                groups[len(canvas)].append(index)
            else:
                results[index] = (0.0, True)  # log p of the empty continuation
        per_call = max(1, self.batch_size // self.mc_samples) if self.scorer == "elbo" else self.batch_size
        bar = tqdm(total=sum(map(len, groups.values())), desc=desc, disable=not self.progress)
        device = self.model.device
        for length in sorted(groups):
            members = groups[length]
            for start in range(0, len(members), per_call):
                chunk = members[start : start + per_call]
                prompts = [pairs[i][0] for i in chunk]
                input_ids, mask = self._pad(prompts)
                canvas = torch.tensor([pairs[i][1] for i in chunk], dtype=torch.long, device=device)
                prefix = self.model.build_prefix(input_ids, mask)
                if self.scorer == "elbo":
                    estimate = glauber_bound(
                        self.model, prefix, canvas, mc_samples=self.mc_samples, seed=self.seed,
                        num_rounds=self.num_rounds, mask_window=self.mask_window, batch_size=self.batch_size,
                    )
                    logp = -estimate.mean
                    greedy = self._greedy_generation(input_ids, mask, length) == canvas if want_greedy else None
                else:
                    logp = -causal_nll(self.model, prefix, canvas, batch_size=self.batch_size)
                    greedy = self._greedy_causal(prefix, canvas) if want_greedy else None
                for row, index in enumerate(chunk):
                    results[index] = (float(logp[row]), bool(greedy[row].all()) if greedy is not None else False)
                bar.update(len(chunk))
        bar.close()
        return results

    def _pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(1, max(map(len, prompts)))
        ids = torch.full((len(prompts), width), self.model.config.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
            mask[row, : len(prompt)] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    @torch.no_grad()
    def _greedy_causal(self, prefix, canvas: torch.Tensor) -> torch.Tensor:
        order = self.model.schedule(canvas.shape[1]).causal_order_positions.to(canvas.device)
        return self.model.causal_logits(prefix, canvas).argmax(dim=-1) == canvas[:, order]

    def _greedy_generation(self, input_ids, mask, length: int) -> torch.Tensor:
        return self.model.generate(
            input_ids, mask, max_new_tokens=length, num_rounds=self.num_rounds, mask_window=self.mask_window,
            do_sample=False, seed=self.seed,
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [(self.tokenizer(context).input_ids, encode_canvas(self.tokenizer, cont)) for context, cont in (r.args for r in requests)]
        results = self._score(pairs, want_greedy=True, desc=f"loglikelihood ({self.scorer})")
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        eos = self.model.config.eos_id
        pairs, owner = [], []
        for doc, request in enumerate(requests):
            tokens = encode_canvas(self.tokenizer, request.args[0])
            for context, target in map(make_disjoint_window, get_rolling_token_windows(tokens, eos, self.max_length, 1)):
                # the first window's context is the prefix token alone: an empty prompt
                pairs.append(([] if context == [eos] else context, target))
                owner.append(doc)
        totals = [0.0] * len(requests)
        for doc, (logp, _) in zip(owner, self._score(pairs, want_greedy=False, desc=f"rolling ({self.scorer})")):
            totals[doc] += logp
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # --------------------------------------------------------------------------------------------- generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        settings, seeds, seen = [], [], Counter()
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            kwargs = dict(gen_kwargs or {})
            unknown = set(kwargs) - GEN_KWARGS
            if unknown:
                raise ValueError(f"glauber generate_until: unsupported gen_kwargs {sorted(unknown)}; allowed: {sorted(GEN_KWARGS)}")
            key = json.dumps([context, kwargs], sort_keys=True, default=str)
            seeds.append(self._request_seed(key, seen[key]))
            seen[key] += 1
            if kwargs.get("temperature") == 0 and "do_sample" not in kwargs:  # lm-eval's convention: greedy
                kwargs["do_sample"] = False
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            length = kwargs.pop("max_gen_toks", kwargs.pop("max_new_tokens", self.max_gen_toks))
            sampling = {**self.sampling, **kwargs}
            if not sampling["do_sample"]:
                sampling = dict(sampling, temperature=1.0, top_k=None, top_p=None)
            settings.append(until)
            groups[(int(length), tuple(sorted(sampling.items())))].append(index)
        bar = tqdm(total=len(requests), desc="generate_until", disable=not self.progress)
        for (length, sampling), members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                input_ids, mask = encode_prompts(self.tokenizer, [requests[i].args[0] for i in chunk], self.model.device)
                sequences = self.model.generate(
                    input_ids, mask, max_new_tokens=length, num_rounds=self.num_rounds,
                    mask_window=self.mask_window, seed=[seeds[i] for i in chunk], **dict(sampling),
                )
                for index, text in zip(chunk, decode_canvas(self.tokenizer, sequences)):
                    outputs[index] = truncate_at(text, settings[index])
                    self.cache_hook.add_partial("generate_until", requests[index].args, outputs[index])
                bar.update(len(chunk))
        bar.close()
        return outputs

    def _request_seed(self, request_key: str, occurrence: int) -> int:
        digest = hashlib.sha256(f"{self.seed}\x00{occurrence}\x00{request_key}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 2  # a non-negative int64


@register_model("glauber_ar")
class GlauberARLM(GlauberLM):
    """The autoregressive baseline of the same backbone: CAUSAL-GEN scoring and draft-only generation (N = 0)."""

    DEFAULTS = dict(scorer="causal", num_rounds=0)


def truncate_at(text: str, until: Iterable[str]) -> str:
    """`text` up to the earliest occurrence of any stop string."""
    cut = min((text.find(stop) for stop in until if stop and stop in text), default=len(text))
    return text[:cut]


def cli_evaluate() -> None:
    """`glauber-lm-eval ...`: lm-eval's own CLI, with `glauber` / `glauber_ar` registered (every lm-eval flag works)."""
    from lm_eval.__main__ import cli_evaluate as lm_eval_cli

    lm_eval_cli()


__all__ = ["GlauberLM", "GlauberARLM", "SCORERS", "cli_evaluate", "truncate_at"]
