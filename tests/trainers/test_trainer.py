"""GlauberTrainer: the loss against the model's own modes, EMA reference, checkpoints, exact resume, GA, bad input."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from trainer_fixtures import tiny_t5, toy_rows
from trainers import GlauberDataCollator, GlauberTrainer, GlauberTrainingArguments
from trainers.reference import REFERENCE_DIR, REFERENCE_FILE, CopyReference


def make_args(tmp_path, **kwargs) -> GlauberTrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, timesteps_per_chain=3, reference_update_steps=2,
        reference_ema_decay=0.5, logging_steps=1, use_cpu=True, report_to="none", save_strategy="no",
        disable_tqdm=True, learning_rate=1e-3, seed=7,
    )
    defaults.update(kwargs)
    return GlauberTrainingArguments(**defaults)


def trained_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_fused_forward_matches_the_model_modes(tmp_path, tokenizer):
    model = tiny_t5(num_rounds=2, mask_window=2).eval()
    trainer = GlauberTrainer(model=model, args=make_args(tmp_path, causal_loss_weight=1.0),
                             train_dataset=Dataset.from_dict(toy_rows()), processing_class=tokenizer)
    batch = GlauberDataCollator()([{k: v[i] for k, v in toy_rows().items()} for i in range(5)])
    prefix = model.build_prefix(batch["input_ids"], batch["attention_mask"])
    schedule = model.schedule(6)
    windows, valid = schedule.window(2)
    rows = torch.tensor([0, 1, 1, 3, 4])
    steps = torch.tensor([1, 5, 12, 7, 2])
    context = batch["canvas_ids"][rows]
    tau = steps.float() / schedule.total_steps
    with torch.no_grad():
        infill, causal = trainer._logits(model, prefix, rows, context, windows[steps - 1], valid[steps - 1], tau,
                                         batch["canvas_ids"])
        expected = model.infill_logits(prefix.select(rows), context, windows[steps - 1], valid[steps - 1], tau)
        expected_causal = model.causal_logits(prefix, batch["canvas_ids"])
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(infill))
    assert torch.allclose(infill[finite], expected[finite], atol=1e-4)
    assert torch.allclose(causal[torch.isfinite(causal)], expected_causal[torch.isfinite(expected_causal)], atol=1e-4)


def test_reference_is_a_frozen_copy_refreshed_by_ema(tmp_path, tokenizer):
    model = tiny_t5()
    args = make_args(tmp_path, max_steps=3, reference_update_steps=2, reference_ema_decay=0.0, save_strategy="steps",
                     save_steps=2)
    trainer = GlauberTrainer(model=model, args=args, train_dataset=Dataset.from_dict(toy_rows()),
                             processing_class=tokenizer)
    ref = trainer.reference.module
    assert ref is not model and not ref.training and not any(p.requires_grad for p in ref.parameters())
    initial = copy.deepcopy(ref.state_dict())
    trainer.train()
    # hard copy at step 2, untouched at step 3
    saved = load_file(os.path.join(tmp_path, "checkpoint-2", REFERENCE_DIR, REFERENCE_FILE))
    step2 = load_file(os.path.join(tmp_path, "checkpoint-2", "model.safetensors"))
    for name, p in ref.named_parameters():
        assert torch.equal(saved[name], p.detach())
        assert torch.equal(p.detach(), step2[name]), name
    assert any(not torch.equal(p, model.state_dict()[n]) for n, p in ref.state_dict().items())
    assert any(not torch.equal(p, initial[n]) for n, p in ref.state_dict().items())
    # EMA formula
    before = {n: p.detach().clone() for n, p in ref.named_parameters()}
    trainer.reference.update(0.75)
    current = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        assert torch.allclose(p, 0.75 * before[name] + 0.25 * current[name].detach(), atol=1e-7)


def test_ema_of_bf16_weights_accumulates_in_float32(tmp_path):
    model = tiny_t5().to(torch.bfloat16)
    reference = CopyReference(model)
    start = {name: ref.float() for name, ref, _ in reference.pairs()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    for _ in range(60):
        reference.update(0.99)
    weight = 0.99**60
    for name, ref, src in reference.pairs():
        # each step moves ref by 0.1 % of itself, under half a bf16 step: rounded in bf16 it would never move
        expected = weight * start[name] + (1 - weight) * src.float()
        torch.testing.assert_close(ref.float(), expected, rtol=2**-8, atol=1e-6)
    # the float32 value is what a checkpoint keeps, so a resumed EMA continues exactly
    reference.save(tmp_path)
    resumed = CopyReference(model, copy.deepcopy(model))
    resumed.load(tmp_path)
    for ema in (reference, resumed):
        for _ in range(5):
            ema.update(0.99)
    for (name, ref, _), (_, again, _) in zip(reference.pairs(), resumed.pairs()):
        assert torch.equal(ref, again), name
    assert reference.memory_bytes() == 3 * sum(p.numel() * 2 for p in model.parameters())


class WeightsLoadedAsDeepSpeedDoes(GlauberTrainer):
    """DeepSpeed resumes the weights with its own loader and never calls `_load_from_checkpoint`."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        self.model.load_state_dict(load_file(os.path.join(resume_from_checkpoint, "model.safetensors")), strict=False)


def test_resume_is_bit_exact(tmp_path, tokenizer):
    """Also when the run evaluates at the checkpoint step (evaluation draws its chains from a stream of its own), and
    when the weights are not loaded through `_load_from_checkpoint` (DeepSpeed)."""
    data, held_out = Dataset.from_dict(toy_rows(num=24)), Dataset.from_dict(toy_rows(num=4, seed=1))

    def run(output_dir, resume=None, trainer_class=GlauberTrainer):
        args = make_args(output_dir, max_steps=6, save_strategy="steps", save_steps=3, causal_loss_weight=0.5,
                         gradient_accumulation_steps=2, per_device_train_batch_size=2, eval_strategy="steps",
                         eval_steps=3, per_device_eval_batch_size=4)
        trainer = trainer_class(model=tiny_t5(), args=args, train_dataset=data, eval_dataset=held_out,
                                processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    assert full.evaluate()["eval_loss"] == full.evaluate()["eval_loss"]  # the same chains at the same step
    first = dict(full.model.named_parameters())
    ref_full = dict(full.reference.module.named_parameters())
    for trainer_class in (GlauberTrainer, WeightsLoadedAsDeepSpeedDoes):
        resumed = run(tmp_path / "full", str(tmp_path / "full" / "checkpoint-3"), trainer_class)
        losses_full, losses_resumed = trained_losses(full), trained_losses(resumed)
        print(trainer_class.__name__, "uninterrupted", losses_full[3:], "resumed", losses_resumed[3:])
        assert losses_resumed[3:] == losses_full[3:]  # the resumed history starts with the checkpoint's
        for name, p in resumed.model.named_parameters():
            assert torch.equal(p, first[name]), name
        for name, p in resumed.reference.module.named_parameters():
            assert torch.equal(p, ref_full[name]), name


def test_gradient_accumulation_scales_the_loss(tmp_path, tokenizer):
    args = make_args(tmp_path, max_steps=2, gradient_accumulation_steps=2, per_device_train_batch_size=2)
    trainer = GlauberTrainer(model=tiny_t5(), args=args, train_dataset=Dataset.from_dict(toy_rows()),
                             processing_class=tokenizer)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    # the logged loss is the mean of the micro-batch losses (not GA times it); backward uses the same scaled loss
    assert args.causal_loss_weight == 1.0  # the default: loss = infill + causal
    for entry in logs:
        assert entry["loss"] == pytest.approx(entry["loss_infill"] + entry["loss_causal"], rel=1e-5)
        assert any(k.startswith("loss_tau_") for k in entry)


def test_unnormalized_score_chain_causal_target_and_stratified_times_train(tmp_path, tokenizer):
    args = make_args(tmp_path, max_steps=2, score_parametrization="unnormalized", causal_loss_weight=1.0,
                     causal_loss_target="chain", timestep_sampling="stratified")
    trainer = GlauberTrainer(model=tiny_t5(), args=args, train_dataset=Dataset.from_dict(toy_rows()),
                             processing_class=tokenizer)
    trainer.train()
    losses = trained_losses(trainer)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert trainer.noising_seconds > 0


def test_a_micro_batch_whose_sampled_steps_are_all_frozen_trains_without_moving_the_weights(tmp_path, tokenizer):
    rows = toy_rows(num=4)
    rows["frozen"] = [[1] * 6 for _ in range(4)]
    model = tiny_t5()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # no nan filter: a nan loss must show as nan, not as the filter's 0
    args = make_args(tmp_path, max_steps=2, per_device_train_batch_size=1, logging_nan_inf_filter=False)
    trainer = GlauberTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows))
    trainer.train()
    assert trained_losses(trainer) == [0.0, 0.0]
    assert not any(key.startswith("loss_infill") for entry in trainer.state.log_history for key in entry)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), name


def test_a_checkpoint_holds_its_reference_before_it_is_pushed_or_rotated(tmp_path, tokenizer):
    trainer = GlauberTrainer(model=tiny_t5(), args=make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2),
                             train_dataset=Dataset.from_dict(toy_rows()))
    pushed = {}
    trainer.args.push_to_hub = True  # as with --push_to_hub --hub_strategy checkpoint; the push itself is recorded
    trainer._push_from_checkpoint = lambda folder: pushed.update(files=sorted(os.listdir(folder)))
    trainer.train()
    assert REFERENCE_DIR in pushed["files"] and "trainer_state.json" in pushed["files"]
    assert os.listdir(tmp_path / "checkpoint-2" / REFERENCE_DIR) == [REFERENCE_FILE]


def test_bad_input_raises_clear_errors(tmp_path, tokenizer):
    data = Dataset.from_dict(toy_rows())
    with pytest.raises(ValueError, match="timesteps_per_chain"):
        make_args(tmp_path, timesteps_per_chain=0)
    with pytest.raises(ValueError, match=r"timestep_sampling must be one of \('t_max', 'stratified'\)"):
        make_args(tmp_path, timestep_sampling="uniform")
    # sharded parameters would leave the EMA reference on stale tensors
    (tmp_path / "zero3.json").write_text('{"zero_optimization": {"stage": 3}}')
    for sharded in (dict(fsdp=True), dict(deepspeed={"zero_optimization": {"stage": 3}}),
                    dict(deepspeed=str(tmp_path / "zero3.json"))):
        with pytest.raises(ValueError, match="does not support .* use DDP or DeepSpeed ZeRO-1/2 .* or LoRA with "
                                             "lora_reference='adapter' .* 'Which model sizes fit'"):
            make_args(tmp_path, **sharded)
    with pytest.raises(ValueError, match="num_rounds=3 .* disagrees"):
        GlauberTrainer(model=tiny_t5(num_rounds=2), args=make_args(tmp_path, num_rounds=3), train_dataset=data)
    with pytest.raises(ValueError, match="lacks the columns"):
        GlauberTrainer(model=tiny_t5(), args=make_args(tmp_path), train_dataset=data.remove_columns("canvas_ids"))
    with pytest.raises(ValueError, match="remove_unused_columns"):
        GlauberTrainer(model=tiny_t5(), args=make_args(tmp_path, remove_unused_columns=True), train_dataset=data)
    model = tiny_t5()
    with pytest.raises(ValueError, match="float64"):
        GlauberTrainer(model=model, args=make_args(tmp_path), train_dataset=data, ref_model=copy.deepcopy(model).double())
    with pytest.raises(ValueError, match="meta"):
        GlauberTrainer(model=model, args=make_args(tmp_path), train_dataset=data, ref_model=copy.deepcopy(model).to("meta"))
    rows = toy_rows()
    rows["canvas_ids"][3] = rows["canvas_ids"][3][:4]
    with pytest.raises(ValueError, match="exactly L = 6"):
        GlauberDataCollator(canvas_length=6)([{k: v[i] for k, v in rows.items()} for i in range(4)])
    with pytest.raises(ValueError, match="missing"):
        GlauberDataCollator()([{"input_ids": [1]}])
    rows = toy_rows()
    rows["canvas_ids"][0][1] = 300  # a ByT5 sentinel at a free position (row 0 freezes position 0)
    trainer = GlauberTrainer(model=tiny_t5(), args=make_args(tmp_path, max_steps=1), train_dataset=Dataset.from_dict(rows))
    with pytest.raises(ValueError, match="neither mode may emit"):
        trainer.train()
    # a frozen cell may hold such an id (e.g. the Zebra filler): it is never noised, scored or emitted
    rows = toy_rows()
    rows["canvas_ids"][0][0] = 300
    frozen_ok = GlauberTrainer(model=tiny_t5(), args=make_args(tmp_path / "ok", max_steps=1),
                               train_dataset=Dataset.from_dict(rows))
    assert frozen_ok.train().global_step == 1


def masked_windows_by_step(model, run) -> dict[int, set[frozenset[int]]]:
    """Step t → the sets of canvas positions masked by the MASK-INFILL calls `run()` makes at τ = t/T (the noising
    chain's single-position calls at τ = 1 are left out: they have a window of one slot, the others have w)."""
    seen: dict[int, set[frozenset[int]]] = {}
    infill_inputs = model.infill_inputs

    def spy(prefix, canvas, window_positions, window_valid, timesteps):
        if window_positions.shape[-1] > 1:
            batch = canvas.shape[0]
            positions = window_positions.expand(batch, -1)
            valid = window_valid.expand(batch, -1)
            taus = torch.as_tensor(timesteps, dtype=torch.float32).reshape(-1).expand(batch)
            total = model.schedule(canvas.shape[1]).total_steps
            for row in range(batch):
                step = round(float(taus[row]) * total)
                seen.setdefault(step, set()).add(frozenset(positions[row][valid[row]].tolist()))
        return infill_inputs(prefix, canvas, window_positions, window_valid, timesteps)

    model.infill_inputs = spy
    try:
        run()
    finally:
        del model.infill_inputs
    return seen


def test_training_generate_and_the_bound_mask_the_same_window_when_the_canvas_is_shorter_than_it(tmp_path):
    from eval.bound import glauber_bound

    length, num_rounds = 3, 2  # w = 5 > L: at the round boundary a window of 5 steps reaches back into round 1
    model = tiny_t5(num_rounds=num_rounds, mask_window=5)
    rows = toy_rows(num=4, length=length, prompt=False)
    rows["frozen"] = [[0] * length for _ in range(4)]
    # stratified with K = T: every chain scores every step t = 1 … T
    args = make_args(tmp_path, max_steps=1, timesteps_per_chain=num_rounds * length, timestep_sampling="stratified")
    trainer = GlauberTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows))
    trained = masked_windows_by_step(model, trainer.train)
    generated = masked_windows_by_step(model, lambda: model.generate(max_new_tokens=length, seed=0))
    canvas = torch.tensor(rows["canvas_ids"][:1])
    bounded = masked_windows_by_step(model, lambda: glauber_bound(model, model.build_prefix(None, batch_size=1),
                                                                  canvas, seed=0))
    assert set(trained) == set(generated) == set(bounded) == set(range(1, num_rounds * length + 1))
    for step in trained:
        assert len(generated[step]) == 1, step  # one window per step
        assert trained[step] == generated[step] == bounded[step], step
    # the schedule does differ between w = 5 and the clipped w = 3 at this L, so the check has teeth
    wide, clipped = (model.schedule(length).window(w) for w in (5, 3))
    masked = lambda table, t: set(table[0][t - 1][table[1][t - 1]].tolist())  # noqa: E731
    assert any(masked(wide, t) != masked(clipped, t) for t in range(1, num_rounds * length + 1))


def test_by_default_the_causal_draft_is_trained_on_the_chains_x_T(tmp_path, monkeypatch):
    """DESIGN §5: the reverse chain is exact only from p_T, so a user who sets nothing trains the draft on x_T."""
    import trainers.trainer as trainer_module

    args = GlauberTrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                                    use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                                    disable_tqdm=True)
    assert args.causal_loss_weight > 0 and args.causal_loss_target == "chain"
    model = tiny_t5(num_rounds=2)
    rows = toy_rows(num=4)
    traces, causal_canvases = [], []
    noising = trainer_module.run_glauber_noising

    def recorded_noising(reference, prefix, canvas, frozen, num_steps, seeds, times, **kwargs):
        traces.append((num_steps, canvas, frozen,
                       noising(reference, prefix, canvas, frozen, num_steps, seeds, times, **kwargs)))
        return traces[-1][-1]

    causal_inputs = model.causal_inputs
    monkeypatch.setattr(trainer_module, "run_glauber_noising", recorded_noising)
    monkeypatch.setattr(model, "causal_inputs", lambda prefix, canvas: causal_canvases.append(canvas) or
                        causal_inputs(prefix, canvas))
    trainer = GlauberTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows))
    trainer.train()
    (num_steps, data, frozen, trace), = traces
    assert num_steps == model.schedule(6).total_steps  # every chain runs to T
    assert len(causal_canvases) == 1 and torch.equal(causal_canvases[0], trace.final)
    assert frozen.any() and not torch.equal(trace.final, data)  # x_T, not x_0, on the free cells
    assert torch.equal(trace.final[frozen], data[frozen])  # givens never move
    assert "loss_causal" in trainer.state.log_history[0]


def test_the_default_reference_tracks_the_model_within_a_run_but_not_step_by_step(tmp_path):
    """DESIGN §4: the EMA's time constant `reference_update_steps / (1 − decay)` must be reached within a run."""
    import math

    from transformers import TrainerState

    from trainers import ReferenceRefreshCallback

    args = GlauberTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    model = tiny_t5()
    trainer = GlauberTrainer(model=model, args=args, train_dataset=Dataset.from_dict(toy_rows()))
    start = {name: ref.detach().clone() for name, ref, _ in trainer.reference.pairs()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the model has moved by 1 everywhere: the reference's share of the way is ref − start
    callback, state = ReferenceRefreshCallback(trainer.reference), TrainerState()

    def share_after(steps: range) -> float:
        for state.global_step in steps:
            callback.on_step_end(args, state, None)
        return min(float((ref - start[name]).min()) for name, ref, _ in trainer.reference.pairs())

    assert share_after(range(1, 101)) < 0.5  # a smoothed copy, not the model of a few steps ago
    assert share_after(range(101, 2001)) >= 1 - math.exp(-1)  # time constant ≤ 2,000 optimiser steps
