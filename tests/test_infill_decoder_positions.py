"""`infill_decoder_canvas_positions`: the MASK-INFILL decoder's sentinel carries the cell it asks for."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_glauber
from transformers import AutoModel, T5Config

from modeling_glauber import GlauberT5Config
from modeling_glauber.infill import infill_span_canvas_positions, infill_span_targets

FACTORS = [[0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]]  # a 2 × 3 canvas: row, column
CANVAS = torch.tensor([[40, 41, 42, 43, 44, 45], [50, 51, 52, 53, 54, 55]])
WINDOW = torch.tensor([[2, 4, 0], [5, 1, 3]])
VALID = torch.tensor([[True, True, True], [True, True, False]])
PEERS = dict(causal_order="random", canvas_position_factors=FACTORS, canvas_given_embedding=True,
             canvas_peer_attention=True, canvas_peer_attention_decoder=True, infill_reads_prompt=False)


def _randomise(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    modules = [model.canvas_factor_embeddings, model.canvas_peer_bias, model.canvas_decoder_peer_bias,
               model.canvas_cross_peer_bias]
    with torch.no_grad():
        for parameter in (p for m in modules for p in m.parameters()):
            parameter.normal_(generator=generator)


def _prefix(model):
    return model.build_prefix(None, batch_size=2, frozen_mask=torch.tensor([[False, True, False, False, False, False],
                                                                           [True, False, False, False, False, False]]))


def test_span_positions_put_each_slots_cell_on_its_sentinel_and_none_elsewhere():
    order = torch.tensor([[1, 0, 2], [0, 1, 2]])
    positions = infill_span_canvas_positions(WINDOW, VALID, order)
    ids, _ = infill_span_targets(CANVAS.gather(1, WINDOW), VALID, 0, [7, 8, 9], order)
    assert positions.shape == ids.shape
    assert positions.tolist() == [[-1, 4, -1, 2, -1, 0], [-1, 5, -1, 1, -1, -1]]
    assert ids[:, 1].tolist() == [8, 7]  # the sentinel of the slot each row asks for first


def test_annotated_decoder_starts_neutral_and_reads_the_cell_once_learned(tokenizer):
    plain = make_glauber("t5", tokenizer, **PEERS)
    cells = make_glauber("t5", tokenizer, **PEERS, infill_decoder_canvas_positions=True)
    cells.load_state_dict(plain.state_dict())
    window, valid = WINDOW[:, :2], VALID[:, :2]
    args = (CANVAS, window, valid, torch.tensor([0.3, 0.9]))
    with torch.no_grad():
        torch.testing.assert_close(cells.infill_logits(_prefix(cells), *args),
                                   plain.infill_logits(_prefix(plain), *args))
        _randomise(cells)
        plain.load_state_dict(cells.state_dict())
        got, without = cells.infill_logits(_prefix(cells), *args), plain.infill_logits(_prefix(plain), *args)
    assert (got - without).nan_to_num().abs().max() > 1e-3


def test_each_block_slot_is_the_training_forward_that_asks_for_that_slot_first(tokenizer):
    """Generation's decoder rows `[start, <extra_id_j>]` and stage 1's span decoders score slot j alike."""
    model = make_glauber("t5", tokenizer, **PEERS, infill_decoder_canvas_positions=True)
    _randomise(model)
    prefix, tau = _prefix(model), torch.tensor([0.3, 0.9])
    with torch.no_grad():
        block = model.infill_block_logits(prefix, CANVAS, WINDOW, VALID, tau, 2)
        for slot in range(2):
            order = torch.tensor([[slot, 1 - slot, 2]] * 2)
            inputs = model.infill_inputs(prefix, CANVAS, WINDOW, VALID, tau)
            inputs["decoder_input_ids"], _ = infill_span_targets(CANVAS.gather(1, WINDOW), VALID,
                                                                 model.config.decoder_start_id,
                                                                 model.config.sentinel_token_ids, order)
            inputs["decoder_canvas_positions"] = infill_span_canvas_positions(WINDOW, VALID, order)
            spans = model.content_logits(model(**inputs).logits[:, 1])
            torch.testing.assert_close(block[:, slot], spans, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.infill_logits(prefix, CANVAS, WINDOW, VALID, tau), block[:, 0])


def test_annotated_model_reloads_and_generates_alike_from_its_folder(tokenizer, tmp_path):
    model = make_glauber("t5", tokenizer, **PEERS, infill_decoder_canvas_positions=True, num_rounds=1, mask_window=2)
    _randomise(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True).eval()
    assert loaded.config.infill_decoder_canvas_positions
    frozen = torch.tensor([[True, False, False, False, False, True], [False, True, False, False, True, False]])
    canvas = torch.where(frozen, CANVAS, torch.zeros_like(CANVAS))
    outputs = [m.generate(canvas_ids=canvas, frozen_mask=frozen, seed=torch.tensor([0, 1]), num_rounds=1,
                          max_new_tokens=6) for m in (model, loaded)]
    assert torch.equal(*outputs)


def test_config_needs_a_position_table_for_the_annotated_decoder():
    with pytest.raises(ValueError, match="infill_decoder_canvas_positions needs canvas positions"):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), infill_decoder_canvas_positions=True)
    with pytest.raises(ValueError, match="infill_decoder_canvas_positions must be True or False"):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), canvas_position_factors=FACTORS,
                        infill_decoder_canvas_positions="yes")
