"""Token sampling for both modes: greedy or temperature / top-k / top-p, with counter-based per-row randomness.

Randomness is a hash of `(row seed, stream, step, token id)`, so a row's draws depend on nothing else in the batch,
and are the same on CPU and GPU. A draw is exact Gumbel-max sampling: `argmax(logits/temperature + G)`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

_MASK32 = 0xFFFFFFFF

# Streams keep the draws of different uses of one row seed independent.
STREAM_DRAFT = 1
STREAM_REFINE = 2
STREAM_NOISING = 3
STREAM_METROPOLIS_START = 4
STREAM_METROPOLIS_PROPOSAL = 5
STREAM_METROPOLIS_ACCEPT = 6


@dataclass(frozen=True)
class SamplingParams:
    """How one mode picks a token; `do_sample=False` is greedy (argmax, which ignores the other fields).

    As in Hugging Face's generate, `top_k=0` (like None) keeps every token."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0 (> 0 when sampling), got {self.temperature!r}")
        if self.do_sample and self.temperature == 0:
            raise ValueError("temperature must be a number > 0 when sampling; use do_sample=False for greedy")
        if self.top_k is not None and (not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0 (0: no top-k filtering), got {self.top_k!r}")
        if self.top_k == 0:
            object.__setattr__(self, "top_k", None)
        if self.top_p is not None and (not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be None or in (0, 1], got {self.top_p!r}")

    def updated(self, overrides: dict | None, argument: str = "overrides") -> "SamplingParams":
        """A copy with the fields in `overrides` replaced (unknown names raise `TypeError` naming `argument`)."""
        if not overrides:
            return self
        unknown = set(overrides) - {"do_sample", "temperature", "top_k", "top_p"}
        if unknown:
            raise TypeError(
                f"{argument} has unknown field(s) {sorted(unknown)}; allowed: do_sample, temperature, top_k, top_p"
            )
        try:
            return replace(self, **overrides)
        except ValueError as error:
            raise ValueError(f"{argument}: {error}") from None


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # lowbias32 finaliser; int64 products wrap mod 2^64, which keeps the low 32 bits exact.
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def counter_uniform(seeds: torch.Tensor, stream: int, step: int | torch.Tensor, size: int) -> torch.Tensor:
    """Uniforms in (0, 1), float64, shape `[B, size]`, a pure function of (seed, stream, step, column)."""
    seeds = seeds.to(torch.int64)
    step = torch.as_tensor(step, dtype=torch.int64, device=seeds.device).expand_as(seeds)
    h = _mix32(_mix32(seeds) ^ _mix32(seeds >> 32))
    h = _mix32(h ^ (stream * 0x9E3779B1))
    h = _mix32(h ^ _mix32(step + 0x632BE5AB))
    columns = torch.arange(size, dtype=torch.int64, device=seeds.device)
    h = _mix32(_mix32(h.unsqueeze(1) ^ columns.unsqueeze(0)) + 0x2545F491)
    return (h.to(torch.float64) + 0.5) / 4294967296.0


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on `[B, V]` logits; removed tokens get -inf."""
    logits = logits.float() / params.temperature
    if params.top_k is not None and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # keep a token while the mass before it is below top_p (the first token is always kept)
        remove_sorted = (probs.cumsum(dim=-1) - probs) >= params.top_p
        remove = torch.zeros_like(remove_sorted).scatter(1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, seeds: torch.Tensor, stream: int, step: int | torch.Tensor
) -> torch.Tensor:
    """Pick one token per row from `[B, V]` logits (already -inf where a token is forbidden)."""
    if not params.do_sample:
        return logits.argmax(dim=-1)
    filtered = filter_logits(logits, params)
    gumbel = -torch.log(-torch.log(counter_uniform(seeds, stream, step, logits.shape[-1]).to(logits.device)))
    return (filtered.double() + gumbel).argmax(dim=-1)


def resolve_seeds(seed: int | list[int] | torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
    """Row seeds: an int gives row i the seed `seed + i`; a list/tensor gives each row its own; None draws from torch."""
    if seed is None:
        return torch.randint(0, 2**62, (batch_size,), dtype=torch.int64).to(device)
    if isinstance(seed, bool):
        raise TypeError("seed must be an int, a list of ints (one per row) or None, got a bool")
    if isinstance(seed, int):
        return (torch.arange(batch_size, dtype=torch.int64) + seed).to(device)
    seeds = torch.as_tensor(seed, dtype=torch.int64)
    if seeds.shape != (batch_size,):
        raise ValueError(f"seed as a list must have one entry per row ({batch_size}), got shape {tuple(seeds.shape)}")
    return seeds.to(device)


__all__ = [
    "SamplingParams",
    "counter_uniform",
    "filter_logits",
    "sample_tokens",
    "resolve_seeds",
    "STREAM_DRAFT",
    "STREAM_REFINE",
    "STREAM_NOISING",
    "STREAM_METROPOLIS_START",
    "STREAM_METROPOLIS_PROPOSAL",
    "STREAM_METROPOLIS_ACCEPT",
]
