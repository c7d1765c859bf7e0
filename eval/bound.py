"""The Glauber likelihood bound (DESIGN §7) and the exact causal scorer.

    −log p_θ(x_0 | P) ≤ E_{x_{1:S} ~ q}[ −log p_causal(x_S | P)
                                        − Σ_t log p_θ(x_{t-1}[k_t] | x_t∖window_t, t/T)
                                        + Σ_t log q(x_t[k_t] | x_{t-1}∖k_t) ]

with q the model's own MASK-INFILL at τ = 1 (window 1) and S = N'·L the steps of the generative process scored
(N' = num_rounds ≤ config.num_rounds, τ still normalised by T = config.num_rounds·L, exactly as `generate`).
One noising trajectory gives an unbiased estimate; `mc_samples` trajectories are averaged. The reverse terms of all
(trajectory, step) pairs are independent given the trajectories, so they are scored in large batches.
"""

from __future__ import annotations


import itertools
import math
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from modeling_glauber import GlauberPrefix, run_glauber_noising


@dataclass
class BoundEstimate:
    """Per-trajectory bounds `samples` `[B, M]` (nats, float64) and the batched model calls spent on them."""

    samples: torch.Tensor
    num_model_calls: int

    @property
    def mean(self) -> torch.Tensor:
        """`[B]` the Monte-Carlo estimate of the bound (unbiased; its expectation does not depend on M)."""
        return self.samples.mean(dim=1)

    @property
    def stderr(self) -> torch.Tensor:
        """`[B]` standard error of `mean` (0 for M = 1, where it cannot be estimated)."""
        m = self.samples.shape[1]
        if m < 2:
            return torch.zeros_like(self.mean)
        return self.samples.std(dim=1) / math.sqrt(m)

    @property
    def importance_weighted(self) -> torch.Tensor:
        """`[B]` −log (1/M Σ_m exp(−bound_m)): the importance-weighted bound on the same trajectories, which is
        still ≥ −log p_θ(x_0 | P) in expectation and tightens monotonically (in expectation) as M grows."""
        m = self.samples.shape[1]
        return -(torch.logsumexp(-self.samples, dim=1) - math.log(m))


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


@torch.no_grad()
def causal_nll(
    model, prefix: GlauberPrefix, canvas: torch.Tensor, frozen: torch.Tensor | None = None, batch_size: int = 64
) -> torch.Tensor:
    """`[B]` exact −log p_causal(x | P) of CAUSAL-GEN at τ = 1 (float64); frozen positions are given, not scored."""
    out = []
    for rows in _chunks(canvas.shape[0], batch_size):
        logp = model.causal_log_likelihood(prefix.select(torch.arange(rows.start, rows.stop, device=canvas.device)), canvas[rows]).double()
        if frozen is not None:
            logp = logp.masked_fill(frozen[rows], 0.0)
        out.append(-logp.sum(dim=1))
    return torch.cat(out)


@torch.no_grad()
def glauber_bound(
    model,
    prefix: GlauberPrefix,
    canvas: torch.Tensor,
    frozen: torch.Tensor | None = None,
    *,
    mc_samples: int = 1,
    seed: int = 0,
    num_rounds: int | None = None,
    mask_window: int | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> BoundEstimate:
    r"""
    Monte-Carlo estimate of the bound for each row of `canvas` `[B, L]` given `prefix` (B rows).

    Trajectory m of every row uses the noising seed `seed + m`, so a row's score depends only on its own prompt,
    canvas and `seed`, never on the batch it was scored in. Frozen positions (`[B, L]`) are never noised and
    contribute nothing. `batch_size` bounds the rows of every model call.
    """
    if not isinstance(mc_samples, int) or mc_samples < 1:
        raise ValueError(f"mc_samples must be an integer >= 1, got {mc_samples!r}")
    batch, length = canvas.shape
    num_rounds, mask_window = model.resolve_rounds_and_window(num_rounds, mask_window, length)
    device = canvas.device
    frozen = torch.zeros_like(canvas, dtype=torch.bool) if frozen is None else frozen.to(device).bool()
    if getattr(model, "canvas_given_embedding", None) is not None and prefix.given is None:
        prefix = replace(prefix, given=frozen)  # the infill marks the givens, as generate() does
    schedule = model.schedule(length)
    steps = num_rounds * length
    positions = schedule.positions[:steps].to(device)
    windows, valid = (table[:steps].to(device) for table in schedule.window(mask_window))

    rows = torch.arange(batch, device=device).repeat_interleave(mc_samples)
    x0, fixed, paths = canvas[rows], frozen[rows], prefix.select(rows)
    seeds = seed + torch.arange(mc_samples, dtype=torch.int64, device=device).repeat(batch)
    total_rows = rows.numel()

    # Reverse terms: one MASK-INFILL call per (trajectory, step) pair whose position is not frozen.
    pair_row, pair_step = torch.nonzero(~fixed[:, positions], as_tuple=True)  # pair_step = t - 1
    chunks = list(_chunks(total_rows, batch_size))
    pair_chunks = list(_chunks(pair_row.numel(), batch_size))
    bar = tqdm(
        total=len(chunks) * (steps + 1) + len(pair_chunks), desc="glauber bound", unit="call", disable=not progress
    )

    # Forward noising, S sequential steps per chunk of trajectories; x_t for every t is kept for the reverse terms.
    states, targets, logq = [], [], []
    calls = 0
    for chunk in chunks:
        index = torch.arange(chunk.start, chunk.stop, device=device)
        trace = run_glauber_noising(
            model,
            paths.select(index),
            x0[chunk],
            fixed[chunk],
            steps,
            seeds[chunk],
            snapshot_times=torch.arange(1, steps + 1, device=device).expand(len(index), -1),
        )
        calls += trace.num_model_calls
        states.append(trace.snapshots)
        targets.append(trace.old_tokens)
        logq.append(trace.logq_new.double().sum(dim=1))
        bar.update(steps)
    states, targets, logq_sum = torch.cat(states), torch.cat(targets), torch.cat(logq)

    # The reverse terms are independent given the trajectories: batch them across trajectories and steps alike.
    reverse = torch.zeros(total_rows, dtype=torch.float64, device=device)
    for pairs in pair_chunks:
        r, s = pair_row[pairs], pair_step[pairs]
        window = windows[s]
        window_valid = valid[s] & ~fixed[r.unsqueeze(1), window]
        tau = (s + 1).float() / schedule.total_steps
        logits = model.infill_logits(paths.select(r), states[r, s], window, window_valid, tau)
        logp = logits.double().log_softmax(dim=-1).gather(1, targets[r, s].unsqueeze(1)).squeeze(1)
        reverse.index_add_(0, r, logp)
        calls += 1
        bar.update(1)

    final = states[:, -1] if steps else x0
    causal = causal_nll(model, paths, final, fixed, batch_size)
    calls += len(chunks)
    bar.update(len(chunks))
    bar.close()
    samples = causal - reverse + logq_sum
    return BoundEstimate(samples.view(batch, mc_samples), calls)


@dataclass
class ExactToy:
    """Exact values on an enumerable toy: `nll` = −log p_θ(x_0 | P) of the reverse process (a sum over all paths)
    and `bound` = the exact expectation of the Monte-Carlo bound."""

    nll: float
    bound: float


def _block_kernels(model, prefix, states, blocks, mask_window, tau) -> list[torch.Tensor]:
    """`[n, n]` matrix per update block (`GlauberSchedule.update_blocks`): [i, j] = p(state j | state i) when the
    block's positions are resampled from state i in one call (`block_window(steps, mask_window)`, time
    `tau(steps[0])`), each from its own slot independently; zero unless i and j agree off the block. A block of one
    step is that step's single-site kernel."""
    n, length = states.shape
    schedule = model.schedule(length)
    rows = torch.zeros(n, dtype=torch.long, device=states.device)
    kernels = []
    for steps in blocks:
        window, valid = (t.to(states.device) for t in schedule.block_window(steps, mask_window))
        with model.memoized_modulation():
            logits = model.infill_block_logits(prefix.select(rows), states, window, valid, tau(steps[0]), len(steps))
        probs = logits.double().softmax(dim=-1)
        moved = torch.zeros(length, dtype=torch.bool, device=states.device)
        moved[window[: len(steps)]] = True
        kernel = ((states.unsqueeze(1) == states.unsqueeze(0)) | moved).all(dim=2).double()
        for j in range(len(steps)):
            k = window[j]
            kernel = kernel * probs[:, j][:, states[:, k]]  # [i, y] = p_j(x[k] = y[k] | state_i)
        kernels.append(kernel)
    return kernels


@dataclass
class ToyLaws:
    """Exact laws over every canvas of an enumerable toy: `states` `[n, L]` (all |C|^L canvases over the content
    tokens C), `draft` `[n]` the law of CAUSAL-GEN's x_T and `generated` `[n]` the law of `generate`'s output
    (temperature 1, no truncation: p_causal · R_S ⋯ R_1)."""

    states: torch.Tensor
    draft: torch.Tensor
    generated: torch.Tensor


def _toy_reverse(model, prefix: GlauberPrefix, length: int, content_ids: list[int], num_rounds: int | None, device,
                 update_block: int = 1):
    """(states, causal law, reverse kernels R_1 … R_S, one per update block, in the order `generate` applies them
    reversed) of the generative process on an enumerable toy."""
    num_rounds, mask_window = model.resolve_rounds_and_window(num_rounds, None, length)
    states = torch.tensor(list(itertools.product(content_ids, repeat=length)), device=device)
    n = states.shape[0]
    schedule = model.schedule(length)
    causal = torch.exp(-causal_nll(model, prefix.select(torch.zeros(n, dtype=torch.long)), states))
    if abs(float(causal.sum()) - 1.0) > 1e-5:
        raise ValueError("the content tokens do not carry all of the causal mass: suppress every other token")
    blocks = schedule.update_blocks(num_rounds, update_block, [True] * schedule.total_steps)
    reverse = _block_kernels(model, prefix, states, blocks[::-1], mask_window,
                             lambda t: torch.tensor([t / schedule.total_steps]))
    return states, causal, reverse


def _forward_kernels(reference, prefix: GlauberPrefix, states: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Heat-bath kernels Q_1 … Q_S of the noising chain (DESIGN §4: MASK-INFILL at τ = 1, window 1)."""
    return _block_kernels(reference, prefix, states, [[t] for t in range(1, steps + 1)], 1, lambda t: torch.ones(1))


@torch.no_grad()
def exact_toy_laws(
    model, prefix: GlauberPrefix, length: int, content_ids: list[int], num_rounds: int | None = None,
    update_block: int = 1,
) -> ToyLaws:
    """Exact draft and generated laws of `model` over all |C|^L canvases (every other token must be suppressed);
    `update_block` m > 1: the law of `generate(..., update_block=m)` (parallel Glauber, not exact)."""
    states, causal, reverse = _toy_reverse(model, prefix, length, content_ids, num_rounds, prefix.infill_ids.device,
                                           update_block)
    generated = causal.clone()
    for kernel in reversed(reverse):
        generated = generated @ kernel
    return ToyLaws(states, causal, generated)


@torch.no_grad()
def exact_forward_marginal(
    reference, prefix: GlauberPrefix, states: torch.Tensor, start: torch.Tensor, num_steps: int | None = None
) -> torch.Tensor:
    """Law `[n]` of the noising chain's x_S over `states` (all canvases of a toy), started from the law `start` `[n]`
    and run for `num_steps` steps of `reference`'s schedule (default T = N·L): p_T, which the draft must match for
    the reverse chain to be exact (DESIGN §5)."""
    steps = reference.schedule(states.shape[1]).total_steps if num_steps is None else num_steps
    law = start.to(torch.float64)
    for kernel in _forward_kernels(reference, prefix, states, steps):
        law = law @ kernel
    return law


@torch.no_grad()
def enumerate_toy(
    model, prefix: GlauberPrefix, x0: torch.Tensor, content_ids: list[int], num_rounds: int | None = None
) -> ExactToy:
    r"""
    Exact NLL and exact expected bound for one canvas `x0` `[1, L]` by enumerating all |C|^L canvases over the
    content tokens C (every other token must be suppressed by the model). The reverse process is a Markov chain on
    those canvases: p(x_0) = p_causal · R_S ⋯ R_1; the bound's expectation follows the forward marginals μ_t:
    Σ_t E_{μ_{t-1}} Σ_{x_t} Q_t [log Q_t(x_t | x_{t-1}) − log R_t(x_{t-1} | x_t)] + E_{μ_S}[−log p_causal].
    """
    states, causal, reverse = _toy_reverse(model, prefix, x0.shape[1], content_ids, num_rounds, x0.device)
    forward = _forward_kernels(model, prefix, states, len(reverse))
    p = causal.clone()
    for kernel in reversed(reverse):
        p = p @ kernel
    start = int((states == x0[0]).all(dim=1).nonzero())
    mu = torch.zeros(states.shape[0], dtype=torch.float64, device=x0.device)
    mu[start] = 1.0
    bound = 0.0
    for q, r in zip(forward, reverse):
        log_ratio = torch.where(q > 0, q.log() - r.T.clamp_min(1e-300).log(), torch.zeros_like(q))
        bound += float((mu.unsqueeze(1) * q * log_ratio).sum())
        mu = mu @ q
    bound += float((mu * -causal.log()).sum())
    return ExactToy(nll=-math.log(float(p[start])), bound=bound)


__all__ = [
    "BoundEstimate", "ExactToy", "ToyLaws", "causal_nll", "enumerate_toy", "exact_forward_marginal", "exact_toy_laws",
    "glauber_bound",
]
