"""The forward (noising) process of DESIGN §4: heat-bath Glauber dynamics driven by a reference's MASK-INFILL.

    for s = 1 … S:  x_s = x_{s-1};  x_s[k_s] ~ q(· | x_{s-1}∖k_s)      (q: reference at τ = 1, window 1)

Used by the trainer (targets, contexts and `log q` of the DWDSE loss) and by the likelihood bound of §7.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .infill import GlauberPrefix
from .sampling import STREAM_NOISING, SamplingParams, sample_tokens


@dataclass
class NoisingTrace:
    r"""
    One batch of noising chains, steps s = 1 … S.

    snapshots: `[B, K, L]` the state x_t at each requested time `times[b, j]` (after step t).
    times: `[B, K]` the requested times.
    old_tokens / new_tokens: `[B, S]` x_{s-1}[k_s] and x_s[k_s].
    logq_old / logq_new: `[B, S]` `log q(x_{s-1}[k_s] | x_{s-1}∖k_s)` and `log q(x_s[k_s] | x_{s-1}∖k_s)`
        (0 where k_s is frozen for the row: nothing moves there).
    final: `[B, L]` x_S.
    num_model_calls: batched reference calls made.
    """

    snapshots: torch.Tensor
    times: torch.Tensor
    old_tokens: torch.Tensor
    new_tokens: torch.Tensor
    logq_old: torch.Tensor
    logq_new: torch.Tensor
    final: torch.Tensor
    num_model_calls: int


@torch.no_grad()
def run_glauber_noising(
    reference,
    prefix: GlauberPrefix,
    x0: torch.Tensor,
    frozen: torch.Tensor,
    num_steps: int,
    seeds: torch.Tensor,
    snapshot_times: torch.Tensor | None = None,
) -> NoisingTrace:
    """Run the reference's Glauber chain for `num_steps` steps of its schedule from `x0`, batched over rows."""
    batch, length = x0.shape
    schedule = reference.schedule(length)
    if not 0 <= num_steps <= schedule.total_steps:
        raise ValueError(f"num_steps must be in [0, T={schedule.total_steps}], got {num_steps}")
    positions = schedule.positions[:num_steps].to(x0.device)
    times = (
        snapshot_times.to(x0.device)
        if snapshot_times is not None
        else torch.zeros((batch, 0), dtype=torch.long, device=x0.device)
    )
    x = x0.clone()
    snapshots = x0.unsqueeze(1).repeat(1, times.shape[1], 1)
    old_tokens = torch.zeros((batch, num_steps), dtype=torch.long, device=x0.device)
    new_tokens = torch.zeros_like(old_tokens)
    logq_old = torch.zeros((batch, num_steps), dtype=torch.float32, device=x0.device)
    logq_new = torch.zeros_like(logq_old)
    # Decided on the host once, so the step loop never waits on the device to learn whether a row moves or snapshots.
    moves = (~frozen).any(dim=0)[positions].tolist()
    snapshot_steps = set(times.flatten().tolist())
    heat_bath = SamplingParams(do_sample=True)
    window_valid = torch.ones(1, dtype=torch.bool, device=x0.device)
    tau = torch.ones(1, device=x0.device)
    calls = 0
    for s in range(1, num_steps + 1):
        k = positions[s - 1]
        old = x[:, k].clone()
        moving = ~frozen[:, k]
        old_tokens[:, s - 1] = old
        new_tokens[:, s - 1] = old
        if moves[s - 1]:
            logprobs = reference.infill_logits(prefix, x, k.view(1), window_valid, tau).log_softmax(dim=-1)
            calls += 1
            new = torch.where(moving, sample_tokens(logprobs, heat_bath, seeds, STREAM_NOISING, s), old)
            new_tokens[:, s - 1] = new
            zero = torch.zeros_like(logq_old[:, 0])
            logq_old[:, s - 1] = torch.where(moving, logprobs.gather(1, old.unsqueeze(1)).squeeze(1), zero)
            logq_new[:, s - 1] = torch.where(moving, logprobs.gather(1, new.unsqueeze(1)).squeeze(1), zero)
            x[:, k] = new
        if s in snapshot_steps:
            # only the (row, slot) pairs taken at step s are written: O(hits·L), not O(B·K·L), per step
            rows, slots = torch.nonzero(times == s, as_tuple=True)
            snapshots[rows, slots] = x[rows]
    return NoisingTrace(snapshots, times, old_tokens, new_tokens, logq_old, logq_new, x, calls)


__all__ = ["NoisingTrace", "run_glauber_noising"]
