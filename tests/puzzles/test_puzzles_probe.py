"""`glauber puzzles probe`: own-prompt against another-prompt losses, paired on the same masks, and the share of the
infill decoder's attention on the cell it fills."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from puzzles import cli, data
from puzzles.probe import TASKS, other_prompts, prompt_reliance, readout_attention
from puzzles.recipe import RecipeConfig, build_model, build_tokenizer

TINY_ZEBRA = dict(kind="zebra", houses="3", attributes="3", d_model=32, num_layers=1, num_heads=2, d_kv=16, d_ff=64,
                  time_dim=16, canvas_index=True)


@pytest.fixture(scope="module")
def zebra_rows() -> list[dict]:
    torch.set_num_threads(1)
    ds, _ = data.build_zebra([(3, 3)], 12, 6, 0, workers=1, progress=False)
    return list(ds["test"])


def test_other_prompts_rotate_within_a_size_and_keep_a_lone_size() -> None:
    rows = [{"prompt": p, "size": s} for p, s in [("a", "3x3"), ("b", "3x3"), ("c", "4x3"), ("d", "3x3")]]
    assert other_prompts(rows) == ["b", "d", "c", "a"]


def test_a_swapped_prompt_moves_every_loss_and_an_identical_one_none(zebra_rows) -> None:
    cfg = RecipeConfig(**TINY_ZEBRA)
    tok = build_tokenizer(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, tok)
    results = prompt_reliance(model, tok, zebra_rows, batch_size=4)
    assert [r["task"] for r in results] == [name for name, _ in TASKS]
    for r in results:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("nll_own", "nll_other"))
        assert r["nll_gap"] == pytest.approx(r["nll_other"] - r["nll_own"]) and r["nll_gap"] != 0.0
    # the same puzzle six times: "another" prompt is the own one, and the masks are the same draws
    same = prompt_reliance(model, tok, [zebra_rows[0]] * 6, batch_size=4)
    assert all(r["nll_gap"] == 0.0 and r["accuracy_own"] == r["accuracy_other"] for r in same)
    with pytest.raises(ValueError, match="rows"):
        prompt_reliance(model, tok, [])


def test_readout_attention_is_the_infill_tokens_share_on_its_sentinel(zebra_rows, monkeypatch) -> None:
    cfg = RecipeConfig(**TINY_ZEBRA)
    tok = build_tokenizer(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, tok)
    model.train()
    # zero cross-attention queries: every head spreads evenly over the attended encoder positions
    for name, param in model.named_parameters():
        if "EncDecAttention.q" in name:
            param.data.zero_()
    even = readout_attention(model, tok, zebra_rows, batch_size=4)
    assert even["share"].shape == (cfg.num_layers, cfg.num_heads)
    assert 0.0 < even["uniform"] < 0.05
    torch.testing.assert_close(even["share"], torch.full_like(even["share"], even["uniform"]), atol=1e-6, rtol=0)
    assert model.training and model.backbone.config._attn_implementation != "eager"  # both restored

    # where the weights sit is what is measured: head 1 of `<extra_id_0>` (decoder position 1) on the sentinel, every
    # other head on column 0; the decoder start token (position 0) on the sentinel must not count
    forward = type(model).forward
    sentinel = model.config.sentinel_token_ids[0]

    def placed(self, **batch):
        out = forward(self, **batch)
        at = (batch["input_ids"] == sentinel).float()
        weights = torch.zeros_like(out.cross_attentions[0])
        weights[:, :, 1, 0] = 1.0
        weights[:, 1, 1, :] = at
        weights[:, :, 0, :] = at[:, None, :]
        out.cross_attentions = (weights,) * len(out.cross_attentions)
        return out

    monkeypatch.setattr(type(model), "forward", placed)
    share = readout_attention(model, tok, zebra_rows, batch_size=4)["share"]
    expected = torch.zeros(cfg.num_layers, cfg.num_heads)
    expected[:, 1] = 1.0
    torch.testing.assert_close(share, expected)


def test_cli_probe_prints_the_table(zebra_rows, tmp_path: Path, capsys) -> None:
    cfg = RecipeConfig(**TINY_ZEBRA)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in zebra_rows))
    assert cli.main(["puzzles", "probe", "--model", str(tmp_path / "model"), "--data", str(rows_file), "--limit", "4"]) == 0
    table = capsys.readouterr().out
    assert "| causal draft (CAUSAL-GEN) |" in table
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + len(TASKS)  # header + one row per task
    assert "MASK-INFILL readout: at most " in table and "an even spread gives " in table
