"""`GlauberTrainer`: the SEDD / DWDSE objective of DESIGN §6 against a frozen EMA reference (§4, algorithm 1).

Per micro-batch: draw K = `timesteps_per_chain` loss times per row (`sample_loss_times`: the paper's
`t_j = ceil(j·t_max/K)` with `t_max ~ U{1 … T}`, or stratified-uniform), run the reference's heat-bath Glauber chain
from x_0 to the largest (batched, no grad) and take the loss terms on it. At time t the target is the
token before the step, `a = x_{t-1}[k_t]`, the context is `x_t` (= `x_{t-1}` off `k_t`) with the mask window of step
t masked, the model runs MASK-INFILL at τ = t/T, and the loss is `glauber_score_entropy` (cross-entropy by default).
Optionally a CAUSAL-GEN (τ = 1) next-token loss on the data or on the chain's x_T is added.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from modeling_glauber import glauber_score_entropy, run_glauber_noising
from modeling_glauber.infill import concat_mode_inputs
from modeling_glauber.schedule import sample_loss_times

from .arguments import SHARDED_PARAMETERS_UNSUPPORTED, GlauberTrainingArguments
from .data import REQUIRED_COLUMNS, GlauberDataCollator
from .reference import AdapterReference, CopyReference, GlauberReference


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def glauber_model_of(model: nn.Module) -> nn.Module:
    """The `GlauberT5ForDiffusion` inside a (peft-wrapped) model; `TypeError` for anything else."""
    inner = model.get_base_model() if is_peft_model(model) else model
    if getattr(getattr(inner, "config", None), "model_type", None) != "glauber_t5":
        raise TypeError(
            f"GlauberTrainer trains a GlauberT5ForDiffusion (or a peft model around one), got {type(inner).__name__}; "
            "convert a backbone with GlauberT5ForDiffusion.from_backbone first"
        )
    return inner


class ReferenceRefreshCallback(TrainerCallback):
    """Every `reference_update_steps` optimiser steps: ref ← β·ref + (1-β)·θ (appendix A; β = 0 is algorithm 1)."""

    def __init__(self, reference: GlauberReference):
        self.reference = reference

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % args.reference_update_steps == 0:
            self.reference.update(args.reference_ema_decay)


class GlauberTrainer(Trainer):
    r"""
    `Trainer` for the Glauber diffusion objective. Extra constructor argument: `ref_model`, an initial reference of
    the model's architecture, device and dtype (default: a deep copy of `model`; with peft and
    `lora_reference="adapter"`, a second adapter on the shared base).

    The batch holds `input_ids`/`attention_mask` (prompt), `canvas_ids` `[B, L]` and `frozen` `[B, L]`
    (`GlauberDataCollator`). Logged besides `loss`: `loss_infill`, `loss_causal` and `loss_tau_<lo>_<hi>`, the DWDSE
    loss per τ bucket (plot with `python -m trainers.plot_loss <output_dir>`). `noising_seconds` accumulates the time
    spent in the reference's chains.
    """

    # compute_loss returns a per-micro-batch mean: training_step must divide it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: GlauberTrainingArguments | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, ref_model: nn.Module | None = None,
                 **kwargs):
        if not isinstance(args, GlauberTrainingArguments):
            raise TypeError(f"GlauberTrainer needs GlauberTrainingArguments, got {type(args).__name__}")
        if args.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True would drop canvas_ids and frozen (not arguments of forward); set it False"
            )
        glauber = glauber_model_of(model)
        if args.num_rounds is not None and args.num_rounds != glauber.config.num_rounds:
            raise ValueError(
                f"num_rounds={args.num_rounds} in the training arguments disagrees with the model config's "
                f"num_rounds={glauber.config.num_rounds} (which lays out the schedule); make them equal or leave the "
                "argument unset"
            )
        if len(glauber.sentinel_ids) < glauber.config.mask_window:
            raise ValueError(f"mask_window={glauber.config.mask_window} needs that many sentinel_token_ids")
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            columns = getattr(dataset, "column_names", None)
            if columns is not None and not set(REQUIRED_COLUMNS) <= set(columns):
                raise ValueError(
                    f"{name} lacks the columns {sorted(set(REQUIRED_COLUMNS) - set(columns))} (has {columns}); rows "
                    "need input_ids (prompt, may be empty), canvas_ids (L ids) and optionally frozen"
                )
        if data_collator is None:
            data_collator = GlauberDataCollator(glauber.config.pad_id, args.canvas_length)
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        if self.is_fsdp_enabled:  # FSDP set up by `accelerate launch`'s config rather than the arguments
            raise ValueError(SHARDED_PARAMETERS_UNSUPPORTED.format(what="FSDP"))
        self.glauber = glauber
        if is_peft_model(self.model) and args.lora_reference == "adapter":
            if ref_model is not None:
                raise ValueError("ref_model cannot be given with lora_reference='adapter' (the reference is an adapter)")
            self.reference: GlauberReference = AdapterReference(self.model)
        else:
            self.reference = CopyReference(self.model, ref_model)
            self.reference.module = self.accelerator.prepare_model(self.reference.module, evaluation_mode=True)
        self.add_callback(ReferenceRefreshCallback(self.reference))
        self.noising_seconds = 0.0
        self._noise_draws: dict[bool, tuple[int, int]] = {}  # training / evaluation → (global step, micro-batches)
        self._stats = torch.zeros(2 * args.loss_time_buckets + 4, dtype=torch.float64)

    # ------------------------------------------------------------------------------------------ randomness
    def _noise_generator(self, training: bool) -> torch.Generator:
        """Seeded by (seed, global step, micro-batch within the step, rank): a resumed run redraws the same chains.

        Evaluation counts its own micro-batches and adds a stream tag, so evaluating (or not) between training steps
        changes no training chain."""
        step = self.state.global_step
        last_step, micro = self._noise_draws.get(training, (-1, 0))
        micro = micro if last_step == step else 0
        self._noise_draws[training] = (step, micro + 1)
        entropy = [self.args.seed, step, micro, self.args.process_index] + ([] if training else [1])
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))
        return torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------------------------------ the loss
    def _logits(self, model, prefix, rows, context, window, valid, tau, causal_canvas):
        """MASK-INFILL rows (and CAUSAL-GEN rows) in one forward through the (DDP-wrapped) model, so gradients sync.

        Returns `[M, V]` infill logits and `[B, L, V]` causal logits (or None), content tokens only.
        """
        glauber = self.glauber
        batches = [glauber.infill_inputs(prefix.select(rows), context, window, valid, tau)]
        if causal_canvas is not None:
            batches.append(glauber.causal_inputs(prefix, causal_canvas))
        out = model(**concat_mode_inputs(batches, glauber.config.pad_id), use_cache=False)
        logits = glauber.content_logits(out.logits)
        num_infill = context.shape[0]
        causal = None if causal_canvas is None else logits[num_infill:, : causal_canvas.shape[1]]
        return logits[:num_infill, 1], causal

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args, glauber = self.args, self.glauber
        canvas, frozen = inputs["canvas_ids"], inputs["frozen"].bool()
        batch, length = canvas.shape
        # frozen cells (givens, fillers) are never emitted, so only free cells must be emittable
        forbidden = glauber.suppress_mask[canvas] & ~frozen
        if bool(forbidden.any()):
            bad = sorted(set(canvas[forbidden].tolist()))[:10]
            raise ValueError(
                f"canvas_ids contain, at free (non-frozen) positions, ids neither mode may emit (specials, sentinels, "
                f"suppressed): {bad}"
            )
        schedule = glauber.schedule(length)
        total, k = schedule.total_steps, args.timesteps_per_chain
        generator = self._noise_generator(model.training)
        times = sample_loss_times(total, k, batch, args.timestep_sampling, generator)
        seeds = torch.randint(0, 2**62, (batch,), generator=generator, dtype=torch.int64)
        chain_to_end = args.causal_loss_weight > 0 and args.causal_loss_target == "chain"
        num_steps = total if chain_to_end else int(times.max())

        prefix = glauber.build_prefix(inputs["input_ids"], inputs.get("attention_mask"), frozen_mask=frozen)
        started = time.perf_counter()
        with self.reference.kernel() as reference:
            # a row leaves the chain batch after its last loss time, unless its x_T is the causal target
            last_steps = None if chain_to_end else times.max(dim=1).values.to(canvas.device)
            trace = run_glauber_noising(
                reference, prefix, canvas, frozen, num_steps, seeds.to(canvas.device), times.to(canvas.device),
                last_steps=last_steps,
            )
        self.noising_seconds += time.perf_counter() - started

        device = canvas.device
        rows = torch.arange(batch, device=device).repeat_interleave(k)
        t_flat = times.flatten().to(device)
        scored = ~frozen[rows, schedule.positions.to(device)[t_flat - 1]]
        # every sampled step frozen: one unweighted placeholder term keeps the forward off zero rows and every
        # parameter in the backward (DDP)
        placeholder = not bool(scored.any())
        scored[0] |= placeholder
        rows, t_flat = rows[scored], t_flat[scored]
        mask_window = glauber.resolve_mask_window(None, length)  # the window generate and the bound use
        windows, valid = (table.to(device)[t_flat - 1] for table in schedule.window(mask_window))
        valid = valid & ~torch.gather(frozen[rows], 1, windows)
        context = trace.snapshots.flatten(0, 1)[scored]
        targets = trace.old_tokens[rows, t_flat - 1]
        logq = trace.logq_old[rows, t_flat - 1]
        tau = t_flat.float() / total

        causal_canvas = None
        if args.causal_loss_weight > 0:
            causal_canvas = trace.final if chain_to_end else canvas
        infill_logits, causal_logits = self._logits(model, prefix, rows, context, windows, valid, tau, causal_canvas)
        if placeholder:
            per_item, tau = infill_logits.new_zeros(0), tau[:0]
            infill_loss = infill_logits.nan_to_num(neginf=0.0).sum() * 0.0  # suppressed ids: -inf · 0 would be nan
        else:
            per_item = glauber_score_entropy(infill_logits, targets, logq, args.score_parametrization)
            infill_loss = per_item.mean()
        loss = infill_loss
        causal_loss = None
        if causal_logits is not None:
            order = schedule.causal_order_positions.to(device)
            logp = causal_logits.log_softmax(dim=-1).gather(2, causal_canvas[:, order].unsqueeze(2)).squeeze(2)
            free = ~frozen[:, order]
            # frozen cells may hold tokens no mode can emit (a Zebra filler: log p = -inf), so select, not multiply
            causal_loss = -torch.where(free, logp, 0.0).sum() / free.sum().clamp(min=1)
            loss = loss + args.causal_loss_weight * causal_loss
        if model.training:  # evaluation losses stay out of the training logs
            self._record(per_item.detach(), tau, infill_loss.detach(), causal_loss)
        return (loss, {"loss": loss}) if return_outputs else loss

    def _record(self, per_item, tau, infill_loss, causal_loss) -> None:
        nb = self.args.loss_time_buckets
        bucket = (torch.ceil(tau * nb).long() - 1).clamp(0, nb - 1).cpu()
        self._stats[:nb].index_add_(0, bucket, per_item.double().cpu())
        self._stats[nb : 2 * nb].index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float64))
        if per_item.numel():  # a placeholder term (every sampled step frozen) is no measurement
            self._stats[2 * nb] += float(infill_loss)
            self._stats[2 * nb + 1] += 1
        if causal_loss is not None:
            self._stats[2 * nb + 2] += float(causal_loss.detach())
            self._stats[2 * nb + 3] += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the running means since the last log: `loss_infill`, `loss_causal`, `loss_tau_<lo>_<hi>`."""
        if "loss" in logs:
            # every rank logs at the same steps, so every rank joins the reduce, including one whose window held
            # only placeholder terms
            stats = self._stats.to(self.args.device)
            if self.accelerator.num_processes > 1:
                stats = self.accelerator.reduce(stats, reduction="sum")
            stats = stats.cpu()
            nb = self.args.loss_time_buckets
            for i in range(nb):
                if stats[nb + i] > 0:
                    logs[f"loss_tau_{i / nb:.2f}_{(i + 1) / nb:.2f}"] = float(stats[i] / stats[nb + i])
            if stats[2 * nb + 1] > 0:
                logs["loss_infill"] = float(stats[2 * nb] / stats[2 * nb + 1])
            if stats[2 * nb + 3] > 0:
                logs["loss_causal"] = float(stats[2 * nb + 2] / stats[2 * nb + 3])
            self._stats.zero_()  # last: on the CPU `stats` may be this very tensor
        super().log(logs, start_time)

    def evaluation_loop(self, *args, **kwargs):
        """Each evaluation redraws its chains from its first micro-batch on: evaluating twice at one step agrees."""
        self._noise_draws.pop(False, None)
        return super().evaluation_loop(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation loss: the same objective on fresh chains, no gradients."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ------------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        # first: Trainer writes trainer_state.json, pushes (hub_strategy="checkpoint") and rotates old checkpoints
        # inside its own save, and none of these may see a checkpoint without its reference
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self.reference.save(os.path.join(self._get_output_dir(trial=trial), folder))
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        # Trainer calls this on resume after the weights are loaded, whatever the backend (DeepSpeed loads weights
        # without _load_from_checkpoint), so the reference is restored here
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.reference.load(checkpoint)


__all__ = ["GlauberTrainer", "ReferenceRefreshCallback", "glauber_model_of", "is_peft_model"]
