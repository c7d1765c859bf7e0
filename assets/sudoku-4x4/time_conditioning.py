"""AdaLN-Zero time conditioning (DESIGN §3): τ → sinusoidal features → MLP → (shift, scale) for every norm layer.

Each normalisation layer of the backbone's encoder and decoder keeps its module (so pretrained checkpoints load with
their own key names); a forward hook turns its output into `norm(h) · (1 + scale(τ)) + shift(τ)`. The projection is
zero-initialised, so a freshly converted model computes exactly what its backbone computes, at every τ.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn


def timestep_features(tau: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of `1000·τ` (the DiT convention), `[B, dim]`."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=tau.device) / half)
    angles = 1000.0 * tau.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def find_norm_layers(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every normalisation layer of the encoder and decoder stacks, in module order."""
    return [
        (name, module)
        for name, module in backbone.named_modules()
        if type(module).__name__.endswith(("LayerNorm", "RMSNorm")) and ("encoder" in name or "decoder" in name)
    ]


class GlauberTimeConditioning(nn.Module):
    """Maps τ ∈ [0, 1] to the concatenated (shift, scale) of all `norm_dims` normalisation layers."""

    def __init__(self, norm_dims: list[int], frequency_dim: int, embedding_dim: int):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.norm_dims = list(norm_dims)
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim), nn.SiLU()
        )
        self.modulation = nn.Linear(embedding_dim, 2 * sum(norm_dims))
        self.modulation._zero_init = True

    def forward(self, tau: torch.Tensor) -> torch.Tensor:
        features = timestep_features(tau, self.frequency_dim).to(self.modulation.weight.dtype)
        return self.modulation(self.mlp(features))


class ModulationState(threading.local):
    """The modulation vector of the forward in progress, read by the norm-layer hooks, and the memo of modulations
    per τ that a sampler opens while the weights cannot change.

    Per thread: `nn.DataParallel` runs its replicas, which share this object, in one thread each.
    """

    def __init__(self):
        self.current: torch.Tensor | None = None
        self.memo: dict | None = None

    def __deepcopy__(self, memo) -> ModulationState:
        return ModulationState()

    @contextmanager
    def use(self, modulation: torch.Tensor):
        previous, self.current = self.current, modulation
        try:
            yield
        finally:
            self.current = previous

    @contextmanager
    def memoized(self, store: dict | None = None):
        """While open, `modulation_for` computes the modulation of each distinct τ once, into `store` (a fresh dict if
        None, dropped on exit). A scope opened inside another shares the outer one's store. The caller owns the
        guarantee that the time conditioning's weights do not change while its store lives."""
        if self.memo is not None:
            yield
            return
        self.memo = {} if store is None else store
        try:
            yield
        finally:
            self.memo = None

    def modulation_for(self, timesteps: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`compute(timesteps)`, memoised per (device, τ values) inside a `memoized` scope when no gradient is taken
        (a training forward must differentiate through the time MLP)."""
        if self.memo is None or torch.is_grad_enabled():
            return compute(timesteps)
        key = (timesteps.device, tuple(timesteps.tolist()))
        if key not in self.memo:
            self.memo[key] = compute(timesteps)
        return self.memo[key]

    def prefill(self, timesteps: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Memoise the modulation of each τ of `timesteps` `[n]` (one per later call) in one batched `compute`: one
        pass over the modulation weights instead of one per call, whose cost is reading those weights."""
        if self.memo is None or torch.is_grad_enabled():
            return
        keys = [(timesteps.device, (tau,)) for tau in timesteps.tolist()]
        missing = sorted({key: i for i, key in enumerate(keys) if key not in self.memo}.values())
        if missing:
            modulations = compute(timesteps[missing])
            for row, i in enumerate(missing):
                self.memo[keys[i]] = modulations[row : row + 1]


def memoizing_modulation(method: Callable) -> Callable:
    """Decorate a no-grad sampling method of the model: its time MLP runs once per distinct τ (the model's
    `memoized_modulation` scope, which closes when the method returns, so no later call sees its values)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.memoized_modulation():
            return method(self, *args, **kwargs)

    return run


def checkpoint_with_modulation(state: ModulationState, checkpoint_func: Callable) -> Callable:
    """Wrap an activation-checkpointing function so that a layer recomputed in the backward pass sees the
    modulation of the forward that ran it (by then `state.current` has been reset). The modulation is passed as a
    checkpoint input, not captured, so the reentrant variant also returns its gradient to the time MLP."""

    def run(function: Callable, *args, **kwargs):
        modulation = state.current
        if modulation is None:
            return checkpoint_func(function, *args, **kwargs)

        def with_modulation(modulation_input: torch.Tensor, *inner_args):
            with state.use(modulation_input):
                return function(*inner_args)

        return checkpoint_func(with_modulation, modulation, *args, **kwargs)

    return run


class NormModulationHook:
    """Forward hook of one norm layer: slices its (shift, scale) out of the shared modulation vector."""

    def __init__(self, state: ModulationState, offset: int, dim: int, total: int):
        self.state, self.offset, self.dim, self.total = state, offset, dim, total

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        modulation = self.state.current
        if modulation is None:
            raise RuntimeError(
                "the backbone of a GlauberT5ForDiffusion was called without a diffusion time; call the Glauber "
                "model itself (forward(..., timesteps=τ)) rather than its backbone"
            )
        shift = modulation[:, self.offset : self.offset + self.dim]
        scale = modulation[:, self.total + self.offset : self.total + self.offset + self.dim]
        shape = (shift.shape[0],) + (1,) * (output.dim() - 2) + (self.dim,)
        return torch.addcmul(shift.view(shape).to(output.dtype), output, 1 + scale.view(shape).to(output.dtype))


def attach_time_conditioning(backbone: nn.Module, state: ModulationState) -> list[int]:
    """Register the modulation hook on every norm layer of `backbone`; returns the layers' widths."""
    norms = find_norm_layers(backbone)
    dims = [module.weight.shape[0] for _, module in norms]
    total, offset = sum(dims), 0
    for (_, module), dim in zip(norms, dims):
        module.register_forward_hook(NormModulationHook(state, offset, dim, total))
        offset += dim
    return dims


__all__ = [
    "GlauberTimeConditioning",
    "ModulationState",
    "NormModulationHook",
    "attach_time_conditioning",
    "checkpoint_with_modulation",
    "find_norm_layers",
    "memoizing_modulation",
    "timestep_features",
]
