"""GlauberT5ForDiffusion: identity at conversion, the two modes, generate() and its guarantees."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import BACKBONES, make_glauber

from modeling_glauber import GlauberT5ForDiffusion, get_schedule
from modeling_glauber.infill import infill_encoder_inputs, mask_canvas
from modeling_glauber.sampling import SamplingParams
from modeling_glauber.schedule import sample_loss_times


@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_converted_model_computes_the_backbone_at_every_time(kind, tokenizer, tmp_path):
    backbone = BACKBONES[kind](seed=3)
    reference = copy.deepcopy(backbone)
    model = GlauberT5ForDiffusion.from_backbone(backbone, tokenizer, num_rounds=2).eval()
    enc = tokenizer(["a prompt", "b"], return_tensors="pt", padding=True)
    dec = torch.tensor([[0, 50, 60, 70], [0, 80, 90, 100]])
    expected = reference(**enc, decoder_input_ids=dec).logits
    for tau in (0.0, 0.01, 0.5, 1.0):
        got = model(**enc, decoder_input_ids=dec, timesteps=tau).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the zero projection survives post_init() and a load of the backbone checkpoint from disk
    model.post_init()
    torch.testing.assert_close(model(**enc, decoder_input_ids=dec, timesteps=0.3).logits, expected, atol=1e-5, rtol=0)
    reference.save_pretrained(tmp_path / "backbone")
    loaded = GlauberT5ForDiffusion.from_backbone(str(tmp_path / "backbone"), tokenizer).eval()
    assert float(loaded.time_conditioning.modulation.weight.detach().abs().max()) == 0.0
    torch.testing.assert_close(loaded(**enc, decoder_input_ids=dec, timesteps=0.7).logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_gradient_checkpointing_gives_the_gradients_of_a_plain_backward(kind, use_reentrant):
    """Recomputed blocks run after the forward's time context has closed; they must still see its τ."""
    ids, dec = torch.randint(3, 200, (2, 6)), torch.randint(3, 200, (2, 4))
    grads = []
    for checkpointing in (False, True):
        model = make_glauber(kind).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
            assert model.is_activation_checkpointing
        out = model(input_ids=ids, decoder_input_ids=dec, timesteps=torch.tensor([0.3, 0.7]), labels=dec)
        out.loss.backward()
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    assert grads[1].keys() == grads[0].keys()
    assert any(name.startswith("time_conditioning.") for name in grads[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_modulation_state_is_per_thread():
    """nn.DataParallel runs its replicas, which share the state object, in concurrent threads."""
    import threading

    from modeling_glauber.time_conditioning import ModulationState

    state, barrier, seen = ModulationState(), threading.Barrier(2), {}

    def replica(name: str, value: float) -> None:
        with state.use(torch.tensor([value])):
            barrier.wait()  # both threads are inside their own `use` before either reads
            seen[name] = float(state.current)
            barrier.wait()

    threads = [threading.Thread(target=replica, args=(f"r{i}", float(i))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"r0": 0.0, "r1": 1.0}
    assert state.current is None


def test_time_conditioning_changes_outputs_once_trained(t5_model, tokenizer):
    enc = tokenizer(["abc"], return_tensors="pt")
    dec = torch.tensor([[0, 50]])
    early = t5_model(**enc, decoder_input_ids=dec, timesteps=0.1).logits
    late = t5_model(**enc, decoder_input_ids=dec, timesteps=0.9).logits
    assert (early - late).abs().max() > 1e-3


def test_parameter_overhead_is_reported(t5_model):
    overhead = t5_model.time_conditioning_overhead()
    norms = 2 * 2 + 1 + 2 * 3 + 1  # T5: 2 per encoder block + final, 3 per decoder block + final
    projection = (256 + 1) * 2 * 32 * norms
    mlp = (256 * 256 + 256) * 2
    assert overhead["time_parameters"] == projection + mlp
    assert overhead["overhead"] == pytest.approx(overhead["time_parameters"] / overhead["backbone_parameters"])


def test_infill_encoding_puts_sentinels_where_the_design_says(t5_model, tokenizer):
    model = t5_model
    sentinels = torch.tensor(model.config.sentinel_token_ids)
    assert tokenizer.convert_ids_to_tokens(sentinels[:2].tolist()) == ["<extra_id_0>", "<extra_id_1>"]
    canvas = torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    window = torch.tensor([3, 1])
    valid = torch.tensor([[True, True], [True, False]])
    masked = mask_canvas(canvas, window, valid, sentinels)
    assert masked.tolist() == [[10, sentinels[1], 12, sentinels[0], 14], [20, 21, 22, sentinels[0], 24]]
    prefix = model.build_prefix(*tokenizer(["xy", "z"], return_tensors="pt", padding=True).values())
    ids, mask = infill_encoder_inputs(prefix, canvas, window, valid, sentinels, model.config.eos_id)
    # [R-mode omitted: ByT5 has no UL2 tokens] + P (left-padded) + masked canvas + </s>
    x, y, z = (tokenizer.convert_tokens_to_ids(c) for c in "xyz")
    assert ids[0].tolist() == [x, y] + masked[0].tolist() + [1]
    assert ids[1].tolist() == [0, z] + masked[1].tolist() + [1]
    assert mask[1].tolist() == [0, 1] + [1] * 6


def test_mode_tokens_lead_each_mode(tokenizer):
    model = make_glauber("t5", tokenizer)
    model.config.r_mode_token_id, model.config.s_mode_token_id = 300, 301
    prefix = model.build_prefix(torch.tensor([[5, 6, 1]]))  # a tokenizer's trailing </s> is dropped
    assert prefix.infill_ids.tolist() == [[300, 5, 6]] and prefix.causal_ids.tolist() == [[301, 5, 6]]


def test_schedule_is_fixed_permutations_and_normalised_time():
    schedule = get_schedule(6, 3, permutation_seed=7, causal_order="random")
    again = get_schedule(6, 3, permutation_seed=7, causal_order="random")
    assert torch.equal(schedule.positions, again.positions)
    assert schedule.total_steps == 18
    for n in range(3):
        assert sorted(schedule.positions[6 * n : 6 * (n + 1)].tolist()) == list(range(6))
    assert sorted(schedule.causal_order_positions.tolist()) == list(range(6))
    assert float(schedule.tau(9)) == pytest.approx(0.5)
    windows, valid = schedule.window(3)
    assert windows[10].tolist() == [schedule.positions[i].item() for i in (10, 9, 8)]
    assert valid[0].tolist() == [True, False, False]
    assert get_schedule(6, 3, 0, "identity").causal_order_positions.tolist() == list(range(6))


@pytest.mark.parametrize("total, per_chain", [(12, 5), (48, 8), (7, 16)])
def test_loss_times_follow_their_sampling_law(total, per_chain):
    """Stratified times are exactly uniform on 1 … T; the paper's t_max ladder has the law it is documented to."""
    rows = 40_000
    generator = torch.Generator().manual_seed(0)
    stratified = sample_loss_times(total, per_chain, rows, "stratified", generator)
    assert stratified.shape == (rows, per_chain)
    assert int(stratified.min()) >= 1 and int(stratified.max()) <= total
    # term j stays in its stratum [j·T/K, (j+1)·T/K) (shifted by one)
    j = torch.arange(per_chain)
    assert bool(((stratified - 1) * per_chain >= j * total - per_chain).all())
    assert bool(((stratified - 1) * per_chain < (j + 1) * total).all())
    frequency = torch.bincount(stratified.flatten(), minlength=total + 1)[1:].double() / stratified.numel()
    torch.testing.assert_close(frequency, torch.full((total,), 1.0 / total, dtype=torch.float64), atol=3e-3, rtol=0)

    ladder = sample_loss_times(total, per_chain, rows, "t_max", generator)
    exact = torch.zeros(total + 1, dtype=torch.float64)
    for t_max in range(1, total + 1):
        for step in range(1, per_chain + 1):
            exact[-(-step * t_max // per_chain)] += 1.0 / (total * per_chain)
    frequency = torch.bincount(ladder.flatten(), minlength=total + 1).double() / ladder.numel()
    torch.testing.assert_close(frequency, exact, atol=3e-3, rtol=0)
    assert exact[1] > 2 * exact[total]
    with pytest.raises(ValueError, match="timestep_sampling must be one of"):
        sample_loss_times(total, per_chain, 2, "uniform", generator)


def test_causal_draft_with_cache_equals_teacher_forced_causal_gen(tokenizer):
    for order in ("identity", "random"):
        model = make_glauber("t5", tokenizer, causal_order=order)
        prefix = model.build_prefix(*tokenizer(["first prompt", "2nd"], return_tensors="pt", padding=True).values())
        canvas = torch.zeros((2, 7), dtype=torch.long)
        frozen = torch.zeros_like(canvas, dtype=torch.bool)
        greedy = SamplingParams(do_sample=False)
        draft = model.causal_draft(prefix, canvas, frozen, greedy, torch.tensor([0, 1]))
        # the same tokens maximise the uncached, teacher-forced logits at every step
        logits = model.causal_logits(prefix, draft)
        order_positions = model.schedule(7).causal_order_positions
        assert torch.equal(logits.argmax(-1), draft[:, order_positions])
        # and log-likelihood of a sampled draft is finite and below 0
        loglik = model.causal_log_likelihood(prefix, draft)
        assert torch.isfinite(loglik).all() and (loglik < 0).all()


@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_canvas_position_embedding_starts_neutral_then_tells_each_mode_its_cells(kind, tokenizer, tmp_path, caplog):
    plain = make_glauber(kind, tokenizer, causal_order="random")
    with caplog.at_level("WARNING"):
        cells = make_glauber(kind, tokenizer, causal_order="random", canvas_position_embeddings=6)
    width = cells.get_input_embeddings().embedding_dim
    assert f"canvas embeddings ({6 * width} parameters, zero)" in caplog.text
    assert cells.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["canvas_position_embedding.weight"]
    prefix = cells.build_prefix(*tokenizer(["abc", "de"], return_tensors="pt", padding=True).values())
    canvas = torch.tensor([[40, 41, 42, 43, 44, 45], [50, 51, 52, 53, 54, 55]])
    window, valid = torch.tensor([2]), torch.tensor([True])

    def both_modes(model):
        return model.causal_logits(prefix, canvas), model.infill_logits(prefix, canvas, window, valid, 0.5)

    # zero-initialised: the converted model computes what it did without the table
    for got, expected in zip(both_modes(cells), both_modes(plain)):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        cells.canvas_position_embedding.weight.normal_(generator=torch.Generator().manual_seed(0))
    for got, expected in zip(both_modes(cells), both_modes(plain)):
        assert (got - expected).nan_to_num().abs().max() > 1e-3  # suppressed tokens are -inf in both
    # the infill encoder marks exactly the canvas tokens, cell k with k
    positions = cells.infill_inputs(prefix, canvas, window, valid, 0.5)["canvas_positions"]
    assert positions[:, -7:-1].tolist() == [list(range(6))] * 2 and (positions[:, :-7] == -1).all()
    assert (positions[:, -1] == -1).all()
    # the KV-cached draft writes with the same positions as teacher forcing
    frozen = torch.zeros_like(canvas, dtype=torch.bool)
    draft = cells.causal_draft(prefix, canvas, frozen, SamplingParams(do_sample=False), torch.tensor([0, 1]))
    order = cells.schedule(6).causal_order_positions
    assert torch.equal(cells.causal_logits(prefix, draft).argmax(-1), draft[:, order])
    # without a prompt the infill prefix is empty and `</s>` still gets its own (empty) position
    unconditional = cells.generate(max_new_tokens=6, num_rounds=1, seed=0, return_dict_in_generate=True)
    assert unconditional.sequences.shape == (1, 6) and unconditional.num_model_calls == 12
    # saved and reloaded with its table
    cells.save_pretrained(tmp_path / "cells")
    loaded = GlauberT5ForDiffusion.from_pretrained(tmp_path / "cells").eval()
    assert loaded.config.canvas_position_embeddings == 6
    for got, expected in zip(both_modes(loaded), both_modes(cells)):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_cached_decoder_logits_match_uncached(tokenizer):
    model = make_glauber("t5gemma", tokenizer)
    prefix = model.build_prefix(*tokenizer(["abc"], return_tensors="pt").values())
    canvas = torch.tensor([[40, 41, 42, 43]])
    full = model.causal_logits(prefix, canvas)
    from modeling_glauber.infill import causal_encoder_inputs

    ids, mask = causal_encoder_inputs(prefix, model.config.eos_id)
    tokens = torch.cat([torch.tensor([[model.config.decoder_start_id]]), canvas[:, :-1]], dim=1)
    with torch.no_grad(), model.modulation(torch.ones(1)):
        enc = model.backbone.get_encoder()(input_ids=ids, attention_mask=mask)
        cache, steps = None, []
        for j in range(4):
            out = model.backbone(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=tokens[:, j : j + 1],
                                 cache=cache, use_cache=True)
            cache = out.cache
            steps.append(model.content_logits(out.logits[:, -1]))
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_generate_with_zero_rounds_returns_the_causal_draft(t5_model, tokenizer):
    enc = tokenizer(["hello", "a longer prompt"], return_tensors="pt", padding=True)
    zero = t5_model.generate(**enc, max_new_tokens=6, num_rounds=0, seed=5, return_dict_in_generate=True)
    two = t5_model.generate(**enc, max_new_tokens=6, num_rounds=2, seed=5, return_dict_in_generate=True)
    assert torch.equal(zero.sequences, zero.draft_sequences)
    assert torch.equal(zero.sequences, two.draft_sequences)
    assert not torch.equal(two.sequences, two.draft_sequences)
    assert zero.num_model_calls == 6


def test_refining_a_given_canvas_repeats_the_refinement_of_a_draft_at_n_times_l_calls(t5_model, tokenizer):
    enc = tokenizer(["hello", "a longer prompt"], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=6, num_rounds=2, seed=5, return_dict_in_generate=True)
    drafted = t5_model.generate(**enc, **kwargs)
    calls = {"n": 0}
    hook = t5_model.backbone.decoder.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    given = t5_model.generate(**enc, canvas_ids=drafted.draft_sequences, start="canvas", **kwargs)
    hook.remove()
    # the refinement's draws are counter-based per (row seed, step), so x_T given or drafted makes no difference
    assert torch.equal(given.sequences, drafted.sequences)
    assert torch.equal(given.draft_sequences, drafted.draft_sequences)
    assert given.num_model_calls == 2 * 6 == calls["n"]
    kept = t5_model.generate(**enc, canvas_ids=drafted.sequences, start="canvas", **{**kwargs, "num_rounds": 0})
    assert torch.equal(kept.sequences, drafted.sequences) and kept.num_model_calls == 0


def test_a_uniform_start_keeps_frozen_positions_and_follows_the_seed(t5_model):
    canvas = torch.tensor([[50, 51, 52, 53, 54, 55]] * 2)
    frozen = torch.tensor([[1, 0, 0, 0, 0, 1]] * 2, dtype=torch.bool)
    kwargs = dict(canvas_ids=canvas, frozen_mask=frozen, start="uniform", num_rounds=0, return_dict_in_generate=True)
    out = t5_model.generate(seed=[1, 2], **kwargs)
    assert torch.equal(out.sequences[frozen], canvas[frozen]) and out.num_model_calls == 0
    assert not torch.equal(out.sequences[0], out.sequences[1])
    assert not t5_model.suppress_mask[out.sequences].any()
    assert torch.equal(t5_model.generate(seed=[2], **{**kwargs, "canvas_ids": canvas[:1], "frozen_mask": frozen[:1]})
                       .sequences[0], out.sequences[1])


def test_an_unknown_start_is_refused_naming_the_allowed_ones(t5_model):
    with pytest.raises(ValueError, match=r"start must be one of \('draft', 'uniform', 'canvas'\), got 'noise'"):
        t5_model.generate(max_new_tokens=3, start="noise")
    with pytest.raises(ValueError, match="start='canvas' needs canvas_ids"):
        t5_model.generate(max_new_tokens=3, start="canvas")
    padded = torch.tensor([[50, t5_model.config.pad_id, 52]])
    with pytest.raises(ValueError, match="1 of its free positions hold tokens the model cannot emit"):
        t5_model.generate(canvas_ids=padded, start="canvas")
    frozen = torch.tensor([[False, True, False]])  # a frozen pad is never read as a value to refine
    assert t5_model.generate(canvas_ids=padded, frozen_mask=frozen, start="canvas", num_rounds=0).shape == (1, 3)


@pytest.mark.parametrize("rounds", [1, 2])
def test_generate_costs_n_plus_one_times_l_model_calls(t5_model, tokenizer, rounds):
    calls = {"n": 0}
    hook = t5_model.backbone.decoder.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    out = t5_model.generate(max_new_tokens=5, num_rounds=rounds, seed=0, return_dict_in_generate=True)
    hook.remove()
    assert out.num_model_calls == (rounds + 1) * 5 == calls["n"]
    assert out.sequences.shape == (1, 5)


def test_generated_tokens_are_content_tokens(t5_model, tokenizer):
    out = t5_model.generate(max_new_tokens=12, num_rounds=2, seed=1, temperature=3.0, return_dict_in_generate=True)
    assert not t5_model.suppress_mask[out.sequences].any()
    assert not t5_model.suppress_mask[out.draft_sequences].any()


def test_frozen_positions_never_change_and_are_skipped(t5_model, tokenizer):
    canvas = torch.tensor([[50, 51, 52, 53, 54, 55], [60, 61, 62, 63, 64, 65]])
    frozen = torch.tensor([[1, 0, 1, 0, 1, 0], [1, 0, 0, 0, 1, 1]], dtype=torch.bool)
    out = t5_model.generate(
        canvas_ids=canvas, frozen_mask=frozen, num_rounds=2, seed=3, return_dict_in_generate=True, output_trajectory=True
    )
    for state in out.trajectory:
        assert torch.equal(state[frozen], canvas[frozen])
    assert out.trajectory.shape == (3, 2, 6)
    # positions 0 and 4 are frozen in every row: their 2 refinement steps per round are skipped
    assert out.num_model_calls == 6 + 2 * (6 - 2)


def test_trajectory_holds_the_canvas_after_each_round_when_a_round_ends_on_a_frozen_step(tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=2)
    length = 4
    positions = model.schedule(length).positions.tolist()
    frozen = torch.zeros((1, length), dtype=torch.bool)
    frozen[0, positions[length]] = True  # k_{L+1}: the last step of the reverse pass's first round
    seen = []
    infill = model.infill_block_logits

    def recording(prefix, canvas, *args):
        seen.append(canvas.clone())
        return infill(prefix, canvas, *args)

    model.infill_block_logits = recording
    out = model.generate(
        canvas_ids=torch.full((1, length), 100), frozen_mask=frozen, seed=0, return_dict_in_generate=True,
        output_trajectory=True,
    )
    # the frozen cell is skipped once per round; the first round (t = 2L … L+1, its last step skipped) ends with
    # the canvas that the call for t = L receives, the (L-1)-th call
    assert len(seen) == 2 * (length - 1)
    assert torch.equal(out.trajectory[0], out.draft_sequences)
    assert torch.equal(out.trajectory[1], seen[length - 1])
    assert torch.equal(out.trajectory[2], out.sequences)
    assert not torch.equal(out.trajectory[1], out.trajectory[2])


def test_a_row_does_not_depend_on_the_rest_of_its_batch(t5_model, tokenizer):
    prompts = ["the quick", "a much longer prompt than the others", "x", "brown fox jumps"]
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=8, num_rounds=2, top_p=0.9, temperature=1.3)
    batch = t5_model.generate(**enc, seed=[11, 12, 13, 14], return_dict_in_generate=True, **kwargs)
    for row in (0, 2):
        alone = tokenizer([prompts[row]], return_tensors="pt")
        single = t5_model.generate(**alone, seed=[11 + row], return_dict_in_generate=True, **kwargs)
        assert torch.equal(single.sequences[0], batch.sequences[row])
        assert torch.equal(single.draft_sequences[0], batch.draft_sequences[row])
    # an int seed gives row i the seed + i; the same seed repeats the same output
    again = t5_model.generate(**enc, seed=11, **kwargs)
    assert torch.equal(again, batch.sequences)
    # without an attention mask the pad tokens are still padding
    assert torch.equal(t5_model.generate(input_ids=enc.input_ids, seed=11, **kwargs), batch.sequences)


def test_unconditional_batches_give_each_row_its_own_sample(t5_model):
    out = t5_model.generate(max_new_tokens=6, batch_size=3, seed=0)
    assert out.shape == (3, 6)
    assert len({tuple(row) for row in out.tolist()}) == 3
    assert torch.equal(out[1], t5_model.generate(max_new_tokens=6, seed=1)[0])


def test_greedy_generation_is_argmax_everywhere(t5_model, tokenizer):
    a = t5_model.generate(max_new_tokens=5, do_sample=False, seed=0)
    b = t5_model.generate(max_new_tokens=5, do_sample=False, seed=99)
    assert torch.equal(a, b)


def test_top_k_one_equals_greedy(t5_model):
    greedy = t5_model.generate(max_new_tokens=5, do_sample=False)
    top1 = t5_model.generate(max_new_tokens=5, top_k=1, seed=4)
    assert torch.equal(greedy, top1)


def test_per_mode_sampling_overrides(t5_model):
    greedy = t5_model.generate(max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    # Hugging Face's conventions: greedy ignores the temperature, top_k=0 filters nothing
    assert torch.equal(t5_model.generate(max_new_tokens=5, do_sample=False, temperature=0.0), greedy.sequences)
    assert torch.equal(t5_model.generate(max_new_tokens=5, top_k=0, seed=3), t5_model.generate(max_new_tokens=5, seed=3))
    mixed = t5_model.generate(
        max_new_tokens=5, seed=0, draft_sampling={"do_sample": False}, return_dict_in_generate=True
    )
    assert torch.equal(greedy.draft_sequences, mixed.draft_sequences)


def test_generation_config_and_hf_kwargs_are_accepted(t5_model, tmp_path):
    from transformers import GenerationConfig

    greedy4 = t5_model.generate(max_new_tokens=4, do_sample=False)
    config = GenerationConfig(max_new_tokens=4, do_sample=False)
    out = t5_model.generate(generation_config=config, use_cache=True, pad_token_id=0, eos_token_id=1)
    assert torch.equal(out, greedy4)
    # the model's own generation_config gives the defaults; arguments and a passed config win over it
    t5_model.generation_config.max_new_tokens = 5
    t5_model.generation_config.do_sample = False
    assert torch.equal(t5_model.generate(), t5_model.generate(max_new_tokens=5, do_sample=False))
    assert torch.equal(t5_model.generate(generation_config=config), greedy4)
    assert t5_model.generate(max_new_tokens=3, return_dict_in_generate=True).sequences.shape == (1, 3)
    t5_model.save_pretrained(tmp_path)
    assert GlauberT5ForDiffusion.from_pretrained(tmp_path).generation_config.max_new_tokens == 5
    # what the sampler cannot honour is refused, not dropped, wherever it is set
    for refused, match in ((dict(num_return_sequences=3), "num_return_sequences"), (dict(num_beams=4), "num_beams"),
                           (dict(repetition_penalty=1.2), "repetition_penalty"), (dict(max_length=9), "max_length")):
        with pytest.raises(ValueError, match=match):
            t5_model.generate(generation_config=GenerationConfig(**refused))
    with pytest.raises(TypeError, match="the canvas length is max_new_tokens"):
        t5_model.generate(max_length=9)


def test_unk_stays_emittable_so_text_the_tokenizer_cannot_spell_has_a_finite_likelihood(tokenizer):
    model = make_glauber("t5", tokenizer)
    unk, eos = tokenizer.unk_token_id, tokenizer.eos_token_id
    assert unk not in model.config.suppressed_token_ids and eos in model.config.suppressed_token_ids
    prefix = model.build_prefix(tokenizer(["abc"], return_tensors="pt").input_ids)
    logp = model.causal_log_likelihood(prefix, torch.tensor([[100, unk, 101]]))
    assert bool(torch.isfinite(logp).all())


def test_without_a_tokenizer_the_sentinels_follow_the_t5_vocabulary(tokenizer, tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    # T5 / Flan-T5 / UL2: 32,100 SentencePiece tokens padded to 32,128 rows; <extra_id_0> is 32099
    hub_shaped = T5ForConditionalGeneration(T5Config(vocab_size=32128, d_model=8, d_kv=4, d_ff=8, num_layers=1,
                                                     num_heads=2, decoder_start_token_id=0))
    model = GlauberT5ForDiffusion.from_backbone(hub_shaped)
    assert model.config.sentinel_token_ids[:3] == [32099, 32098, 32097]
    assert model.config.suppressed_token_ids == [0, 1] + list(range(32100, 32128))
    # a directory (or Hub id) brings its own tokenizer
    make_glauber("t5", tokenizer).backbone.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    from_dir = GlauberT5ForDiffusion.from_backbone(str(tmp_path))
    assert from_dir.config.sentinel_token_ids == make_glauber("t5", tokenizer).config.sentinel_token_ids
    assert from_dir.config.suppressed_token_ids == make_glauber("t5", tokenizer).config.suppressed_token_ids


def test_tokenizer_without_sentinels_gets_them_added_and_embeddings_resized(caplog):
    from tiny_models import tokenizer_without_sentinels
    from transformers import T5GemmaConfig, T5GemmaForConditionalGeneration

    tok = tokenizer_without_sentinels()
    module = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, vocab_size=len(tok))
    torch.manual_seed(0)
    backbone = T5GemmaForConditionalGeneration(
        T5GemmaConfig(encoder=dict(module), decoder=dict(module), pad_token_id=0, eos_token_id=1, bos_token_id=2)
    )
    with caplog.at_level("WARNING"):
        model = GlauberT5ForDiffusion.from_backbone(backbone, tok, mask_window=3)
    assert "had no sentinels" in caplog.text
    assert tok.convert_ids_to_tokens(model.config.sentinel_token_ids[:3]) == [f"<extra_id_{i}>" for i in range(3)]
    assert model.config.vocab_size == len(tok) == 44 + 8
    assert model.get_input_embeddings().weight.shape[0] == model.get_output_embeddings().weight.shape[0] == 52
    assert model.config.decoder_start_id == 2  # T5-Gemma starts the decoder with bos
    out = model.generate(**tok(["w1 w2"], return_tensors="pt"), max_new_tokens=4, seed=0)
    assert out.shape == (1, 4) and not model.suppress_mask[out].any()
