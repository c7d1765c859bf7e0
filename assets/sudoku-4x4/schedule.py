"""The fixed Glauber schedule: permutations π_0 … π_N, global steps t, positions k_t, time τ = t/T and mask windows."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


class GlauberSchedule:
    r"""
    Step `t = (n-1)·L + i` (round n ∈ 1..N, i ∈ 1..L) touches `k_t = π_n(i)`; `T = N·L`; the model sees `τ = t/T`.

    The permutations come from `numpy.random.default_rng([permutation_seed, L, n])` (PCG64 with SeedSequence, stable
    across numpy versions and platforms), so training and inference, on any machine, walk the same positions.
    """

    def __init__(self, length: int, num_rounds: int, permutation_seed: int = 0, causal_order: str = "identity"):
        if length < 1:
            raise ValueError(f"length (the canvas size L) must be >= 1, got {length}")
        if num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {num_rounds}")
        self.length = length
        self.num_rounds = num_rounds
        self.permutation_seed = permutation_seed
        self.causal_order = causal_order
        rounds = [self._permutation(n) for n in range(1, num_rounds + 1)]
        if causal_order == "identity":
            pi_0 = np.arange(length)
        elif causal_order == "random":
            pi_0 = self._permutation(0)
        else:
            raise ValueError(f"causal_order must be 'identity' or 'random', got {causal_order!r}")
        self.causal_order_positions = torch.as_tensor(pi_0, dtype=torch.long)
        # positions[t - 1] = k_t for t = 1 … T
        self.positions = torch.as_tensor(np.concatenate(rounds), dtype=torch.long)
        self._windows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _permutation(self, stream: int) -> np.ndarray:
        return np.random.default_rng([self.permutation_seed, self.length, stream]).permutation(self.length)

    @property
    def total_steps(self) -> int:
        """T = N·L."""
        return self.num_rounds * self.length

    def tau(self, t: torch.Tensor | int) -> torch.Tensor:
        """Normalised time τ = t / T."""
        return torch.as_tensor(t, dtype=torch.float32) / self.total_steps

    def window(self, mask_window: int) -> tuple[torch.Tensor, torch.Tensor]:
        r"""
        Mask windows for every step: `(positions, valid)`, both `[T, w]`.

        Row `t-1` lists `k_t, k_{t-1}, …, k_{t-w+1}` (the positions the reverse pass visits next); slot 0 is the
        predicted position. A slot is invalid where `t - j < 1` or where it repeats a position already in the
        window (possible across a round boundary), so every position is masked at most once.
        """
        return _window_table(self.positions, mask_window)

    def update_blocks(self, num_rounds: int, update_block: int, movable: list[bool]) -> list[list[int]]:
        r"""
        The reverse pass's steps t = N'·L … 1 (N' = `num_rounds`) whose position may move (`movable[t-1]`), grouped
        into blocks of up to `update_block` = m consecutive steps of one round (parallel Glauber, DESIGN §8): each
        block is one model call. Blocks never cross a round, so the positions of a block are distinct; m = 1 gives
        one block per step.
        """
        blocks = []
        for n in range(num_rounds, 0, -1):
            steps = [t for t in range(n * self.length, (n - 1) * self.length, -1) if movable[t - 1]]
            blocks += [steps[i : i + update_block] for i in range(0, len(steps), update_block)]
        return blocks

    def block_window(self, steps: list[int], mask_window: int) -> tuple[torch.Tensor, torch.Tensor]:
        r"""
        The masked positions of one update block: `(positions, valid)`, both `[m + w - 1]`. Slot j < m is the
        block's j-th predicted position `k_{steps[j]}`; the rest is the mask window of its last step beyond that
        position (`window(w)` row `steps[-1] - 1`, slots 1 … w-1), invalid where it repeats a predicted position. A
        block of one step is exactly that step's row of `window(w)`.
        """
        if mask_window not in self._windows:
            self._windows[mask_window] = _window_table(self.positions, mask_window)
        table, table_valid = self._windows[mask_window]
        predicted = self.positions[torch.as_tensor(steps) - 1]
        tail, tail_valid = table[steps[-1] - 1, 1:], table_valid[steps[-1] - 1, 1:]
        tail_valid = tail_valid & ~(tail.unsqueeze(1) == predicted.unsqueeze(0)).any(dim=1)
        return torch.cat([predicted, tail]), torch.cat([torch.ones_like(predicted, dtype=torch.bool), tail_valid])


TIMESTEP_SAMPLINGS = ("t_max", "stratified")


def sample_loss_times(
    total_steps: int, per_chain: int, batch: int, method: str, generator: torch.Generator
) -> torch.Tensor:
    r"""
    `[B, K]` loss times in 1 … T, K = `per_chain` of them from one noising chain per row.

    "t_max" (paper appendix A): `t_max ~ U{1 … T}`, then `t_j = ceil(j·t_max/K)`; the terms crowd small t (at
    K = 32, T = 32 a term lands on t = 1 about 119 times as often as on t = T).
    "stratified": `t_j = ⌊(j + u_j)·T/K⌋ + 1`, `u_j ~ U[0, 1)`, one per equal stratum of [0, T); the K strata
    together are exactly uniform on 1 … T (DESIGN §6), and every chain runs to ≈ T.
    """
    if method == "t_max":
        t_max = torch.randint(1, total_steps + 1, (batch,), generator=generator)
        return (torch.arange(1, per_chain + 1).unsqueeze(0) * t_max.unsqueeze(1) + per_chain - 1) // per_chain
    if method == "stratified":
        offsets = torch.rand((batch, per_chain), generator=generator, dtype=torch.float64)
        return ((torch.arange(per_chain) + offsets) * total_steps / per_chain).floor().long() + 1
    raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, got {method!r}")


@lru_cache(maxsize=32)
def _cached_schedule(length: int, num_rounds: int, permutation_seed: int, causal_order: str) -> GlauberSchedule:
    return GlauberSchedule(length, num_rounds, permutation_seed, causal_order)


def get_schedule(length: int, num_rounds: int, permutation_seed: int, causal_order: str) -> GlauberSchedule:
    """Shared, cached schedule (schedules are immutable)."""
    return _cached_schedule(length, num_rounds, permutation_seed, causal_order)


def _window_table(positions: torch.Tensor, mask_window: int) -> tuple[torch.Tensor, torch.Tensor]:
    total = positions.numel()
    steps = torch.arange(total).unsqueeze(1) - torch.arange(mask_window).unsqueeze(0)  # index t-1-j
    in_range = steps >= 0
    window = positions[steps.clamp(min=0)]
    repeated = torch.zeros_like(in_range)
    for j in range(1, mask_window):
        repeated[:, j] = (window[:, j : j + 1] == window[:, :j]).any(dim=1)
    return window, in_range & ~repeated


__all__ = ["TIMESTEP_SAMPLINGS", "GlauberSchedule", "get_schedule", "sample_loss_times"]
