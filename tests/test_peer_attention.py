"""Peer attention bias (`canvas_peer_attention`): tokens of cells sharing a factor get β[f, h] on their score."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_glauber
from transformers import AutoModel, T5Config

from modeling_glauber import GlauberT5Config
from modeling_glauber.peer_attention import peer_attention_bias
from modeling_glauber.sampling import SamplingParams

FACTORS = [[0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]]  # a 2 × 3 canvas: row, column
CANVAS = torch.tensor([[40, 41, 42, 43, 44, 45], [50, 51, 52, 53, 54, 55]])
WINDOW, VALID = torch.tensor([2]), torch.tensor([True])


def _prefix(model, tokenizer):
    return model.build_prefix(*tokenizer(["abc", "de"], return_tensors="pt", padding=True).values())


def _both_modes(model, prefix):
    return model.causal_logits(prefix, CANVAS), model.infill_logits(prefix, CANVAS, WINDOW, VALID, 0.5)


def test_bias_adds_each_shared_factors_weight_and_nothing_for_tokens_without_a_cell():
    weight = torch.tensor([[1.0, 10.0], [100.0, 1000.0]])  # β[f, h]
    positions = torch.tensor([[0, 1, 3, -1]])
    bias = peer_attention_bias(positions, positions, torch.tensor(FACTORS), weight)
    assert bias.shape == (1, 2, 4, 4)
    # cells 0 and 1 share row 0; 0 and 3 share column 0; 1 and 3 share nothing; a cell shares both with itself
    expected_head0 = torch.tensor([[101.0, 1, 100, 0], [1, 101, 0, 0], [100, 0, 101, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(bias[0, 0], expected_head0)
    torch.testing.assert_close(bias[0, 1], expected_head0 * 10)
    cross = peer_attention_bias(torch.tensor([[4]]), positions, torch.tensor(FACTORS), weight)  # cell 4: row 1, col 1
    torch.testing.assert_close(cross[0, 0], torch.tensor([[0.0, 100, 1, 0]]))


def test_zero_initialised_bias_changes_nothing_until_it_is_learned(tokenizer):
    plain = make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS,
                         prompt_canvas_positions=True)
    peers = make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS,
                         prompt_canvas_positions=True, canvas_peer_attention=True)
    assert torch.equal(peers.canvas_peer_bias.weight, torch.zeros(2, 2))
    peers.load_state_dict(plain.state_dict(), strict=False)
    prompts = tokenizer(["abcdef", "ghijkl"], return_tensors="pt")
    prefix = peers.build_prefix(prompts.input_ids, prompts.attention_mask)
    for got, expected in zip(_both_modes(peers, prefix), _both_modes(plain, prefix)):
        torch.testing.assert_close(got, expected)
    with torch.no_grad():
        peers.canvas_peer_bias.weight.normal_(generator=torch.Generator().manual_seed(0))
    for got, expected in zip(_both_modes(peers, prefix), _both_modes(plain, prefix)):
        assert (got - expected).nan_to_num().abs().max() > 1e-3


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_every_encoder_layer_attends_to_peers_under_a_large_bias(tokenizer, implementation):
    model = make_glauber("t5", tokenizer, canvas_position_factors=FACTORS, canvas_peer_attention=True,
                         infill_reads_prompt=False)
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        model.canvas_peer_bias.weight[0, 0] = 50.0  # head 0 reads its row
    prefix = _prefix(model, tokenizer)
    inputs = model.infill_inputs(prefix, CANVAS, WINDOW, VALID, 1.0)
    positions = inputs["canvas_positions"]
    captured = []
    hooks = [block.layer[0].SelfAttention.register_forward_hook(
        lambda module, args, kwargs, out: captured.append(out[1]), with_kwargs=True)
        for block in model.backbone.get_encoder().block]
    try:
        model.infill_logits(prefix, CANVAS, WINDOW, VALID, 1.0)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(captured) == 2  # the bias each layer scored with
    row = torch.tensor(FACTORS[0])
    for bias in captured:
        for b in range(2):
            cells = (positions[b] >= 0).nonzero().flatten()
            rows = row[positions[b, cells]]
            same = rows.unsqueeze(1) == rows.unsqueeze(0)
            block = bias[b, 0][cells][:, cells]
            assert bool((block[same] > block[~same].max() + 40).all())


def test_gradient_reaches_the_bias_from_both_modes(tokenizer):
    model = make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS,
                         prompt_canvas_positions=True, canvas_peer_attention=True).train()
    prompts = tokenizer(["abcdef", "ghijkl"], return_tensors="pt")
    prefix = model.build_prefix(prompts.input_ids, prompts.attention_mask)
    for logits in _both_modes(model, prefix):
        model.zero_grad()
        logits.nan_to_num().logsumexp(-1).sum().backward()
        assert model.canvas_peer_bias.weight.grad.abs().sum() > 0


def test_peer_model_reloads_from_its_folder_alone(tokenizer, tmp_path):
    model = make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS,
                         prompt_canvas_positions=True, canvas_peer_attention=True)
    with torch.no_grad():
        model.canvas_peer_bias.weight.normal_(generator=torch.Generator().manual_seed(1))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "peer_attention.py").exists()
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True).eval()
    torch.testing.assert_close(loaded.canvas_peer_bias.weight, model.canvas_peer_bias.weight)
    grids = torch.tensor([[60, 61, 62, 63, 64, 65], [66, 67, 68, 69, 70, 71]])
    frozen = torch.tensor([[True, False, False, False, False, True], [False, True, False, False, True, False]])
    canvas = torch.where(frozen, CANVAS, torch.zeros_like(CANVAS))
    outputs = [m.generate(input_ids=grids, canvas_ids=canvas, frozen_mask=frozen, seed=torch.tensor([0, 1]),
                          num_rounds=1) for m in (model, loaded)]
    assert torch.equal(*outputs)
    alone = model.generate(input_ids=grids[1:], canvas_ids=canvas[1:], frozen_mask=frozen[1:], seed=torch.tensor([1]),
                           num_rounds=1)
    assert torch.equal(alone[0], outputs[0][1])  # a row's peer bias is its own inside a batch


def test_config_needs_factors_and_the_model_a_t5_backbone(tokenizer):
    with pytest.raises(ValueError, match="canvas_peer_attention needs canvas_position_factors"):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), canvas_peer_attention=True)
    with pytest.raises(ValueError, match="canvas_peer_attention_decoder needs canvas_peer_attention=True"):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), canvas_position_factors=FACTORS,
                        canvas_peer_attention_decoder=True)
    with pytest.raises(ValueError, match="canvas_peer_attention needs a T5 backbone"):
        make_glauber("t5gemma", tokenizer, canvas_position_factors=FACTORS, canvas_peer_attention=True)


def test_a_deep_copy_scores_with_its_own_bias(tokenizer):
    import copy

    model = make_glauber("t5", tokenizer, canvas_position_factors=FACTORS, canvas_peer_attention=True)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.canvas_peer_bias.weight.fill_(5.0)
    prefix = _prefix(model, tokenizer)
    copied, original = twin.infill_logits(prefix, CANVAS, WINDOW, VALID, 0.5), model.infill_logits(
        prefix, CANVAS, WINDOW, VALID, 0.5)
    assert (copied - original).nan_to_num().abs().max() > 1e-3
    with torch.no_grad():
        model.canvas_peer_bias.weight.fill_(5.0)
    torch.testing.assert_close(model.infill_logits(prefix, CANVAS, WINDOW, VALID, 0.5), copied)


def _draft_model(tokenizer, **kwargs):
    return make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS,
                        prompt_canvas_positions=True, canvas_peer_attention=True, **kwargs)


def test_decoder_biases_start_neutral_and_change_only_the_draft(tokenizer):
    encoder_only = _draft_model(tokenizer)
    both = _draft_model(tokenizer, canvas_peer_attention_decoder=True)
    assert not both.canvas_decoder_peer_bias.weight.any() and not both.canvas_cross_peer_bias.weight.any()
    both.load_state_dict(encoder_only.state_dict(), strict=False)
    prompts = tokenizer(["abcdef", "ghijkl"], return_tensors="pt")
    prefix = both.build_prefix(prompts.input_ids, prompts.attention_mask)
    for got, expected in zip(_both_modes(both, prefix), _both_modes(encoder_only, prefix)):
        torch.testing.assert_close(got, expected)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for table in (both.canvas_decoder_peer_bias, both.canvas_cross_peer_bias):
            table.weight.normal_(generator=generator)
    causal, infill = _both_modes(both, prefix)
    assert (causal - _both_modes(encoder_only, prefix)[0]).nan_to_num().abs().max() > 1e-3
    torch.testing.assert_close(infill, _both_modes(encoder_only, prefix)[1])  # the infill decoder holds no cell


def test_kv_cached_draft_reads_the_decoder_biases_as_teacher_forcing_does(tokenizer):
    model = _draft_model(tokenizer, canvas_peer_attention_decoder=True)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for table in (model.canvas_peer_bias, model.canvas_decoder_peer_bias, model.canvas_cross_peer_bias):
            table.weight.copy_(torch.randn(table.weight.shape, generator=generator) * 3)
    prompts = tokenizer(["abcdef", "ghijkl"], return_tensors="pt")
    prefix = model.build_prefix(prompts.input_ids, prompts.attention_mask)
    draft = model.causal_draft(prefix, CANVAS, torch.zeros_like(CANVAS, dtype=torch.bool),
                               SamplingParams(do_sample=False), torch.tensor([0, 1]))
    order = model.schedule(6).causal_order_positions
    assert torch.equal(model.causal_logits(prefix, draft).argmax(-1), draft[:, order])


def test_gradient_reaches_the_decoder_biases_from_the_causal_mode(tokenizer):
    model = _draft_model(tokenizer, canvas_peer_attention_decoder=True).train()
    prompts = tokenizer(["abcdef", "ghijkl"], return_tensors="pt")
    prefix = model.build_prefix(prompts.input_ids, prompts.attention_mask)
    model.causal_logits(prefix, CANVAS).nan_to_num().logsumexp(-1).sum().backward()
    for table in (model.canvas_peer_bias, model.canvas_decoder_peer_bias, model.canvas_cross_peer_bias):
        assert table.weight.grad.abs().sum() > 0
