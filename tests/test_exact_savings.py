"""Exact savings in MASK-INFILL: each one computes what the plain path computes, with less work."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from tiny_models import make_glauber

from modeling_glauber import cross_attention, run_glauber_noising
from trainers.reference import CopyReference

WINDOW, VALID = torch.tensor([3, 1]), torch.tensor([[True, True], [True, False]])


def _inputs(model, tokenizer):
    enc = tokenizer(["hello there", "a"], return_tensors="pt", padding=True)
    prefix = model.build_prefix(enc.input_ids, enc.attention_mask)
    return prefix, torch.randint(70, 120, (2, 6), generator=torch.Generator().manual_seed(0))


def plain_infill_logits(model, prefix, canvas, window, valid, tau):
    """MASK-INFILL as the whole backbone forward computes it: the head on both decoder positions, K/V projected."""
    return model.content_logits(model(**model.infill_inputs(prefix, canvas, window, valid, tau)).logits[:, -1])


@contextlib.contextmanager
def plain_path(model, monkeypatch):
    """`model` with no saving: the full forward for every infill, no folding and no memo of the time MLP."""
    with monkeypatch.context() as patch:
        patch.setattr(cross_attention, "folding_is_cheaper", lambda *args: False)
        patch.setattr(model, "memoized_modulation", lambda store=None: contextlib.nullcontext())
        patch.setattr(model, "infill_block_logits", lambda prefix, canvas, window, valid, tau, num_predicted=1:
                      plain_infill_logits(model, prefix, canvas, window, valid, tau).unsqueeze(1))
        yield


@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_infill_runs_the_lm_head_on_the_predicted_decoder_position_only(kind, tokenizer):
    model = make_glauber(kind, tokenizer, num_rounds=2, mask_window=2)
    prefix, canvas = _inputs(model, tokenizer)
    widths = []
    model.get_output_embeddings().register_forward_hook(lambda module, args, out: widths.append(args[0].shape[1]))
    tau = torch.tensor([0.2, 0.9])
    with torch.no_grad():
        got = model.infill_logits(prefix, canvas, WINDOW, VALID, tau)
        assert widths == [1]
        expected = plain_infill_logits(model, prefix, canvas, WINDOW, VALID, tau)
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got))
    torch.testing.assert_close(got[finite], expected[finite], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind,implementation", [("t5", "sdpa"), ("t5", "eager"), ("t5gemma", "eager")])
def test_infill_cross_attention_folds_instead_of_projecting_the_encoder_and_equals_the_plain_path(
    kind, implementation, tokenizer, monkeypatch
):
    model = make_glauber(kind, tokenizer, num_rounds=2, mask_window=2)
    model.backbone.set_attn_implementation(implementation)
    prefix, canvas = _inputs(model, tokenizer)  # padded prompts: the encoder mask matters
    projected = []
    for name, module in model.backbone.named_modules():
        if name.endswith(("EncDecAttention.k", "EncDecAttention.v", "cross_attn.k_proj", "cross_attn.v_proj")):
            module.register_forward_hook(lambda module, args, out: projected.append(args[0].shape))
    assert projected == [] and len([m for m in model.modules() if type(m).__name__.startswith("Folding")]) == 2
    tau = torch.tensor([0.4, 0.7])
    with torch.no_grad():
        folded = model.infill_block_logits(prefix, canvas, WINDOW, VALID, tau, num_predicted=2)
        assert projected == []
        monkeypatch.setattr(cross_attention, "folding_is_cheaper", lambda *args: False)
        plain = model.infill_block_logits(prefix, canvas, WINDOW, VALID, tau, num_predicted=2)
    assert len(projected) == 2 * 2  # K and V of both decoder layers, on the plain path only
    finite = torch.isfinite(plain)
    assert torch.equal(finite, torch.isfinite(folded))
    torch.testing.assert_close(folded[finite], plain[finite], atol=1e-5, rtol=0)


def test_folding_is_taken_only_where_it_costs_fewer_multiply_adds():
    assert cross_attention.folding_is_cheaper(2, 8, 8, 64)  # T5-small's infill decoder
    assert not cross_attention.folding_is_cheaper(128, 8, 8, 64)  # a whole canvas teacher-forced
    assert not cross_attention.folding_is_cheaper(2, 8, 1, 8)  # one narrow key/value head


@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_seeded_generation_gives_the_token_ids_of_the_plain_path(kind, tokenizer, monkeypatch):
    model = make_glauber(kind, tokenizer, num_rounds=2, mask_window=2)
    enc = tokenizer(["a prompt", "b"], return_tensors="pt", padding=True)
    canvas = torch.randint(70, 120, (2, 7), generator=torch.Generator().manual_seed(1))
    frozen = torch.zeros_like(canvas, dtype=torch.bool)
    frozen[0, 2] = frozen[:, 5] = True
    kwargs = dict(canvas_ids=canvas, frozen_mask=frozen, seed=3, top_p=0.9, return_dict_in_generate=True)
    fast = model.generate(**enc, **kwargs)
    with plain_path(model, monkeypatch):
        plain = model.generate(**enc, **kwargs)
    assert torch.equal(fast.sequences, plain.sequences)
    assert torch.equal(fast.draft_sequences, plain.draft_sequences)
    assert not torch.equal(fast.sequences, fast.draft_sequences)  # the refinement did move tokens


def _count_time_mlp_calls(model) -> list[torch.Tensor]:
    calls = []
    model.time_conditioning.register_forward_hook(lambda module, args, out: calls.append(args[0]))
    return calls


def test_generate_runs_the_time_mlp_once_per_distinct_time_in_batches(tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=2, mask_window=2)
    calls = _count_time_mlp_calls(model)
    model.generate(max_new_tokens=5, seed=0)
    schedule = model.schedule(5)
    distinct = {1.0} | {float(schedule.tau(t)) for t in range(1, schedule.total_steps + 1)}  # the draft runs at τ = 1
    assert len(calls) == 2  # the draft's τ = 1, then every refinement τ in one batch
    assert sorted(float(tau) for taus in calls for tau in taus) == sorted(distinct)


def test_the_time_memo_never_outlives_a_generate_call(tokenizer):
    """Training changes the weights between two calls: the second call must see the new time conditioning."""
    model = make_glauber("t5", tokenizer, num_rounds=2, mask_window=2)
    first = model.generate(max_new_tokens=6, seed=0, num_rounds=2)
    with torch.no_grad():
        model.time_conditioning.modulation.weight.mul_(-5.0)
    second = model.generate(max_new_tokens=6, seed=0, num_rounds=2)
    fresh = copy.deepcopy(model).generate(max_new_tokens=6, seed=0, num_rounds=2)
    assert torch.equal(second, fresh)
    assert not torch.equal(first, second)
    assert model._modulation_state.memo is None


def test_reference_time_modulation_is_computed_once_per_refresh_and_dropped_by_it(tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=1)
    reference = CopyReference(model)
    calls = _count_time_mlp_calls(reference.module)
    x0 = torch.randint(70, 120, (2, 5))
    frozen = torch.zeros_like(x0, dtype=torch.bool)
    prefix = model.build_prefix(None, batch_size=2)
    seeds = torch.tensor([1, 2])

    def noise():
        with reference.kernel() as kernel:
            return run_glauber_noising(kernel, prefix, x0, frozen, 5, seeds)

    before = noise()
    noise()
    assert len(calls) == 1
    with torch.no_grad():
        model.time_conditioning.modulation.weight.mul_(-5.0)
    reference.update(0.0)
    after = noise()
    assert len(calls) == 2
    expected = run_glauber_noising(copy.deepcopy(reference.module), prefix, x0, frozen, 5, seeds)
    torch.testing.assert_close(after.logq_new, expected.logq_new, atol=1e-5, rtol=0)
    assert not torch.allclose(after.logq_new, before.logq_new, atol=1e-3)


def test_a_noising_row_leaves_the_batch_after_its_last_step_and_computes_what_it_did_before(tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=2)
    x0 = torch.randint(70, 120, (3, 5), generator=torch.Generator().manual_seed(2))
    frozen = torch.zeros_like(x0, dtype=torch.bool)
    frozen[1, 0] = True
    prefix = model.build_prefix(None, batch_size=3)
    seeds, times = torch.tensor([4, 5, 6]), torch.tensor([[2, 3], [7, 1], [4, 10]])
    full = run_glauber_noising(model, prefix, x0, frozen, 10, seeds, times)
    batch_sizes = []
    infill = model.infill_logits
    model.infill_logits = lambda prefix, canvas, *args: batch_sizes.append(canvas.shape[0]) or infill(
        prefix, canvas, *args)
    last = times.max(dim=1).values
    short = run_glauber_noising(model, prefix, x0, frozen, 10, seeds, times, last_steps=last)
    assert batch_sizes == [3, 3, 3, 2, 2, 2, 2, 1, 1, 1]  # rows stop after steps 3, 7 and 10
    assert torch.equal(short.snapshots, full.snapshots)
    for b, stop in enumerate(last.tolist()):
        assert torch.equal(short.old_tokens[b, :stop], full.old_tokens[b, :stop])
        assert torch.equal(short.new_tokens[b, :stop], full.new_tokens[b, :stop])
        torch.testing.assert_close(short.logq_old[b, :stop], full.logq_old[b, :stop], atol=1e-5, rtol=0)
        assert not short.old_tokens[b, stop:].any()
    assert torch.equal(short.final[2], full.final[2])
