"""The frozen reference of DESIGN §4: the kernel q of the noising chain, an EMA of the trained weights.

Two ways to hold it:
- `CopyReference`: a deep copy of the model, `eval()`, no gradients (algorithm 1's `T_k`).
- `AdapterReference` (peft models): a second adapter "reference" on the shared frozen base, the EMA of the trained
  adapter's weights; it costs adapter memory, not a second model.
Both refresh as `ref ← β·ref + (1-β)·θ` (β = 0: hard copy) and save/load their tensors as safetensors. A reference
tensor stored in bf16 / fp16 is accumulated in a float32 copy: in bf16, 0.999·ref + 0.001·θ rounds back to ref.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager

import torch
from safetensors.torch import load_file, save_file
from torch import nn

REFERENCE_DIR = "glauber_reference"
REFERENCE_FILE = "model.safetensors"
REFERENCE_ADAPTER = "reference"


def parameter_bytes(parameters) -> int:
    """Bytes held by a collection of tensors (shared storages counted once)."""
    seen, total = set(), 0
    for p in parameters:
        key = (p.untyped_storage().data_ptr(), p.dtype)
        if key not in seen:
            seen.add(key)
            total += p.numel() * p.element_size()
    return total


_LOW_PRECISION = (torch.float16, torch.bfloat16)


class GlauberReference:
    """Interface: `kernel()` gives the module the noising runs (as a context manager), plus EMA and persistence."""

    def __init__(self):
        # name → float32 EMA accumulator of a low-precision reference tensor (its saved and resumed value)
        self._accumulators: dict[str, torch.Tensor] = {}
        # the reference's time modulation per τ (the noising runs at τ = 1): computed once per refresh, dropped by
        # every write to the reference's weights (`update`, `load_state_dict`)
        self._modulations: dict = {}

    @contextmanager
    def _memoized(self, module: nn.Module):
        with module.memoized_modulation(self._modulations):
            yield module

    def pairs(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(name, reference tensor, trained tensor) for every tensor the refresh touches."""
        raise NotImplementedError

    @contextmanager
    def kernel(self):
        raise NotImplementedError

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """ref ← decay·ref + (1-decay)·θ."""
        self._modulations.clear()
        for name, ref, src in self.pairs():
            value = self._accumulators.setdefault(name, ref.float()) if ref.dtype in _LOW_PRECISION else ref
            if decay == 0.0:
                value.copy_(src)
            else:
                value.mul_(decay).add_(src.to(value.dtype), alpha=1.0 - decay)
            if value is not ref:
                ref.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            name: self._accumulators.get(name, ref).detach().cpu().contiguous().clone() for name, ref, _ in self.pairs()
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        names = {name for name, _, _ in self.pairs()}
        if names != set(state):
            raise ValueError(
                f"reference checkpoint does not match the model: missing {sorted(names - set(state))[:5]}, "
                f"unexpected {sorted(set(state) - names)[:5]}"
            )
        self._modulations.clear()
        for name, ref, _ in self.pairs():
            ref.copy_(state[name])
            if ref.dtype in _LOW_PRECISION:
                self._accumulators[name] = state[name].to(ref.device, torch.float32)

    def save(self, checkpoint_dir: str) -> str:
        path = os.path.join(checkpoint_dir, REFERENCE_DIR, REFERENCE_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        staged = path + ".partial"
        save_file(self.state_dict(), staged)
        os.replace(staged, path)  # a crash mid-write leaves no truncated reference under the real name
        return path

    def load(self, checkpoint_dir: str) -> None:
        path = os.path.join(checkpoint_dir, REFERENCE_DIR, REFERENCE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: the checkpoint has no Glauber reference to resume from")
        self.load_state_dict(load_file(path))

    def memory_bytes(self) -> int:
        """Bytes the reference adds on top of the trained model (with the float32 accumulators)."""
        return parameter_bytes(ref for _, ref, _ in self.pairs()) + parameter_bytes(self._accumulators.values())


class CopyReference(GlauberReference):
    """A frozen deep copy (or a user-given module of the same architecture) at τ = 1."""

    def __init__(self, trained: nn.Module, module: nn.Module | None = None):
        super().__init__()
        self.trained = trained
        self.module = copy.deepcopy(trained) if module is None else module
        self.module.eval().requires_grad_(False)
        ref_names = dict(self.module.named_parameters())
        src_names = dict(trained.named_parameters())
        ref_first, src_first = next(iter(ref_names.values())), next(iter(src_names.values()))
        if ref_first.device != src_first.device or ref_first.dtype != src_first.dtype:
            raise ValueError(
                f"the reference model is on {ref_first.device} / {ref_first.dtype} but the trained model on "
                f"{src_first.device} / {src_first.dtype}; move it with `.to(model.device, model.dtype)` first"
            )
        if ref_names.keys() != src_names.keys():
            raise ValueError("the reference model must have the trained model's architecture (same parameter names)")
        for name, src in src_names.items():
            ref = ref_names[name]
            if ref.shape != src.shape:
                raise ValueError(f"reference parameter {name} has shape {tuple(ref.shape)}, model {tuple(src.shape)}")
            if ref.device != src.device or ref.dtype != src.dtype:
                raise ValueError(
                    f"the reference model is on {ref.device} / {ref.dtype} but the trained model on {src.device} / "
                    f"{src.dtype} (parameter {name}); move it with `.to(model.device, model.dtype)` first"
                )
        self._pairs = [(name, ref_names[name], src_names[name]) for name in src_names]

    def pairs(self):
        return self._pairs

    @contextmanager
    def kernel(self):
        with self._memoized(self.module) as module:
            yield module


class AdapterReference(GlauberReference):
    """The EMA of the trained adapter as a second adapter on the same base; active only while noising."""

    def __init__(self, peft_model: nn.Module, trained_adapter: str = "default"):
        if REFERENCE_ADAPTER in peft_model.peft_config:
            raise ValueError(f"the peft model already has an adapter named {REFERENCE_ADAPTER!r}")
        super().__init__()
        self.model = peft_model
        self.trained_adapter = trained_adapter
        flags = {name: p.requires_grad for name, p in peft_model.named_parameters()}
        peft_model.add_adapter(REFERENCE_ADAPTER, peft_model.peft_config[trained_adapter])
        peft_model.set_adapter(trained_adapter)
        params = dict(peft_model.named_parameters())
        self._pairs = []
        src_tag, ref_tag = f".{trained_adapter}.", f".{REFERENCE_ADAPTER}."
        for name, src in params.items():
            if src_tag in name:
                ref = params[name.replace(src_tag, ref_tag)]
                ref.requires_grad_(False)
                self._pairs.append((name.replace(src_tag, ref_tag), ref, src))
        for name, p in params.items():
            p.requires_grad_(flags.get(name, False))
        self.update(0.0)

    def pairs(self):
        return self._pairs

    @contextmanager
    def kernel(self):
        # set_adapter toggles requires_grad and the trained model is in train mode: restore both afterwards.
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        training = self.model.training
        self.model.base_model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
        self.model.eval()
        try:
            with self._memoized(self.model) as module:
                yield module
        finally:
            self.model.base_model.set_adapter(self.trained_adapter)
            self.model.train(training)
            for p, flag in flags:
                p.requires_grad_(flag)


__all__ = [
    "GlauberReference",
    "CopyReference",
    "AdapterReference",
    "parameter_bytes",
    "REFERENCE_DIR",
    "REFERENCE_FILE",
    "REFERENCE_ADAPTER",
]
