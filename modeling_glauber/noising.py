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
    final: `[B, L]` x_S (a row stopped early by `last_steps`: its state at its last step).
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
    last_steps: torch.Tensor | None = None,
) -> NoisingTrace:
    """Run the reference's Glauber chain for `num_steps` steps of its schedule from `x0`, batched over rows.

    `last_steps` `[B]`: row b leaves the batch after step `last_steps[b]` (e.g. its last snapshot time), so later
    calls run on fewer rows; its entries past that step stay 0. A row's draws depend only on its own seed, so what it
    computes up to its last step is what it would compute running to `num_steps`."""
    batch, length = x0.shape
    schedule = reference.schedule(length)
    if not 0 <= num_steps <= schedule.total_steps:
        raise ValueError(f"num_steps must be in [0, T={schedule.total_steps}], got {num_steps}")
    if last_steps is not None and (last_steps.shape != (batch,) or bool((last_steps > num_steps).any())):
        raise ValueError(f"last_steps must have shape ({batch},) and entries <= num_steps={num_steps}")
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
    last = [num_steps] * batch if last_steps is None else last_steps.tolist()
    leave_after = set(last)
    alive: slice | torch.Tensor = slice(None)  # the rows still running: all of them until one leaves
    running = prefix
    heat_bath = SamplingParams(do_sample=True)
    window_valid = torch.ones(1, dtype=torch.bool, device=x0.device)
    tau = torch.ones(1, device=x0.device)
    calls = 0
    # the reference is frozen while its chain runs: its time MLP runs once (τ = 1 throughout)
    with reference.memoized_modulation():
        for s in range(1, num_steps + 1):
            if s - 1 in leave_after:
                kept = [b for b in range(batch) if last[b] >= s]
                if not kept:
                    break
                alive = torch.tensor(kept, device=x0.device)
                running = prefix.select(alive)
            k = positions[s - 1]
            old = x[alive, k].clone()
            moving = ~frozen[alive, k]
            old_tokens[alive, s - 1] = old
            new_tokens[alive, s - 1] = old
            if moves[s - 1]:
                logprobs = reference.infill_logits(running, x[alive], k.view(1), window_valid, tau).log_softmax(dim=-1)
                calls += 1
                new = torch.where(moving, sample_tokens(logprobs, heat_bath, seeds[alive], STREAM_NOISING, s), old)
                new_tokens[alive, s - 1] = new
                zero = torch.zeros_like(old, dtype=logq_old.dtype)
                logq_old[alive, s - 1] = torch.where(moving, logprobs.gather(1, old.unsqueeze(1)).squeeze(1), zero)
                logq_new[alive, s - 1] = torch.where(moving, logprobs.gather(1, new.unsqueeze(1)).squeeze(1), zero)
                x[alive, k] = new
            if s in snapshot_steps:
                # only the (row, slot) pairs taken at step s are written: O(hits·L), not O(B·K·L), per step
                rows, slots = torch.nonzero(times == s, as_tuple=True)
                snapshots[rows, slots] = x[rows]
    return NoisingTrace(snapshots, times, old_tokens, new_tokens, logq_old, logq_new, x, calls)


__all__ = ["NoisingTrace", "run_glauber_noising"]
