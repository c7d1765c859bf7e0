"""AdaLN-Zero time conditioning (DESIGN §3): τ → sinusoidal features → MLP → (shift, scale) for every norm layer.

Each normalisation layer of the backbone's encoder and decoder keeps its module (so pretrained checkpoints load with
their own key names); a forward hook turns its output into `norm(h) · (1 + scale(τ)) + shift(τ)`. The projection is
zero-initialised, so a freshly converted model computes exactly what its backbone computes, at every τ.
"""

from __future__ import annotations

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
    """The modulation vector of the forward in progress, read by the norm-layer hooks.

    Per thread: `nn.DataParallel` runs its replicas, which share this object, in one thread each.
    """

    def __init__(self):
        self.current: torch.Tensor | None = None

    def __deepcopy__(self, memo) -> ModulationState:
        return ModulationState()

    @contextmanager
    def use(self, modulation: torch.Tensor):
        previous, self.current = self.current, modulation
        try:
            yield
        finally:
            self.current = previous


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
    "timestep_features",
]
