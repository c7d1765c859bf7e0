"""Parallel Glauber (DESIGN §8): `generate(..., update_block=m)` updates m positions of a round per model call."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_glauber

from modeling_glauber import get_schedule
from modeling_glauber.sampling import STREAM_REFINE, SamplingParams, resolve_seeds, sample_tokens


def single_site_sampler(model, prefix, draft, frozen, params, seeds, num_rounds, mask_window):
    """The reverse rounds as one step per call, written out step by step from `GlauberSchedule.window`."""
    x = draft.clone()
    schedule = model.schedule(x.shape[1])
    windows, valid = schedule.window(mask_window)
    for t in range(num_rounds * x.shape[1], 0, -1):
        k = schedule.positions[t - 1]
        if bool(frozen[:, k].all()):
            continue
        window_valid = valid[t - 1].unsqueeze(0) & ~frozen[:, windows[t - 1]]
        logits = model.infill_logits(prefix, x, windows[t - 1], window_valid, schedule.tau(t).view(1))
        x[:, k] = torch.where(frozen[:, k], x[:, k], sample_tokens(logits, params, seeds, STREAM_REFINE, t))
    return x


@pytest.mark.parametrize("mask_window", [1, 2])
def test_update_block_one_is_the_single_site_sampler_bit_for_bit(mask_window, tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=2, mask_window=mask_window)
    enc = tokenizer(["a prompt", "b"], return_tensors="pt", padding=True)
    canvas = torch.randint(70, 120, (2, 6), generator=torch.Generator().manual_seed(0))
    frozen = torch.zeros_like(canvas, dtype=torch.bool)
    frozen[0, 1] = frozen[:, 4] = True
    out = model.generate(**enc, canvas_ids=canvas, frozen_mask=frozen, seed=7, update_block=1,
                         return_dict_in_generate=True)
    prefix = model.build_prefix(enc.input_ids, enc.attention_mask, frozen_mask=frozen)
    expected = single_site_sampler(model, prefix, out.draft_sequences, frozen, SamplingParams(),
                                   resolve_seeds(7, 2, model.device), 2, mask_window)
    assert torch.equal(out.sequences, expected)
    assert torch.equal(out.sequences, model.generate(**enc, canvas_ids=canvas, frozen_mask=frozen, seed=7))


@pytest.mark.parametrize("mask_window", [1, 3])
def test_a_block_of_one_step_masks_that_steps_window(mask_window):
    schedule = get_schedule(5, 2, 0, "identity")
    windows, valid = schedule.window(mask_window)
    for t in range(1, schedule.total_steps + 1):
        positions, block_valid = schedule.block_window([t], mask_window)
        assert torch.equal(positions[block_valid], windows[t - 1][valid[t - 1]])


def test_a_block_masks_its_positions_and_the_window_beyond_each_once():
    schedule = get_schedule(4, 2, 0, "identity")
    k = schedule.positions.tolist()
    positions, valid = schedule.block_window([6, 5], 2)  # k_6, k_5 predicted; k_4 (previous round) beyond
    assert positions[:2].tolist() == [k[5], k[4]] and valid[:2].all()
    assert positions[2] == k[3] and bool(valid[2]) == (k[3] not in (k[5], k[4]))


def test_update_blocks_group_the_movable_steps_of_each_round():
    schedule = get_schedule(5, 2, 0, "identity")
    movable = [True] * 10
    movable[8] = movable[2] = False  # t = 9 and t = 3
    assert schedule.update_blocks(2, 2, movable) == [[10, 8], [7, 6], [5, 4], [2, 1]]
    assert schedule.update_blocks(1, 4, movable) == [[5, 4, 2, 1]]
    assert schedule.update_blocks(2, 1, movable) == [[t] for t in (10, 8, 7, 6, 5, 4, 2, 1)]


@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_a_block_call_runs_one_encoder_pass_and_one_decoder_row_per_predicted_position(kind, tokenizer):
    model = make_glauber(kind, tokenizer, num_rounds=2, mask_window=2)
    encoder_rows, decoder_rows = [], []
    model.backbone.get_encoder().register_forward_hook(lambda m, args, kw, out: encoder_rows.append(
        out.last_hidden_state.shape[0]), with_kwargs=True)
    model.backbone.get_decoder().register_forward_hook(lambda m, args, kw, out: decoder_rows.append(
        out.last_hidden_state.shape[0]), with_kwargs=True)
    canvas = torch.randint(70, 120, (2, 5))
    with torch.no_grad():
        logits = model.infill_block_logits(model.build_prefix(None, batch_size=2), canvas, torch.tensor([4, 0, 2, 3]),
                                           torch.ones(4, dtype=torch.bool), torch.tensor([0.3, 0.8]), 3)
    assert logits.shape == (2, 3, model.config.vocab_size)
    assert encoder_rows == [2] and decoder_rows == [6]
    assert torch.isfinite(logits).any(dim=-1).all()


def test_parallel_generation_costs_one_call_per_block_and_keeps_its_guarantees(tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=2, mask_window=2)
    canvas = torch.randint(70, 120, (3, 7), generator=torch.Generator().manual_seed(1))
    frozen = torch.zeros_like(canvas, dtype=torch.bool)
    frozen[0, 3] = frozen[:, 6] = True
    calls = []
    infill = model.infill_block_logits
    model.infill_block_logits = lambda *args: calls.append(args[-1]) or infill(*args)
    out = model.generate(canvas_ids=canvas, frozen_mask=frozen, seed=5, update_block=4, return_dict_in_generate=True)
    assert calls == [4, 2] * 2  # per round: 6 movable steps (position 6 is frozen in every row)
    assert out.num_model_calls == 7 + len(calls)
    assert torch.equal(out.sequences[frozen], canvas[frozen])
    assert not torch.equal(out.sequences, out.draft_sequences)
    alone = model.generate(canvas_ids=canvas[1:2], frozen_mask=frozen[1:2], seed=[6], update_block=4)
    assert torch.equal(alone[0], out.sequences[1])  # a row does not depend on its batch


def test_update_block_is_checked(t5_model):
    with pytest.raises(ValueError, match="update_block must be an integer >= 1"):
        t5_model.generate(max_new_tokens=4, update_block=0)
    with pytest.raises(ValueError, match="sentinel_token_ids"):
        t5_model.generate(max_new_tokens=200, update_block=200, mask_window=2)
