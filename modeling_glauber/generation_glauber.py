"""Metropolis–Hastings refinement: any causal LM's law as the target, the MASK-INFILL kernel as the proposal.

Beyond the paper (its appendix D sketches causal LMs as energies). At step s the site `k = k_t` of the reverse
schedule (t = T … 1, repeated while rounds remain) gets a proposal `y[k] ~ q(· | x∖k, τ = t/T)` (MASK-INFILL,
`y∖k = x∖k`), accepted with probability

    min(1, p_E(y)^β · q(x[k] | x∖k, τ) / (p_E(x)^β · q(y[k] | x∖k, τ)))

where `p_E(x) = p_E(x | P)` is the energy model's likelihood of the whole canvas given the prompt. The proposal never
reads `x[k]` (it is masked, as is the rest of the mask window, which `x` and `y` share), so the chain is reversible
with respect to `p_E^β` restricted to the frozen positions' values, whatever the proposal's quality; a better
proposal only mixes faster. Temperature keeps this exact (q keeps full support and is evaluated as sampled);
top-k / top-p keep detailed balance but confine the chain to the canvases their truncated supports reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .infill import GlauberPrefix
from .sampling import (
    STREAM_METROPOLIS_ACCEPT,
    STREAM_METROPOLIS_PROPOSAL,
    STREAM_METROPOLIS_START,
    STREAM_REFINE,
    SamplingParams,
    counter_uniform,
    filter_logits,
    resolve_seeds,
    sample_tokens,
)
from .time_conditioning import memoizing_modulation

# x_T of a chain: the CAUSAL-GEN draft, each free position uniform over the content tokens, or canvas_ids as given
CHAIN_STARTS = ("draft", "uniform", "canvas")
# blocks whose time modulations `glauber_refine` computes in one batch (bounds the memo to this many rows)
_PREFILL_BLOCKS = 64

# energy(prompt_ids, canvas) -> [B] log p_E(canvas | prompt) (an additive constant per prompt is harmless)
EnergyFn = Callable[[list[list[int]], torch.Tensor], torch.Tensor]


@dataclass
class GlauberMetropolisOutput(ModelOutput):
    """
    Output of `metropolis_refine(..., return_dict_in_generate=True)`.

    sequences: `[B, L]` the canvas after the last round.
    start_sequences: `[B, L]` the chain's start (the CAUSAL-GEN draft, uniform noise or the given canvas).
    energy_log_prob: `[B]` log p_E(sequences | P) (float64).
    acceptance_rate: `[R, B]` accepted / proposed moves of each round and row (a proposal equal to the current
        token counts as accepted; NaN where a row proposed nothing: all its positions frozen).
    num_draft_calls: CAUSAL-GEN steps of the draft (L with `start="draft"`, else 0).
    num_infill_calls: batched MASK-INFILL proposals (one per step whose site is not frozen in every row).
    num_energy_calls: batched energy evaluations (the start, then one per step that proposed a change in some row).
    trajectory: optional `[R+1, B, L]`: the start, then the canvas after each round.
    """

    sequences: torch.LongTensor | None = None
    start_sequences: torch.LongTensor | None = None
    energy_log_prob: torch.Tensor | None = None
    acceptance_rate: torch.Tensor | None = None
    num_draft_calls: int | None = None
    num_infill_calls: int | None = None
    num_energy_calls: int | None = None
    trajectory: torch.LongTensor | None = None


def _context_length(config) -> int | None:
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return None


class CausalLMEnergy:
    r"""
    `log p_E(x | P)` of whole canvases under a Hugging Face causal LM, in float64.

    Without `tokenizer` the LM must share the Glauber model's vocabulary and reads `[bos] + P + x` as ids. With
    `tokenizer` (the LM's own) and `canvas_tokenizer` (the Glauber model's), prompt and canvas are decoded to text and
    re-tokenised as `glauber eval gen-ppl` does: `[bos] + tok(P) + tok(x)`, scoring the canvas's tokens only. Either
    way the energy is a fixed function of the canvas ids, which is all the Metropolis chain needs to be exact.
    """

    def __init__(self, model, tokenizer=None, canvas_tokenizer=None):
        if tokenizer is not None and canvas_tokenizer is None:
            raise ValueError("CausalLMEnergy with a tokenizer needs canvas_tokenizer (the Glauber model's) to decode x")
        self.model = model
        self.tokenizer = tokenizer
        self.canvas_tokenizer = canvas_tokenizer
        config = model.config
        bos = config.bos_token_id if tokenizer is None else tokenizer.bos_token_id
        eos = config.eos_token_id if tokenizer is None else tokenizer.eos_token_id
        self.bos_token_id = bos if bos is not None else eos
        if self.bos_token_id is None:
            raise ValueError("the energy model has neither a BOS nor an EOS token to start each canvas with")
        self.context_length = _context_length(config)
        if tokenizer is not None and len(tokenizer) > self.vocab_size:
            raise ValueError(
                f"energy: its tokenizer has {len(tokenizer)} tokens but the model scores {self.vocab_size}; pass the "
                "energy model's own tokenizer"
            )

    @property
    def vocab_size(self) -> int:
        """Rows of the LM's output layer: the ids it can score without a tokenizer."""
        return self.model.get_output_embeddings().weight.shape[0]

    def _token_rows(self, prompt_ids: list[list[int]], canvas: torch.Tensor) -> list[tuple[list[int], list[int]]]:
        if self.tokenizer is None:
            return list(zip(prompt_ids, canvas.tolist()))
        decode = self.canvas_tokenizer.batch_decode
        prompts = decode(prompt_ids, skip_special_tokens=True)
        texts = decode(canvas.tolist(), skip_special_tokens=True)
        encode = self.tokenizer
        return [
            (encode(p, add_special_tokens=False).input_ids if p else [], encode(x, add_special_tokens=False).input_ids)
            for p, x in zip(prompts, texts)
        ]

    @torch.no_grad()
    def __call__(self, prompt_ids: list[list[int]], canvas: torch.Tensor) -> torch.Tensor:
        rows = self._token_rows(prompt_ids, canvas)
        width = 1 + max(len(p) + len(x) for p, x in rows)
        if self.context_length is not None and width > self.context_length:
            raise ValueError(
                f"energy: [bos] + prompt + canvas is {width} tokens, over the energy model's context of "
                f"{self.context_length}; shorten max_new_tokens or the prompt"
            )
        device = self.model.device
        ids = torch.full((len(rows), width), self.bos_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        scored = torch.zeros((len(rows), width - 1), dtype=torch.bool)
        for row, (prompt, tokens) in enumerate(rows):
            used = 1 + len(prompt) + len(tokens)
            ids[row, 1:used] = torch.tensor(prompt + tokens, dtype=torch.long)
            mask[row, :used] = 1
            scored[row, len(prompt) : used - 1] = True  # targets ids[1:]: the canvas's tokens only
        ids, mask, scored = ids.to(device), mask.to(device), scored.to(device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.double()
        logprobs = logits[:, :-1].log_softmax(dim=-1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
        return (logprobs * scored).sum(dim=1)


def _check_beta(energy_beta) -> float:
    if (
        isinstance(energy_beta, bool)
        or not isinstance(energy_beta, (int, float))
        or not math.isfinite(energy_beta)
        or energy_beta <= 0
    ):
        raise ValueError(f"energy_beta must be a finite number > 0 (the exponent β of p_E^β), got {energy_beta!r}")
    return float(energy_beta)


class GlauberGenerationMixin:
    """`glauber_refine`: the reverse rounds of `generate()` (DESIGN §5, with parallel updates of §8), and
    `metropolis_refine`: the Metropolis–Hastings chain of this module's docstring."""

    @torch.no_grad()
    def glauber_refine(
        self,
        prefix: GlauberPrefix,
        sequences: torch.Tensor,
        frozen: torch.Tensor,
        blocks: list[list[int]],
        num_rounds: int,
        mask_window: int,
        params: SamplingParams,
        seeds: torch.Tensor,
        trajectory: list[torch.Tensor] | None = None,
        progress=None,
    ) -> torch.Tensor:
        r"""
        Reverse Glauber rounds n = N' … 1 in place on `sequences` `[B, L]`: for each block of steps t_0 > t_1 > …
        (`GlauberSchedule.update_blocks`) one MASK-INFILL call at τ = t_0/T masks the block's positions and the
        mask window beyond (`block_window`), and each `x[k_{t_j}]` is drawn from its own slot with the randomness of
        step t_j. Blocks of one step are the exact single-site sampler. Frozen positions keep their values;
        `trajectory` gets the canvas after each round.
        """
        schedule = self.schedule(sequences.shape[1])
        length = schedule.length
        pending = iter(blocks)
        steps = next(pending, None)
        done = 0
        for n in range(num_rounds, 0, -1):
            while steps is not None and (steps[0] - 1) // length + 1 == n:
                if done % _PREFILL_BLOCKS == 0:  # the time MLP of the next blocks' τ in one batch (memoised scope)
                    upcoming = blocks[done : done + _PREFILL_BLOCKS]
                    self.prefill_modulation(schedule.tau(torch.tensor([b[0] for b in upcoming])).to(sequences.device))
                done += 1
                window, valid = (t.to(sequences.device) for t in schedule.block_window(steps, mask_window))
                window_valid = valid.unsqueeze(0) & ~frozen[:, window]
                tau = schedule.tau(steps[0]).to(sequences.device).view(1)
                logits = self.infill_block_logits(prefix, sequences, window, window_valid, tau, len(steps))
                for j, t in enumerate(steps):
                    k = window[j]
                    sampled = sample_tokens(logits[:, j], params, seeds, STREAM_REFINE, t)
                    sequences[:, k] = torch.where(frozen[:, k], sequences[:, k], sampled)
                if progress is not None:
                    progress.update(1)
                steps = next(pending, None)
            if trajectory is not None:  # a round ends whether or not its last steps ran
                trajectory.append(sequences.clone())
        return sequences

    def _bind_energy(self, energy, prefix: GlauberPrefix) -> Callable[[torch.Tensor], torch.Tensor]:
        """`canvas [B, L] -> log p_E(canvas | P) [B]` (float64) for this batch's prompts."""
        if isinstance(energy, str):
            if energy != "self":
                raise ValueError(
                    f"energy as a string must be 'self' (this model's CAUSAL-GEN likelihood), got {energy!r}; load "
                    "another causal LM and pass it (or a CausalLMEnergy wrapping it with its tokenizer)"
                )
            energy = self
        if energy is self:
            return lambda canvas: self.causal_log_likelihood(prefix, canvas).double().sum(dim=1)
        if isinstance(energy, torch.nn.Module) and hasattr(energy, "config"):
            if getattr(energy.config, "is_encoder_decoder", False):
                raise ValueError(
                    f"energy must be a causal (decoder-only) LM, got the encoder-decoder {type(energy).__name__}; use "
                    "'self' for this model's CAUSAL-GEN"
                )
            energy = CausalLMEnergy(energy)
        vocab = self.config.vocab_size
        if isinstance(energy, CausalLMEnergy) and energy.tokenizer is None and energy.vocab_size != vocab:
            raise ValueError(
                f"energy has a vocabulary of {energy.vocab_size} ids but this model's has {vocab}, "
                "and no tokenizer to re-tokenise the text: pass CausalLMEnergy(model, tokenizer=<its tokenizer>, "
                "canvas_tokenizer=<this model's tokenizer>)"
            )
        if not callable(energy):
            raise TypeError(
                "energy must be 'self', a causal LM, a CausalLMEnergy or a callable (prompt_ids, canvas) -> log p_E, "
                f"got {type(energy).__name__}"
            )
        lead = self.config.s_mode_token_id is not None
        prompt_ids = [ids[mask.bool()].tolist()[lead:] for ids, mask in zip(prefix.causal_ids, prefix.causal_mask)]
        return lambda canvas: energy(prompt_ids, canvas)

    def _uniform_canvas(self, canvas: torch.Tensor, frozen: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Each free position uniform over the content tokens (those the modes may emit)."""
        flat = torch.zeros(canvas.shape[0], self.config.vocab_size, device=canvas.device)
        flat = flat.masked_fill(self.suppress_mask, float("-inf"))
        noise = canvas.clone()
        for position in range(canvas.shape[1]):
            drawn = sample_tokens(flat, SamplingParams(), seeds, STREAM_METROPOLIS_START, position)
            noise[:, position] = torch.where(frozen[:, position], canvas[:, position], drawn)
        return noise

    @staticmethod
    def check_chain_start(start: str, canvas_ids: torch.Tensor | None) -> None:
        """`start` is one of `CHAIN_STARTS`, and `"canvas"` comes with `canvas_ids`."""
        if start not in CHAIN_STARTS:
            raise ValueError(f"start must be one of {CHAIN_STARTS}, got {start!r}")
        if start == "canvas" and canvas_ids is None:
            raise ValueError("start='canvas' needs canvas_ids (the chain's start)")

    def chain_start(self, start: str, prefix, canvas: torch.Tensor, frozen: torch.Tensor, params: SamplingParams,
                    seeds: torch.Tensor, progress=None) -> torch.Tensor:
        """x_T of a chain (`CHAIN_STARTS`); only `"draft"` calls the model (L CAUSAL-GEN calls). A given canvas must
        hold content tokens where it is free: padding there would be read as context by the first infill calls."""
        if start == "draft":
            return self.causal_draft(prefix, canvas, frozen, params, seeds, progress=progress)
        if start == "uniform":
            return self._uniform_canvas(canvas, frozen, seeds)
        unusable = self.suppress_mask[canvas] & ~frozen
        if bool(unusable.any()):
            raise ValueError(
                f"start='canvas' starts from canvas_ids as given, but {int(unusable.sum())} of its free positions hold "
                "tokens the model cannot emit (padding, sentinels or special tokens); fill them with content tokens, "
                "freeze them in frozen_mask, or use start='draft' or 'uniform'"
            )
        return canvas.clone()

    @torch.no_grad()
    @memoizing_modulation
    def metropolis_refine(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        energy: str | torch.nn.Module | CausalLMEnergy | EnergyFn = "self",
        energy_beta: float = 1.0,
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
        canvas_ids: torch.LongTensor | None = None,
        frozen_mask: torch.Tensor | None = None,
        start: str = "draft",
        num_rounds: int | None = None,
        mask_window: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | list[int] | torch.Tensor | None = None,
        return_dict_in_generate: bool = False,
        output_trajectory: bool = False,
        progress: bool = False,
    ) -> torch.LongTensor | GlauberMetropolisOutput:
        r"""
        Metropolis–Hastings refinement towards `p_E(x | P)^β` with MASK-INFILL proposals (module docstring). Costs
        `R·L` infill calls (fewer with frozen sites), up to `R·L + 1` energy calls and, from a draft, L draft calls.

        Args:
            input_ids, attention_mask, max_new_tokens, batch_size, canvas_ids, frozen_mask, seed, mask_window,
                output_trajectory, progress: as in `generate()`; frozen positions never move. Any `mask_window` is
                exact (the window masks positions that x and y share).
            energy: `"self"` (this model's CAUSAL-GEN log-likelihood), a Hugging Face causal LM with this model's
                vocabulary, a `CausalLMEnergy` (any causal LM with its own tokenizer), or a callable
                `(prompt_ids: list[list[int]], canvas: [B, L]) -> [B]` log p_E.
            energy_beta: β > 0; the chain targets p_E^β (β > 1 sharpens, β < 1 flattens).
            start: `"draft"` (CAUSAL-GEN), `"uniform"` (each free position uniform over content tokens) or
                `"canvas"` (the given `canvas_ids` as they are).
            num_rounds: R ≥ 1 sweeps (default: the config's N); the sites and times of the reverse schedule
                t = T … 1 repeat when R > N.
            temperature, top_k, top_p: the proposal's (and draft's) sampling; q is evaluated under them exactly.
                Temperature keeps the chain exact; top-k / top-p confine it to what their supports reach.
            return_dict_in_generate: return a `GlauberMetropolisOutput` rather than the sequences.
        """
        beta = _check_beta(energy_beta)
        self.check_chain_start(start, canvas_ids)
        rounds = self.config.num_rounds if num_rounds is None else num_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"num_rounds must be an integer >= 1 (Metropolis sweeps), got {num_rounds!r}")
        params = SamplingParams(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
        canvas, frozen, batch = self._validate_canvas(
            input_ids, attention_mask, max_new_tokens, canvas_ids, frozen_mask, batch_size
        )
        length = canvas.shape[1]
        _, mask_window = self.resolve_rounds_and_window(None, mask_window, length)
        if bool(frozen.all()):
            raise ValueError("frozen_mask freezes every canvas position: there is nothing to refine")
        prefix = self.build_prefix(input_ids, attention_mask, batch, frozen_mask=frozen)
        log_p = self._bind_energy(energy, prefix)
        seeds = resolve_seeds(seed, batch, self.device)

        schedule = self.schedule(length)
        total = schedule.total_steps
        windows, valid = (t.to(self.device) for t in schedule.window(mask_window))
        # step s visits t = T - (s mod T): the reverse schedule, repeated
        steps = [total - s % total for s in range(rounds * length)]
        movable_sites = ~frozen.all(dim=0)
        movable = movable_sites[schedule.positions.to(self.device)].tolist()
        num_draft_calls = length if start == "draft" else 0
        num_infill_calls = sum(movable[t - 1] for t in steps)

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_draft_calls + num_infill_calls, desc="glauber metropolis", unit="call")
        x = self.chain_start(start, prefix, canvas, frozen, params, seeds, progress=bar)
        start_sequences = x.clone()

        def evaluate(candidate: torch.Tensor) -> torch.Tensor:
            values = log_p(candidate)
            if not isinstance(values, torch.Tensor) or values.shape != (batch,):
                raise ValueError(f"energy must return a tensor of shape ({batch},) (log p_E per row), got {values!r}")
            values = values.to(self.device, torch.float64)
            bad = ~torch.isfinite(values)
            if bool(bad.any()):
                raise ValueError(
                    f"energy returned non-finite log p_E for row(s) {bad.nonzero().flatten().tolist()} "
                    f"({values[bad].tolist()}); an energy must give every canvas a finite log-probability"
                )
            return values

        energy_x = evaluate(x)
        num_energy_calls = 1
        accepted = torch.zeros(rounds, batch, dtype=torch.float64, device=self.device)
        proposed = torch.zeros_like(accepted)
        trajectory = [x.clone()] if output_trajectory else None
        rows = torch.arange(batch, device=self.device)
        for s, t in enumerate(steps):
            if movable[t - 1]:
                k = int(schedule.positions[t - 1])
                window = windows[t - 1]
                window_valid = valid[t - 1].unsqueeze(0) & ~frozen[:, window]
                tau = schedule.tau(t).to(self.device).view(1)
                logits = self.infill_logits(prefix, x, window, window_valid, tau)
                log_q = filter_logits(logits, params).double().log_softmax(dim=-1)
                y_k = sample_tokens(logits, params, seeds, STREAM_METROPOLIS_PROPOSAL, s)
                moves = ~frozen[:, k]
                changed = moves & (y_k != x[:, k])
                log_ratio = torch.zeros(batch, dtype=torch.float64, device=self.device)
                energy_y = energy_x
                if bool(changed.any()):
                    y = x.clone()
                    y[:, k] = torch.where(changed, y_k, x[:, k])
                    energy_y = evaluate(y)
                    num_energy_calls += 1
                    log_ratio = beta * (energy_y - energy_x) + log_q[rows, x[:, k]] - log_q[rows, y_k]
                    # an unchanged row's ratio is exactly 1, whatever the batch computed for it
                    log_ratio = torch.where(changed, log_ratio, torch.zeros_like(log_ratio))
                u = counter_uniform(seeds, STREAM_METROPOLIS_ACCEPT, s, 1).squeeze(1).to(self.device)
                accept = moves & (u.log() < log_ratio)
                x[:, k] = torch.where(accept, y_k, x[:, k])
                energy_x = torch.where(accept & changed, energy_y, energy_x)
                accepted[s // length] += accept.double()
                proposed[s // length] += moves.double()
                if bar is not None:
                    bar.update(1)
            if (s + 1) % length == 0:
                if output_trajectory:
                    trajectory.append(x.clone())
                if bar is not None:
                    round_index = s // length
                    rate = accepted[round_index].sum() / proposed[round_index].sum().clamp(min=1)
                    bar.set_postfix(round=round_index + 1, acceptance=f"{float(rate):.3f}")
        if bar is not None:
            bar.close()
        if not return_dict_in_generate:
            return x
        return GlauberMetropolisOutput(
            sequences=x,
            start_sequences=start_sequences,
            energy_log_prob=energy_x,
            acceptance_rate=torch.where(proposed > 0, accepted / proposed.clamp(min=1), torch.nan),
            num_draft_calls=num_draft_calls,
            num_infill_calls=num_infill_calls,
            num_energy_calls=num_energy_calls,
            trajectory=torch.stack(trajectory) if output_trajectory else None,
        )


__all__ = ["CausalLMEnergy", "EnergyFn", "GlauberGenerationMixin", "GlauberMetropolisOutput", "CHAIN_STARTS"]
