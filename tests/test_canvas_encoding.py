"""DESIGN §9 puzzle encoding: factorised canvas positions, the given marker, prompt positions, infill without prompt."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_glauber
from transformers import T5Config

from modeling_glauber import GlauberT5Config, GlauberT5ForDiffusion
from modeling_glauber.sampling import SamplingParams

# a 2 × 3 canvas: row and column factors
FACTORS = [[0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]]
CANVAS = torch.tensor([[40, 41, 42, 43, 44, 45], [50, 51, 52, 53, 54, 55]])
WINDOW, VALID = torch.tensor([2]), torch.tensor([True])


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(generator=generator)


def _both_modes(model, prefix, canvas=CANVAS):
    return model.causal_logits(prefix, canvas), model.infill_logits(prefix, canvas, WINDOW, VALID, 0.5)


def test_factor_tables_start_neutral_and_add_one_row_per_factor(tokenizer):
    plain = make_glauber("t5", tokenizer, causal_order="random")
    cells = make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS)
    assert [t.num_embeddings for t in cells.canvas_factor_embeddings] == [2, 3]
    cells.load_state_dict(plain.state_dict(), strict=False)
    prefix = cells.build_prefix(*tokenizer(["abc", "de"], return_tensors="pt", padding=True).values())
    for got, expected in zip(_both_modes(cells, prefix), _both_modes(plain, prefix)):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    _randomise(cells.canvas_factor_embeddings)
    rows, cols = (t.weight for t in cells.canvas_factor_embeddings)
    embedded = cells.canvas_embedding(torch.tensor([[4, -1]]))
    torch.testing.assert_close(embedded[0, 0], rows[1] + cols[1])
    assert torch.equal(embedded[0, 1], torch.zeros_like(embedded[0, 1]))
    for got, expected in zip(_both_modes(cells, prefix), _both_modes(plain, prefix)):
        assert (got - expected).nan_to_num().abs().max() > 1e-3
    # the KV-cached draft adds the factors exactly as teacher forcing does
    draft = cells.causal_draft(prefix, CANVAS, torch.zeros_like(CANVAS, dtype=torch.bool),
                               SamplingParams(do_sample=False), torch.tensor([0, 1]))
    order = cells.schedule(6).causal_order_positions
    assert torch.equal(cells.causal_logits(prefix, draft).argmax(-1), draft[:, order])


def test_given_marker_sits_on_the_frozen_canvas_cells_of_the_infill_only(tokenizer):
    model = make_glauber("t5", tokenizer, canvas_given_embedding=True)
    _randomise(model.canvas_given_embedding)
    frozen = torch.tensor([[True, False, False, False, False, True], [False] * 6])
    prefix = model.build_prefix(*tokenizer(["abc", "de"], return_tensors="pt", padding=True).values(),
                                frozen_mask=frozen)
    inputs = model.infill_inputs(prefix, CANVAS, WINDOW, VALID, 0.5)
    given = inputs["canvas_given"]
    assert torch.equal(given[:, -7:-1], frozen) and not bool(given[:, :-7].any()) and not bool(given[:, -1].any())
    unmarked = model.build_prefix(*tokenizer(["abc", "de"], return_tensors="pt", padding=True).values())
    marked_logits = model.infill_logits(prefix, CANVAS, WINDOW, VALID, 0.5)
    plain_logits = model.infill_logits(unmarked, CANVAS, WINDOW, VALID, 0.5)
    assert (marked_logits[0] - plain_logits[0]).nan_to_num().abs().max() > 1e-3  # row 0 has givens
    torch.testing.assert_close(marked_logits[1], plain_logits[1])  # row 1 has none
    assert "canvas_given" not in model.causal_inputs(prefix, CANVAS)


def test_infill_without_the_prompt_reads_only_the_canvas(tokenizer):
    model = make_glauber("t5", tokenizer, infill_reads_prompt=False)
    prompts = [tokenizer(["abc", "de"], return_tensors="pt", padding=True), tokenizer(["xyzw", "q"], return_tensors="pt", padding=True)]
    prefixes = [model.build_prefix(p.input_ids, p.attention_mask) for p in prompts]
    assert prefixes[0].infill_ids.shape[1] == int(model.config.r_mode_token_id is not None)
    causal = [model.causal_logits(p, CANVAS) for p in prefixes]
    infill = [model.infill_logits(p, CANVAS, WINDOW, VALID, 0.5) for p in prefixes]
    torch.testing.assert_close(infill[0], infill[1])
    assert (causal[0] - causal[1]).nan_to_num().abs().max() > 1e-3  # CAUSAL-GEN still reads the puzzle


def test_prompt_tokens_carry_the_canvas_position_they_describe(tokenizer):
    model = make_glauber("t5", tokenizer, canvas_position_factors=FACTORS, prompt_canvas_positions=True,
                         canvas_given_embedding=True, infill_reads_prompt=False)
    _randomise(model.canvas_factor_embeddings)
    _randomise(model.canvas_given_embedding, seed=1)
    grids = torch.tensor([[60, 61, 62, 63, 64, 65], [66, 67, 68, 69, 70, 71]])
    frozen = torch.tensor([[True, False, False, False, False, True], [False, True, False, False, False, False]])
    prefix = model.build_prefix(grids, frozen_mask=frozen)
    positions = model.causal_inputs(prefix, CANVAS)["canvas_positions"]
    assert positions[:, -7:-1].tolist() == [list(range(6))] * 2 and (positions[:, :-7] == -1).all()
    assert (positions[:, -1] == -1).all()
    # the draft's encoder sees the same embedded grid as teacher forcing; generate() stays batch-invariant
    draft = model.causal_draft(prefix, CANVAS, frozen, SamplingParams(do_sample=False), torch.tensor([0, 1]))
    order = model.schedule(6).causal_order_positions
    free = ~frozen[:, order]  # frozen cells are teacher-forced, the others greedy
    assert torch.equal(model.causal_logits(prefix, draft).argmax(-1)[free], draft[:, order][free])
    canvas = torch.where(frozen, CANVAS, torch.zeros_like(CANVAS))
    batch = model.generate(input_ids=grids, canvas_ids=canvas, frozen_mask=frozen, seed=[3, 4], num_rounds=1)
    alone = model.generate(input_ids=grids[1:], canvas_ids=canvas[1:], frozen_mask=frozen[1:], seed=4, num_rounds=1)
    assert torch.equal(batch[1:], alone) and torch.equal(batch[frozen], canvas[frozen])
    with pytest.raises(ValueError, match=r"prompt_canvas_positions needs a prompt of exactly one token per canvas"):
        model.generate(input_ids=grids[:, :5], canvas_ids=canvas, frozen_mask=frozen)


def test_factorised_model_reloads_with_its_tables(tokenizer, tmp_path):
    model = make_glauber("t5", tokenizer, causal_order="random", canvas_position_factors=FACTORS,
                         canvas_given_embedding=True, prompt_canvas_positions=True, infill_reads_prompt=False)
    _randomise(model.canvas_factor_embeddings)
    _randomise(model.canvas_given_embedding, seed=1)
    model.save_pretrained(tmp_path)
    loaded = GlauberT5ForDiffusion.from_pretrained(tmp_path)
    assert loaded.config.canvas_position_factors == FACTORS and not loaded.config.infill_reads_prompt
    grids = torch.tensor([[60, 61, 62, 63, 64, 65]])
    frozen = torch.tensor([[True, False, False, False, False, True]])
    canvas = torch.where(frozen, CANVAS[:1], torch.zeros_like(CANVAS[:1]))
    outputs = [m.generate(input_ids=grids, canvas_ids=canvas, frozen_mask=frozen, seed=0, num_rounds=1)
               for m in (model, loaded)]
    assert torch.equal(*outputs)


@pytest.mark.parametrize(
    ("value", "message"),
    [([[0, 1], [0, 1, 2]], "the same length"), ([[0, -1, 2]], r"canvas_position_factors\[0\] holds -1"),
     ([[]], r"canvas_position_factors\[0\] must be a non-empty list"), ([], "non-empty list of index lists")],
)
def test_config_rejects_factor_lists_that_do_not_describe_a_canvas(value, message):
    with pytest.raises(ValueError, match=message):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), canvas_position_factors=value)


def test_config_needs_a_position_table_for_prompt_positions():
    with pytest.raises(ValueError, match="prompt_canvas_positions needs canvas positions"):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), prompt_canvas_positions=True)


def test_generate_refuses_a_canvas_the_factors_do_not_cover(tokenizer):
    model = make_glauber("t5", tokenizer, canvas_position_factors=FACTORS)
    with pytest.raises(ValueError, match=r"L=5 positions, but canvas_position_factors describe a canvas of 6"):
        model.generate(max_new_tokens=5)
    with pytest.raises(ValueError, match=r"canvas positions < 6"):
        model.generate(max_new_tokens=7)


def test_words_naming_a_cell_carry_its_embedding_wherever_they_stand_in_either_mode(tokenizer, tmp_path):
    named = tokenizer.convert_tokens_to_ids(list("uvwxyz"))  # "u" names cell 0, …, "z" cell 5
    model = make_glauber("t5", tokenizer, canvas_position_factors=FACTORS, canvas_position_token_ids=named)
    ids, mask = tokenizer(["a z b u", "vv"], return_tensors="pt", padding=True).values()
    prefix = model.build_prefix(ids, mask)
    causal = model.causal_inputs(prefix, CANVAS)
    infill = model.infill_inputs(prefix, CANVAS, WINDOW, VALID, 0.5)

    def by_token(inputs, prompt_end=None):  # {token: canvas position} of the prompt's tokens that have one
        return [{tokenizer.convert_ids_to_tokens(int(t)): int(k) for t, k in zip(row_ids, row_positions) if k >= 0}
                for row_ids, row_positions in zip(inputs["input_ids"], inputs["canvas_positions"][:, :prompt_end])]

    assert by_token(causal) == [{"z": 5, "u": 0}, {"v": 1}]
    assert by_token(infill, prompt_end=-7) == [{"z": 5, "u": 0}, {"v": 1}]
    assert torch.equal(infill["canvas_positions"][:, -7:-1], torch.arange(6).expand(2, -1))
    _randomise(model.canvas_factor_embeddings)
    plain = make_glauber("t5", tokenizer, canvas_position_factors=FACTORS)
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(model.causal_logits(prefix, CANVAS), plain.causal_logits(prefix, CANVAS))
    model.save_pretrained(tmp_path)
    reloaded = GlauberT5ForDiffusion.from_pretrained(tmp_path)
    assert reloaded.config.canvas_position_token_ids == named
    torch.testing.assert_close(reloaded.causal_logits(prefix, CANVAS), model.causal_logits(prefix, CANVAS))


@pytest.mark.parametrize(
    ("fields", "message"),
    [(dict(canvas_position_token_ids=[5, 6]), "names 2 canvas positions, but the model embeds 0"),
     (dict(canvas_position_factors=FACTORS, canvas_position_token_ids=list(range(10, 17))), "names 7 canvas"),
     (dict(canvas_position_factors=FACTORS, canvas_position_token_ids=[5, 5]), "a different token id"),
     (dict(canvas_position_factors=FACTORS, canvas_position_token_ids=[-1]), "token ids >= 0")],
)
def test_config_rejects_position_words_it_cannot_embed(fields, message):
    with pytest.raises(ValueError, match=message):
        GlauberT5Config(backbone=T5Config(vocab_size=384).to_dict(), **fields)
