"""Bad input gets a clear error naming the argument, and changes nothing."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from tiny_models import make_glauber, tiny_t5
from transformers import AutoModel, GenerationConfig, T5Config

from modeling_glauber import GlauberT5Config

L = 5
CANVAS = torch.full((2, L), 50)


def _generate_cases(tokenizer):
    ids = tokenizer(["ab", "c"], return_tensors="pt", padding=True)
    return [
        ("num_rounds", dict(max_new_tokens=L, num_rounds=-1)),
        ("num_rounds", dict(max_new_tokens=L, num_rounds=3)),
        ("mask_window", dict(max_new_tokens=L, mask_window=0)),
        ("mask_window", dict(max_new_tokens=L, mask_window=L + 1)),
        ("max_new_tokens", dict(max_new_tokens=0)),
        ("max_new_tokens", dict(max_new_tokens=None)),
        ("input_ids", dict(input_ids=torch.tensor([[5, 999]]), max_new_tokens=L)),
        ("input_ids", dict(input_ids=torch.tensor([5, 6]), max_new_tokens=L)),
        ("canvas_ids", dict(canvas_ids=torch.tensor([[5, -1, 5, 5, 5]]))),
        ("attention_mask", dict(input_ids=ids.input_ids, attention_mask=ids.attention_mask[:, :1], max_new_tokens=L)),
        ("top_p", dict(max_new_tokens=L, top_p=0.0)),
        ("top_p", dict(max_new_tokens=L, top_p=1.5)),
        ("temperature", dict(max_new_tokens=L, temperature=-1.0)),
        ("top_k", dict(max_new_tokens=L, top_k=-1)),
        ("input_ids must be an integer tensor", dict(input_ids=ids.input_ids.float(), max_new_tokens=L)),
        ("pass generation_config= by keyword", dict(input_ids=ids.input_ids, attention_mask=GenerationConfig())),
        ("temperature must be a number > 0 when sampling", dict(max_new_tokens=L, temperature=0.0)),
        ("refine_sampling: top_p", dict(max_new_tokens=L, refine_sampling={"top_p": 2.0})),
        ("frozen_mask", dict(canvas_ids=CANVAS, frozen_mask=torch.ones((2, L + 1), dtype=torch.bool))),
        ("frozen_mask", dict(canvas_ids=CANVAS, frozen_mask=torch.ones((2, L), dtype=torch.bool))),
        ("frozen_mask", dict(max_new_tokens=L, frozen_mask=torch.zeros((1, L), dtype=torch.bool))),
        ("max_new_tokens", dict(canvas_ids=CANVAS, max_new_tokens=L + 2)),
        ("seed", dict(max_new_tokens=L, seed=[1, 2, 3])),
        ("num_beams", dict(max_new_tokens=L, num_beams=4)),
        ("unexpected keyword", dict(max_new_tokens=L, length_penalty=2.0)),
        ("input_ids has 2 rows", dict(input_ids=ids.input_ids, canvas_ids=CANVAS[:1])),
        ("draft_sampling", dict(max_new_tokens=L, draft_sampling={"beam": 2})),
        ("batch_size", dict(max_new_tokens=L, batch_size=0)),
        ("batch_size", dict(input_ids=ids.input_ids, max_new_tokens=L, batch_size=2)),
    ]


def test_bad_generate_arguments_raise_clear_errors_without_side_effects(tokenizer):
    model = make_glauber("t5", tokenizer, num_rounds=2, mask_window=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cases = _generate_cases(tokenizer)
    assert len(cases) >= 15
    for needle, kwargs in cases:
        rng = torch.get_rng_state()
        with pytest.raises((ValueError, TypeError)) as info:
            model.generate(**kwargs)
        assert needle in str(info.value), (needle, str(info.value))
        assert torch.equal(rng, torch.get_rng_state()), needle
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    # the config's w = 2 on a one-token canvas masks that token alone; an explicit w = 2 is refused
    assert model.generate(max_new_tokens=1, seed=0).shape == (1, 1)
    with pytest.raises(ValueError, match=r"mask_window must be an integer in \[1, 1\]"):
        model.generate(max_new_tokens=1, mask_window=2)


def test_prompt_plus_canvas_longer_than_the_backbone_allows(tokenizer):
    model = make_glauber("t5gemma", tokenizer)
    limit = model.config.max_sequence_length
    with pytest.raises(ValueError, match="maximum sequence length"):
        model.generate(input_ids=torch.full((1, 10), 50), max_new_tokens=limit)
    # exactly the infill encoder's input [P, canvas, </s>] (no mode token configured) fits
    model.config.backbone.encoder.max_position_embeddings = 16
    prompt = torch.full((1, 10), 50)
    assert model.generate(input_ids=prompt, max_new_tokens=5, num_rounds=0).shape == (1, 5)
    with pytest.raises(ValueError, match=r"prompt \(10 tokens\) \+ canvas \(6\) \+ 1 special token\(s\) exceed"):
        model.generate(input_ids=prompt, max_new_tokens=6, num_rounds=0)
    # T5's relative positions have no limit: its config's n_positions is no reason to refuse a long canvas
    t5 = make_glauber("t5", tokenizer)
    t5.config.backbone.n_positions = 4
    assert t5.config.max_sequence_length is None
    assert t5.generate(max_new_tokens=6, num_rounds=0).shape == (1, 6)


def test_canvas_positions_need_a_table_that_covers_them(tokenizer, t5_model):
    ids, dec = torch.tensor([[5, 6, 1]]), torch.tensor([[0, 7]])
    with pytest.raises(ValueError, match=r"canvas_positions needs a model with a canvas embedding \(config.canvas_position_embeddings > 0"):
        t5_model(input_ids=ids, decoder_input_ids=dec, canvas_positions=torch.tensor([[-1, 0, -1]]))
    cells = make_glauber("t5", tokenizer, canvas_position_embeddings=4)
    with pytest.raises(ValueError, match=r"decoder_canvas_positions holds canvas position 4"):
        cells(input_ids=ids, decoder_input_ids=dec, decoder_canvas_positions=torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match=r"canvas_positions must have the shape"):
        cells(input_ids=ids, decoder_input_ids=dec, canvas_positions=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"L=5 positions, but the model embeds canvas positions < 4 \(canvas_position_embeddings"):
        cells.generate(max_new_tokens=5)


def test_forward_rejects_times_outside_the_unit_interval(t5_model):
    with pytest.raises(ValueError, match="timesteps"):
        t5_model(input_ids=torch.tensor([[5]]), decoder_input_ids=torch.tensor([[0]]), timesteps=1.5)
    with pytest.raises(ValueError, match="timesteps"):
        t5_model(input_ids=torch.tensor([[5], [6]]), decoder_input_ids=torch.tensor([[0], [0]]), timesteps=[0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_rounds", 0), ("mask_window", 0), ("causal_order", "reverse"), ("permutation_seed", -1),
     ("time_frequency_dim", 3), ("sentinel_token_ids", [383]), ("suppressed_token_ids", [384]),
     ("r_mode_token_id", -5), ("canvas_position_embeddings", -1)],
)
def test_config_rejects_out_of_range_fields(field, value):
    kwargs = {"backbone": T5Config(vocab_size=384).to_dict(), "mask_window": 2, field: value}
    if field == "mask_window":
        kwargs["mask_window"] = value
    with pytest.raises(ValueError, match=field if field != "sentinel_token_ids" else "mask_window"):
        GlauberT5Config(**kwargs)


def test_unknown_backbone_model_type_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="model_type"):
        GlauberT5Config(backbone={"model_type": "bert"})
    from transformers import BertConfig, BertModel

    from modeling_glauber import GlauberT5ForDiffusion

    with pytest.raises(ValueError, match="model_type"):
        GlauberT5ForDiffusion.from_backbone(BertModel(BertConfig(hidden_size=32, num_hidden_layers=1,
                                                                 num_attention_heads=2, intermediate_size=32)))


def test_checkpoint_missing_its_code_files_fails_loudly(tokenizer, tmp_path):
    model = make_glauber("t5", tokenizer)
    model.save_pretrained(tmp_path / "ckpt")
    os.remove(tmp_path / "ckpt" / "modeling_glauber.py")
    shutil.copytree(tmp_path / "ckpt", tmp_path / "broken")
    env_modules = os.environ.get("HF_MODULES_CACHE")
    os.environ["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    try:
        with pytest.raises((OSError, ValueError, ImportError), match="modeling_glauber"):
            from transformers.dynamic_module_utils import get_class_from_dynamic_module

            get_class_from_dynamic_module("modeling_glauber.GlauberT5ForDiffusion", str(tmp_path / "broken"))
    finally:
        if env_modules is None:
            os.environ.pop("HF_MODULES_CACHE")
        else:
            os.environ["HF_MODULES_CACHE"] = env_modules
    assert AutoModel  # the registered class still loads the intact checkpoint
    assert type(AutoModel.from_pretrained(tmp_path / "ckpt")).__name__ == "GlauberT5ForDiffusion"


def test_from_backbone_without_tokenizer_uses_the_t5_sentinel_convention():
    from modeling_glauber import GlauberT5ForDiffusion

    model = GlauberT5ForDiffusion.from_backbone(tiny_t5(), num_rounds=1, mask_window=3)
    assert model.config.sentinel_token_ids[:3] == [383, 382, 381]
