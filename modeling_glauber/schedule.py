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


__all__ = ["GlauberSchedule", "get_schedule"]
