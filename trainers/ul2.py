"""The UL2 stage: a mixture-of-denoisers collator (R-, S- and X-denoising) for the stock `Seq2SeqTrainer`.

The paper first turns Flan-T5 into a UL2 model. Each example becomes one denoising task, drawn from the mixture:

- R (regular span corruption, mode token [NLU]): ≈15 % of tokens in spans of mean length 3;
- X (extreme corruption, mode token [NLG]): ≈50 % of tokens in spans of mean length 32;
- S (prefix LM, mode token [S2S]): the encoder sees a prefix, the decoder produces the rest.

Span corruption follows T5: masked spans are replaced by `<extra_id_i>` in the input; the target lists
`<extra_id_i>` + span for every span, then `</s>`. The S task is CAUSAL-GEN's task (DESIGN §2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .data import WorkerGenerator

DENOISERS = ("R", "S", "X")


@dataclass
class UL2Denoiser:
    """One denoiser of the mixture: `kind` in R/S/X, its weight, noise density and mean span length (R/X)."""

    kind: str
    weight: float
    noise_density: float = 0.15
    mean_span_length: float = 3.0

    def __post_init__(self):
        if self.kind not in DENOISERS:
            raise ValueError(f"denoiser kind must be one of {DENOISERS}, got {self.kind!r}")
        if self.weight < 0 or not 0 < self.noise_density < 1 or self.mean_span_length < 1:
            raise ValueError(f"invalid denoiser {self}: weight >= 0, 0 < noise_density < 1, mean_span_length >= 1")


def default_ul2_mixture() -> list[UL2Denoiser]:
    """UL2's mixture, collapsed to one R, one X and one S denoiser (S at 20 % as in UL2's recipe)."""
    return [
        UL2Denoiser("R", 0.4, noise_density=0.15, mean_span_length=3.0),
        UL2Denoiser("X", 0.4, noise_density=0.5, mean_span_length=32.0),
        UL2Denoiser("S", 0.2),
    ]


@dataclass
class UL2DataCollator:
    r"""
    Turns rows with `input_ids` (a token sequence; `canvas_ids`, when present, is appended to it) into UL2 examples:
    `input_ids`, `attention_mask`, `labels` (-100 at padding). `decoder_input_ids` are left to the model (it shifts
    the labels right), so the batch trains with `Seq2SeqTrainer` on `GlauberT5ForDiffusion` (τ = 1) or a backbone.

    Args:
        sentinel_token_ids: `<extra_id_0>`, `<extra_id_1>`, … (`model.config.sentinel_token_ids`).
        eos_token_id / pad_token_id: the tokenizer's.
        mode_token_ids: {"R": id, "S": id, "X": id}; a kind missing (or None) gets no mode token.
        mixture: the denoisers and their weights (`default_ul2_mixture()`).
        seed: seed of the collator's own generator (task and span draws).
    """

    sentinel_token_ids: list[int]
    eos_token_id: int = 1
    pad_token_id: int = 0
    mode_token_ids: dict[str, int | None] = field(default_factory=dict)
    mixture: list[UL2Denoiser] = field(default_factory=default_ul2_mixture)
    seed: int = 0

    def __post_init__(self):
        weights = np.array([d.weight for d in self.mixture], dtype=np.float64)
        if not len(self.mixture) or weights.sum() <= 0:
            raise ValueError("the UL2 mixture needs at least one denoiser with positive weight")
        self._probs = weights / weights.sum()
        self._generators = WorkerGenerator(self.seed)

    @property
    def _rng(self) -> np.random.Generator:
        return self._generators.get()

    @classmethod
    def from_model(cls, model, **kwargs) -> "UL2DataCollator":
        """Sentinels, specials and UL2 mode tokens from a `GlauberT5ForDiffusion`'s config (overridable by kwargs)."""
        c = model.config
        kwargs.setdefault("mode_token_ids", {"R": c.r_mode_token_id, "S": c.s_mode_token_id, "X": c.x_mode_token_id})
        return cls(c.sentinel_token_ids, eos_token_id=c.eos_id, pad_token_id=c.pad_id, **kwargs)

    def _spans(self, length: int, denoiser: UL2Denoiser) -> np.ndarray:
        """Boolean noise mask with ≈ density·length noise tokens in ≈ noise/mean_span spans (T5's segmentation)."""
        num_noise = int(np.clip(round(length * denoiser.noise_density), 1, length - 1))
        num_spans = int(np.clip(round(num_noise / denoiser.mean_span_length), 1, min(num_noise, length - num_noise)))
        if num_spans > len(self.sentinel_token_ids):
            # one sentinel per span: with too few, the spans grow past the denoiser's mean length
            warnings.warn(
                f"a {denoiser.kind} example of {length} tokens needs {num_spans} spans but the tokenizer has only "
                f"{len(self.sentinel_token_ids)} sentinels: its spans are longer than {denoiser.mean_span_length}",
                stacklevel=2,
            )
            num_spans = len(self.sentinel_token_ids)

        def segment(total: int) -> np.ndarray:
            cuts = np.sort(self._rng.choice(np.arange(1, total), num_spans - 1, replace=False)) if num_spans > 1 else []
            return np.diff(np.concatenate([[0], cuts, [total]])).astype(int)

        noise, keep = segment(num_noise), segment(length - num_noise)
        mask = np.zeros(length, dtype=bool)
        start = 0
        for k, n in zip(keep, noise):
            start += k
            mask[start : start + n] = True
            start += n
        return mask

    def _example(self, ids: list[int], denoiser: UL2Denoiser) -> tuple[list[int], list[int]]:
        mode = self.mode_token_ids.get(denoiser.kind)
        lead = [mode] if mode is not None else []
        if denoiser.kind == "S":
            split = int(self._rng.integers(1, len(ids))) if len(ids) > 1 else 0
            return lead + ids[:split] + [self.eos_token_id], ids[split:] + [self.eos_token_id]
        mask = self._spans(len(ids), denoiser)
        inputs, targets, sentinel = list(lead), [], -1
        for i, token in enumerate(ids):
            if mask[i]:
                if i == 0 or not mask[i - 1]:
                    sentinel += 1
                    inputs.append(self.sentinel_token_ids[sentinel])
                    targets.append(self.sentinel_token_ids[sentinel])
                targets.append(token)
            else:
                inputs.append(token)
        return inputs + [self.eos_token_id], targets + [self.eos_token_id]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features or "input_ids" not in features[0]:
            raise ValueError("UL2DataCollator needs rows with an 'input_ids' column")
        pairs = []
        for f in features:
            ids = list(f["input_ids"]) + list(f.get("canvas_ids", []))
            if len(ids) < 2:
                raise ValueError("UL2 examples need sequences of at least 2 tokens")
            denoiser = self.mixture[int(self._rng.choice(len(self.mixture), p=self._probs))]
            pairs.append(self._example(ids, denoiser))
        enc_width = max(len(i) for i, _ in pairs)
        dec_width = max(len(t) for _, t in pairs)
        input_ids = torch.full((len(pairs), enc_width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full((len(pairs), dec_width), -100, dtype=torch.long)
        for row, (inputs, targets) in enumerate(pairs):
            input_ids[row, : len(inputs)] = torch.tensor(inputs)
            attention_mask[row, : len(inputs)] = 1
            labels[row, : len(targets)] = torch.tensor(targets)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


__all__ = ["UL2DataCollator", "UL2Denoiser", "default_ul2_mixture", "DENOISERS"]
