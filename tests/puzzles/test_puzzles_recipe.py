"""Training recipe, evaluation harness, baselines and the shipped demo checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from modeling_glauber.infill import infill_span_targets
from puzzles import cli, data, sudoku, zebra
from puzzles.baselines import (
    infill_topk_predictions,
    MaskedDiffusionCollator,
    SolverOrderCollator,
    mdm_predictions,
    solver_order_predictions,
    solver_triplets,
)
from puzzles.evaluation import (
    chain_learning_curves,
    fixes,
    format_table,
    plot_learning_curve,
    plot_results,
    run_method,
)
from puzzles.metrics import evaluate_predictions, givens
from puzzles.recipe import (
    BudgetTrainer,
    LearningCurve,
    PuzzleUL2Collator,
    RecipeConfig,
    decoder_length_groups,
    stage1_loss,
    build_backbone,
    build_model,
    build_tokenizer,
    canvas_inputs,
    glauber_predictions,
    legal_canvas_tokens,
    stage1_collator,
    load_model,
    tokenized,
    train_stage1,
    train_stage2,
)
from puzzles.run import add_run_arguments, command_line_overrides, load_rows, run, save_demo_asset
from puzzles.tokenizer import build_puzzle_tokenizer, entities_as_cell_words
from trainers import GlauberTrainer

ROOT = Path(__file__).resolve().parents[2]
ASSET = ROOT / "assets" / "sudoku-4x4"
TINY = dict(size=4, d_model=32, num_layers=1, num_heads=2, d_kv=16, d_ff=64, time_dim=16, stage1_batch=16,
            stage2_batch=4, timesteps_per_chain=2, reference_update_steps=2, stage1_lr=3e-3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread avoids spin-wait stalls when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sudoku4():
    ds, _ = data.build_sudoku(4, 96, 16, seed=3, workers=1, progress=False)
    return ds


@pytest.fixture(scope="module")
def tiny(sudoku4):
    cfg = RecipeConfig(**TINY)
    tok = build_tokenizer(cfg)
    return cfg, tok, build_model(cfg, tok), tokenized(sudoku4["train"], tok)


def test_solver_evaluation_on_correct_and_wrong_grids(sudoku4):
    rows = list(sudoku4["test"])[:4]
    right = [r["canvas"].split() for r in rows]
    wrong = [list(c) for c in right]
    free = [i for i, f in enumerate(rows[0]["frozen"]) if not f]
    wrong[0][free[0]], wrong[0][free[1]] = wrong[0][free[1]], wrong[0][free[0]]  # keeps the multiset, breaks a unit
    if wrong[0] == right[0]:
        wrong[0][free[0]] = "1" if right[0][free[0]] != "1" else "2"
    metrics = evaluate_predictions(right, rows)
    assert metrics["solved"] == 1.0 and metrics["cell_accuracy"] == 1.0
    broken = evaluate_predictions(wrong, rows)
    assert broken["solved"] == 0.75 and broken["cell_accuracy"] < 1.0
    draft = run_method("draft", lambda r: (wrong, 0), rows, 0)
    refined = run_method("refined", lambda r: (right, 0), rows, 1)
    assert fixes(draft, refined) == {"draft_failures": 1, "fixed": 1, "broken": 0}
    assert "1/1" in format_table([draft, refined], "draft")


def test_solved_check_takes_givens_from_the_frozen_canvas_cells(sudoku4):
    row = dict(sudoku4["test"][0], prompt="unused")
    solution = row["canvas"].split()
    assert givens(row) == [v if f else "_" for v, f in zip(solution, row["frozen"])]
    assert evaluate_predictions([solution], [row])["solved"] == 1.0
    # a valid grid that overwrites a given is not a solution of this puzzle
    other = {"1": "2", "2": "1", "3": "4", "4": "3"}
    relabelled = [other[v] for v in solution]
    assert evaluate_predictions([relabelled], [row])["solved"] == 0.0


def test_recipe_sets_the_backbone_relative_position_buckets(sudoku4):
    cfg = RecipeConfig(**TINY, relative_attention_num_buckets=144, relative_attention_max_distance=144)
    backbone = build_backbone(cfg, build_tokenizer(cfg))
    assert backbone.config.relative_attention_num_buckets == 144
    assert backbone.config.relative_attention_max_distance == 144
    bias = backbone.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
    assert bias.num_embeddings == 144


def test_t5gemma_backbone_recipe_trains_both_stages_and_solves(sudoku4, tmp_path):
    cfg = RecipeConfig(**TINY, backbone="t5gemma", stage1_steps=30, stage2_steps=2)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    encoder = model.backbone.config.encoder
    assert model.backbone.config.model_type == "t5gemma"
    assert (encoder.hidden_size, encoder.num_hidden_layers, encoder.num_attention_heads, encoder.head_dim) == (
        cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_kv)
    assert encoder.query_pre_attn_scalar == cfg.d_kv
    train = tokenized(sudoku4["train"], tok)
    torch.manual_seed(0)
    stage1 = train_stage1(model, train, cfg, str(tmp_path / "s1"))
    assert stage1["last_loss"] < stage1["first_loss"]
    assert math.isfinite(train_stage2(model, train, cfg, str(tmp_path / "s2"))["last_loss"])
    rows = list(sudoku4["test"])[:4]
    predictions, _ = glauber_predictions(model.eval(), tok, rows, num_rounds=1)
    assert all(set(p) <= set(legal_canvas_tokens("sudoku", 4)) and len(p) == 16 for p in predictions)
    with pytest.raises(ValueError, match=r"backbone must be one of \('t5', 't5gemma'\)"):
        RecipeConfig(backbone="gpt2")


def test_canvas_position_embeddings_reach_both_stages(sudoku4, tmp_path):
    cfg = RecipeConfig(**TINY, canvas_position_embeddings=True, stage1_steps=30, stage2_steps=2)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    assert model.canvas_position_embedding.num_embeddings == 16
    train = tokenized(sudoku4["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    batch = PuzzleUL2Collator(model, legal, causal_fraction=0.5, infill_per_row=2, seed=1)([train[i] for i in range(8)])
    infill = (batch["canvas_positions"] >= 0).any(dim=1)
    assert 0 < int(infill.sum()) < len(infill)
    # an infill row holds each cell once on its encoder canvas; a causal row writes cell π_0(j) at decoder step j
    assert (batch["canvas_positions"][infill].sort(dim=1).values[:, -16:] == torch.arange(16)).all()
    assert (batch["decoder_canvas_positions"][infill] == -1).all()
    order = model.schedule(16).causal_order_positions
    assert (batch["decoder_canvas_positions"][~infill][:, :16] == order).all()
    torch.manual_seed(0)
    stage1 = train_stage1(model, train, cfg, str(tmp_path / "s1"))
    assert stage1["last_loss"] < stage1["first_loss"]
    assert float(model.canvas_position_embedding.weight.detach().abs().max()) > 0
    assert math.isfinite(train_stage2(model, train, cfg, str(tmp_path / "s2"))["last_loss"])


def test_stage1_without_time_conditioning_hands_stage2_a_model_that_ignores_time(sudoku4, tmp_path):
    cfg = RecipeConfig(**TINY, stage1_steps=20, stage1_time_conditioning=False)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    train = tokenized(sudoku4["train"], tok)
    before = {k: v.clone() for k, v in model.time_conditioning.state_dict().items()}
    backbone_before = model.backbone.shared.weight.detach().clone()
    torch.manual_seed(0)
    train_stage1(model, train, cfg, str(tmp_path / "s1"))
    assert not torch.equal(model.backbone.shared.weight, backbone_before)
    after = model.time_conditioning.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.time_conditioning.parameters())  # stage 2 trains it
    modulation = model.time_conditioning(torch.tensor([0.1, 0.5, 1.0]))
    assert float(modulation.detach().abs().max()) == 0.0  # identical computation at every τ


def test_stage1_collator_encodes_both_modes(tiny):
    cfg, tok, model, train = tiny
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    collator = PuzzleUL2Collator(model, legal, causal_fraction=0.5, infill_per_row=3, seed=1)
    features = [train[i] for i in range(8)]
    batch = collator(features)
    c = model.config
    causal = batch["input_ids"][:, 0] == c.s_mode_token_id
    infill = batch["input_ids"][:, 0] == c.r_mode_token_id
    assert int(causal.sum()) + int(infill.sum()) == batch["input_ids"].shape[0]
    assert int(infill.sum()) % 3 == 0
    sentinel = c.sentinel_token_ids[0]
    assert bool((batch["input_ids"][infill] == sentinel).sum(dim=1).eq(1).all())
    assert bool((batch["decoder_input_ids"][infill, 1] == sentinel).all())
    # causal labels are the non-given cells in π_0 order; infill rows score one legal value
    assert bool((batch["labels"][causal] != -100).any())
    assert set(batch["labels"][infill, 1].tolist()) <= set(legal)


def _infill_only_batch(tiny, rows: int, per_row: int, **collator_kwargs):
    """An R-task-only stage-1 batch, with each example's solution and frozen mask and the canvas the encoder sees."""
    _, tok, model, train = tiny
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    collator = PuzzleUL2Collator(model, legal, causal_fraction=0.0, infill_per_row=per_row, **collator_kwargs)
    features = [train[i] for i in range(rows)]
    batch = collator(features)
    solutions = torch.stack([torch.as_tensor(f["canvas_ids"]) for f in features]).repeat_interleave(per_row, 0)
    frozen = torch.stack([torch.as_tensor(f["frozen"], dtype=torch.bool) for f in features])
    canvas = batch["input_ids"][:, -1 - solutions.shape[1]:-1]
    return batch, solutions, frozen.repeat_interleave(per_row, 0), canvas, legal


def test_relabel_corruption_gives_a_value_permutation_of_the_solution(tiny):
    _, solutions, frozen, canvas, legal = _infill_only_batch(tiny, 32, 1, relabel_corruption=1.0, seed=4)
    sentinels = set(tiny[2].config.sentinel_token_ids)
    changed = 0
    for row in range(canvas.shape[0]):
        assert not bool((canvas[row, frozen[row]] != solutions[row, frozen[row]]).any()), "givens stay"
        mapping = {}
        for i, value in enumerate(canvas[row].tolist()):  # one value map per row: a permutation of the values
            a = int(solutions[row, i])
            if value not in sentinels and value != a:
                assert mapping.setdefault(a, value) == value and value in legal
                changed += 1
    assert changed > 0
    with pytest.raises(ValueError, match="relabel_corruption"):
        PuzzleUL2Collator(tiny[2], legal, relabel_corruption=1.5)


def test_corruption_timesteps_are_the_wrong_share_of_the_cells_the_infill_sees_over_the_full_time_share(tiny):
    batch, solutions, frozen, canvas, _ = _infill_only_batch(tiny, 32, 2, max_corruption=1.0, relabel_corruption=0.5,
                                                             infill_targets=3, seed=3, timesteps_from_corruption=True)
    seen = ~frozen & ~torch.isin(canvas, torch.as_tensor(tiny[2].config.sentinel_token_ids))
    wrong = (seen & (canvas != solutions)).sum(1).float()
    expected = wrong / seen.sum(1).clamp(min=1).float()
    assert torch.allclose(batch["timesteps"], expected)
    assert float(expected.min()) < 0.2 and float(expected.max()) > 0.6, "noise levels spread over [0, 1]"
    plain, *_ = _infill_only_batch(tiny, 32, 2, max_corruption=1.0, relabel_corruption=0.5, infill_targets=3, seed=3)
    assert bool((plain["timesteps"] == 1.0).all())
    assert torch.equal(plain["input_ids"], batch["input_ids"]), "τ changes no token of the batch"
    scaled, *_ = _infill_only_batch(tiny, 32, 2, max_corruption=1.0, relabel_corruption=0.5, infill_targets=3, seed=3,
                                    timesteps_from_corruption=True, full_time_corruption=0.5)
    assert torch.allclose(scaled["timesteps"], (expected / 0.5).clamp(max=1.0)), "τ = 1 stands for half the cells wrong"
    assert bool((scaled["timesteps"] == 1.0).any()) and bool((scaled["timesteps"] < 1.0).any())
    with pytest.raises(ValueError, match="full_time_corruption must be in"):
        PuzzleUL2Collator(tiny[2], list(range(3)), full_time_corruption=0.0)
    with pytest.raises(ValueError, match="stage1_full_time_corruption must be in"):
        RecipeConfig(**TINY, stage1_timesteps="corruption", stage1_full_time_corruption=1.5)
    with pytest.raises(ValueError, match="stage1_timesteps must be one of"):
        RecipeConfig(**TINY, stage1_timesteps="noise")
    with pytest.raises(ValueError, match="stage1_time_conditioning=true"):
        RecipeConfig(**TINY, stage1_timesteps="corruption", stage1_time_conditioning=False)
    cfg = RecipeConfig(**TINY, stage1_timesteps="corruption", stage1_full_time_corruption=0.6)
    collator = stage1_collator(tiny[2], cfg, tiny[3])
    assert collator.timesteps_from_corruption and collator.full_time_corruption == 0.6


def test_drafted_examples_are_pooled_puzzles_read_through_the_models_own_draft(tiny, monkeypatch):
    cfg, tok, _, train = tiny
    model = build_model(cfg, tok)
    only = tok.convert_tokens_to_ids("3")
    model.restrict_canvas_vocabulary([only])  # the draft of this model fills every free cell with "3"
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    features = [train[i] for i in range(1, 13)]
    pooled = train[0]  # the only draft source: every drafted example is this puzzle, none of the batch's rows
    solution, given = torch.as_tensor(pooled["canvas_ids"]), torch.as_tensor(pooled["frozen"], dtype=torch.bool)
    sentinels = torch.as_tensor(model.config.sentinel_token_ids)
    draft_rows: list[int] = []
    plain = model.generate

    def counted(**kwargs):
        draft_rows.append(kwargs["canvas_ids"].shape[0])
        return plain(**kwargs)

    monkeypatch.setattr(model, "generate", counted)

    def collator(**kwargs):
        return PuzzleUL2Collator(model, legal, causal_fraction=0.0, infill_per_row=2, infill_targets=3, seed=5,
                                 **kwargs)

    def contexts(collate):
        return collate(features)["input_ids"][:, -1 - len(solution):-1]

    model.train()
    drafting = collator(draft_corruption=1.0, draft_source=[pooled], draft_pool=5)
    drafted = contexts(drafting)
    assert model.training, "drafting in eval mode hands the model back in training mode"
    assert draft_rows == [5] * 3, "24 drafted examples, two per pooled row: three draft calls of draft_pool = 5"
    contexts(drafting)
    assert draft_rows == [5] * 5, "the next batch uses the 3 rows left over and drafts 10 more"
    assert drafted.shape[0] == 24
    unmasked = ~torch.isin(drafted, sentinels)
    assert bool((drafted[:, given] == solution[given]).all()), "the pooled puzzle's givens stay"
    assert bool((drafted[unmasked & ~given] == only).all())
    assert bool((solution[~given] != only).any()), "the draft differs from the solution"
    noised = contexts(collator(relabel_corruption=0.5))
    free = ~torch.stack([torch.as_tensor(f["frozen"], dtype=torch.bool) for f in features]).repeat_interleave(2, 0)
    assert not bool((noised[~torch.isin(noised, sentinels) & free] == only).all())
    with pytest.raises(ValueError, match="draft_corruption"):
        PuzzleUL2Collator(model, legal, draft_corruption=-0.1)
    with pytest.raises(ValueError, match="relabel_corruption \\+ draft_corruption"):
        PuzzleUL2Collator(model, legal, relabel_corruption=0.6, draft_corruption=0.6)
    with pytest.raises(ValueError, match="draft_source"):
        PuzzleUL2Collator(model, legal, draft_corruption=0.5)
    with pytest.raises(ValueError, match="draft_pool"):
        PuzzleUL2Collator(model, legal, draft_corruption=0.5, draft_source=[pooled], draft_pool=0)


def test_draft_corruption_from_draws_drafts_only_past_that_share_of_stage1(sudoku4, tmp_path, monkeypatch):
    cfg = RecipeConfig(**TINY, stage1_steps=8, draft_corruption=0.5, draft_corruption_from=0.5)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    drafted_rows: list[int] = []
    plain = PuzzleUL2Collator._drafted_rows

    def counted(self):
        drafted_rows.append(self.draft_pool)
        return plain(self)

    monkeypatch.setattr(PuzzleUL2Collator, "_drafted_rows", counted)
    at_step: dict[int, int] = {}

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            at_step[state.global_step] = len(drafted_rows)

    stage1 = train_stage1(model, tokenized(sudoku4["train"], tok), cfg, str(tmp_path / "s1"), callbacks=[Count()])
    assert stage1["draft_corruption_from_step"] == 4  # progress 4 / 8 reaches the share
    assert at_step[4] == 0, "no draft before the switch"
    assert at_step[8] > 0, "drafts after it"
    with pytest.raises(ValueError, match=r"draft_corruption_from must be in \[0, 1\)"):
        RecipeConfig(**TINY, draft_corruption_from=1.0)


def test_puzzles_eval_exclude_keeps_only_unseen_prompts(sudoku4, tmp_path, capsys):
    data_dir = tmp_path / "data"
    sudoku4.save_to_disk(str(data_dir))
    seen = tmp_path / "seen.jsonl"
    seen.write_text("".join(json.dumps(dict(r)) + "\n" for r in list(sudoku4["test"])[:5]))
    out = tmp_path / "out"
    rc = cli.main(["puzzles", "eval", "--model", str(ASSET), "--data", str(data_dir), "--exclude", str(seen),
                   "--num-rounds", "0,1", "--out", str(out)])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["n"] for r in results] == [len(sudoku4["test"]) - 5] * 2
    assert f"kept {len(sudoku4['test']) - 5} of {len(sudoku4['test'])}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--exclude removed every row"):
        cli.main(["puzzles", "eval", "--model", str(ASSET), "--data", str(data_dir), "--exclude", str(data_dir)])


def test_puzzles_eval_mask_window_reaches_the_sampler_and_is_recorded(sudoku4, tmp_path, capsys):
    rows = list(sudoku4["train"])[:48]
    data_file = tmp_path / "rows.jsonl"
    data_file.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
    model, tok = load_model(ASSET)
    ids, mask, canvas, frozen = canvas_inputs(rows, tok, model.device)
    # with two givens in three dropped from the canvas a puzzle has many completions, and the cells masked beside the
    # one predicted decide which one a greedy refinement reaches
    sparse = frozen & (torch.arange(frozen.shape[1]) % 3 == 0)
    cells, sparse_outputs = {}, {}
    for w in (1, 3):
        out = model.generate(input_ids=ids, attention_mask=mask, canvas_ids=canvas, frozen_mask=frozen, num_rounds=1,
                             mask_window=w, do_sample=False)
        cells[w] = evaluate_predictions([tok.convert_ids_to_tokens(r) for r in out.tolist()], rows)["cell_accuracy"]
        sparse_outputs[w] = model.generate(input_ids=ids, attention_mask=mask, frozen_mask=sparse, num_rounds=1,
                                           canvas_ids=canvas.masked_fill(~sparse, tok.pad_token_id), mask_window=w,
                                           do_sample=False)
    assert not torch.equal(sparse_outputs[1], sparse_outputs[3])
    out = tmp_path / "out"
    capsys.readouterr()
    rc = cli.main(["puzzles", "eval", "--model", str(ASSET), "--data", str(data_file), "--num-rounds", "1",
                   "--mask-window", "3", "--out", str(out)])
    assert rc == 0
    assert "glauber generate" in capsys.readouterr().err  # a minutes-long 9×9 evaluation shows its progress
    saved = json.loads((out / "results.json").read_text())
    assert saved["mask_window"] == 3
    assert saved["results"][0]["cell_accuracy"] == pytest.approx(cells[3])
    with pytest.raises(ValueError, match=r"mask_window must be an integer in \[1, 16\]"):
        cli.main(["puzzles", "eval", "--model", str(ASSET), "--data", str(data_file), "--limit", "4",
                  "--mask-window", "17"])


def test_stage2_loss_is_finite_when_frozen_cells_hold_an_unemittable_filler(tmp_path):
    ds, _ = data.build_zebra([(3, 3)], 24, 2, 0, workers=1, progress=False)
    cfg = RecipeConfig(kind="zebra", houses="3", attributes="3", **{k: v for k, v in TINY.items() if k != "size"},
                       stage2_steps=3)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    train = tokenized(ds["train"], tok)
    assert any(bool(model.suppress_mask[torch.as_tensor(row["canvas_ids"])].any()) for row in train)
    summary = train_stage2(model, train, cfg, str(tmp_path / "s2"))
    assert summary["steps"] == 3
    assert all(math.isfinite(loss) and loss > 0 for loss in summary["losses"])


def test_span_infill_scores_every_masked_cell_and_starts_like_generation(tiny):
    batch, solutions, _, canvas, _ = _infill_only_batch(tiny, 16, 2, infill_targets=5, seed=2)
    c = tiny[2].config
    sentinels = c.sentinel_token_ids
    dec, labels = batch["decoder_input_ids"], batch["labels"]
    assert bool((dec[:, :2] == torch.tensor([c.decoder_start_id, sentinels[0]])).all())
    masked_counts = set()
    for row in range(canvas.shape[0]):
        slots = [j for j in range(5) if sentinels[j] in canvas[row].tolist()]
        assert slots == list(range(len(slots))) and 1 <= len(slots) <= 5
        masked_counts.add(len(slots))
        for j in slots:
            cell = canvas[row].tolist().index(sentinels[j])
            # sentinel j is fed at decoder position 2j + 1 and its cell's true value is scored there
            assert int(dec[row, 2 * j + 1]) == sentinels[j]
            assert int(labels[row, 2 * j + 1]) == int(solutions[row, cell])
        assert int((labels[row] != -100).sum()) == len(slots)
    assert len(masked_counts) > 1


def test_training_smoke_decreases_loss_and_generates(tiny, sudoku4, tmp_path):
    cfg, tok, model, train = tiny
    torch.manual_seed(0)
    cfg.stage1_steps, cfg.stage2_steps = 40, 3
    stage1 = train_stage1(model, train, cfg, str(tmp_path / "s1"))
    assert stage1["steps"] == 40
    assert stage1["last_loss"] < stage1["first_loss"]
    stage2 = train_stage2(model, train, cfg, str(tmp_path / "s2"))
    assert stage2["steps"] == 3 and math.isfinite(stage2["last_loss"])
    model.eval()
    rows = list(sudoku4["test"])[:8]
    predictions, calls = glauber_predictions(model, tok, rows, num_rounds=2)
    assert calls <= 3 * 16 and all(len(p) == 16 for p in predictions)
    for pred, row in zip(predictions, rows):
        assert all(p == c for p, c, f in zip(pred, row["canvas"].split(), row["frozen"]) if f)  # givens kept
        assert set(pred) <= set(legal_canvas_tokens("sudoku", 4))


@pytest.mark.parametrize("backbone", ["t5", "t5gemma"])
def test_baselines_decode_in_the_same_harness(tiny, sudoku4, backbone):
    cfg, tok, _, train = tiny
    cfg = dataclasses.replace(cfg, backbone=backbone)
    rows = list(sudoku4["test"])[:6]
    legal_words = legal_canvas_tokens("sudoku", 4)
    mdm = build_model(cfg, tok).eval()
    batch = MaskedDiffusionCollator(mdm, tok.convert_tokens_to_ids("<extra_id_0>"))([train[i] for i in range(4)])
    with torch.no_grad():
        assert float(mdm(**batch).loss) > 0
    blanks = max(16 - sum(r["frozen"]) for r in rows)
    for score in ("probability", "margin"):
        preds, calls = mdm_predictions(mdm, tok, rows, tok.convert_tokens_to_ids(legal_words), score)
        assert calls == blanks and all(set(p) <= set(legal_words) for p in preds)
    ar = build_model(cfg, tok).eval()
    batch = SolverOrderCollator(ar, tok)(rows[:3])
    with torch.no_grad():
        assert float(ar(**batch).loss) > 0
    preds, calls = solver_order_predictions(ar, tok, rows, legal_words)
    assert calls == 3 * blanks and all(len(p) == 16 for p in preds)


def test_easy_first_infill_reveals_one_cell_per_call_and_a_row_alone_decodes_as_in_its_batch(tiny, sudoku4):
    cfg, tok, small, _ = tiny
    rows = list(sudoku4["test"])
    legal_words = legal_canvas_tokens("sudoku", 4)
    blanks = [r["frozen"].count(False) for r in rows]
    assert len(set(blanks)) > 1  # rows finish at different calls, so the window is padded for some of them
    wide = dataclasses.replace(cfg, sentinels=16)  # every blank masked at once needs a sentinel each
    wide_tok = build_tokenizer(wide)
    torch.manual_seed(0)
    model = build_model(wide, wide_tok).eval()
    for score in ("probability", "margin"):
        preds, calls = infill_topk_predictions(model, wide_tok, rows, score)
        assert calls == max(blanks)
        for pred, row in zip(preds, rows):
            assert all(p == c for p, c, f in zip(pred, row["canvas"].split(), row["frozen"]) if f)  # givens kept
            assert set(pred) <= set(legal_words)
        alone = [infill_topk_predictions(model, wide_tok, [row], score)[0][0] for row in rows]
        assert alone == preds
    seen_tau = []
    block_logits = model.infill_block_logits

    def recorded(prefix, canvas, window, valid, timesteps, **kwargs):
        seen_tau.append(timesteps)
        return block_logits(prefix, canvas, window, valid, timesteps, **kwargs)

    model.infill_block_logits = recorded
    infill_topk_predictions(model, wide_tok, rows[:2], timesteps=0.25)
    assert seen_tau and set(seen_tau) == {0.25}
    del model.infill_block_logits
    with pytest.raises(ValueError, match=f"need a model with >= {max(blanks)} sentinels, this one has 8"):
        infill_topk_predictions(small, tok, rows)
    with pytest.raises(ValueError, match="score must be one of"):
        infill_topk_predictions(model, wide_tok, rows, "entropy")


def test_easy_first_rounds_refine_the_easy_first_decoding_and_count_both_passes_calls(tiny, sudoku4, tmp_path, capsys):
    cfg, _, _, _ = tiny
    rows = list(sudoku4["test"])
    wide = dataclasses.replace(cfg, sentinels=16)  # every blank masked at once needs a sentinel each
    tok = build_tokenizer(wide)
    torch.manual_seed(1)
    model = build_model(wide, tok).eval()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data_file = tmp_path / "rows.jsonl"
    data_file.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
    out = tmp_path / "out"
    rc = cli.main(["puzzles", "eval", "--model", str(tmp_path / "model"), "--data", str(data_file), "--num-rounds",
                   "0", "--easy-first", "margin", "--easy-first-tau", "0", "--easy-first-rounds", "1,2",
                   "--out", str(out)])
    assert rc == 0
    saved = {r["method"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    first = saved["infill alone, Top-K margin (not Glauber)"]
    starts, first_calls = infill_topk_predictions(model, tok, rows, "margin", timesteps=0.0)
    assert first["cell_accuracy"] == pytest.approx(evaluate_predictions(starts, rows)["cell_accuracy"])
    for n in (1, 2):
        record = saved[f"Top-K margin, then Glauber N={n} (not the paper's sampler)"]
        refined, calls = glauber_predictions(model, tok, rows, n, starts=starts)
        assert record["num_rounds"] == n and record["model_calls"] == first_calls + calls
        assert record["seconds"] >= first["seconds"]
        metrics = evaluate_predictions(refined, rows)
        assert record["cell_accuracy"] == pytest.approx(metrics["cell_accuracy"])
        assert record["solved"] == pytest.approx(metrics["solved"])
    with pytest.raises(SystemExit, match="give --easy-first probability or --easy-first margin"):
        cli.main(["puzzles", "eval", "--model", str(tmp_path / "model"), "--data", str(data_file),
                  "--easy-first-rounds", "1"])


def test_sampled_glauber_predictions_are_seeded_per_row_and_differ_from_greedy(tiny, sudoku4):
    _, tok, model, _ = tiny
    model.eval()
    rows = list(sudoku4["test"])[:6]
    sampled, calls = glauber_predictions(model, tok, rows, 2, temperature=1.0, seed=5)
    greedy, greedy_calls = glauber_predictions(model, tok, rows, 2)
    assert calls == greedy_calls and sampled != greedy
    assert glauber_predictions(model, tok, rows, 2, temperature=1.0, seed=5)[0] == sampled
    assert glauber_predictions(model, tok, rows, 2, temperature=1.0, seed=6)[0] != sampled
    # row i draws with seed + i, whatever the batch it is decoded in
    assert glauber_predictions(model, tok, rows[3:4], 2, temperature=1.0, seed=8)[0] == sampled[3:4]
    assert glauber_predictions(model, tok, rows, 2, batch_size=4, temperature=1.0, seed=5)[0] == sampled
    for pred, row in zip(sampled, rows):
        assert all(p == c for p, c, f in zip(pred, row["canvas"].split(), row["frozen"]) if f)  # givens kept


def test_solver_order_decoding_keeps_each_row_to_its_own_blanks(tiny, sudoku4):
    """A batch decodes 3·(most blanks) tokens; a row with fewer blanks must not apply the triplets past its end."""
    _, tok, model, _ = tiny
    rows = list(sudoku4["test"])
    assert len({r["frozen"].count(False) for r in rows}) > 1
    longest = 3 * max(r["frozen"].count(False) for r in rows)
    scripts = []
    for row in rows:
        words = solver_triplets(row)
        wrong = "1" if row["canvas"].split()[0] != "1" else "2"
        words += ["0", "0", wrong] * ((longest - len(words)) // 3)
        scripts.append(tok.convert_tokens_to_ids(words))
    scripts = torch.tensor(scripts)

    class Oracle:
        """The tiny model's encoding, but its logits emit each row's own solver-order triplets, then (forced on) a
        legal triplet that overwrites cell 0; `cache` counts the steps."""

        device, config = model.device, model.config
        build_prefix, causal_encoder_annotations = model.build_prefix, model.causal_encoder_annotations

        def __call__(self, decoder_input_ids, cache=None, **kwargs):
            step = cache or 0
            logits = torch.full((len(decoder_input_ids), 1, len(tok)), -1e4)
            logits[torch.arange(len(decoder_input_ids)), 0, scripts[: len(decoder_input_ids), step]] = 0.0
            return argparse.Namespace(logits=logits, cache=step + 1, encoder_last_hidden_state=torch.zeros(1))

    preds, calls = solver_order_predictions(Oracle(), tok, rows, legal_canvas_tokens("sudoku", 4))
    assert calls == longest
    assert evaluate_predictions(preds, rows)["solved"] == 1.0


def test_fp16_asset_round_trip(tiny, sudoku4, tmp_path):
    _, tok, model, _ = tiny
    rows = list(sudoku4["test"])[:2]
    out = save_demo_asset(model, tok, rows, tmp_path / "asset")
    assert model.dtype == torch.float32
    reloaded, tok2 = load_model(out)
    assert reloaded.dtype == torch.float32 and load_rows(out / "test.jsonl") == rows
    assert reloaded.config.suppressed_token_ids == model.config.suppressed_token_ids
    assert len(tok2) == len(tok)
    card = (out / "README.md").read_text()
    assert "load_model" in card and "glauber puzzles eval" in card
    # the checkpoint carries its code: it loads where the library is not installed (tests/test_shipped_assets.py)
    assert {"configuration_glauber.py", "modeling_glauber.py"} <= {p.name for p in out.glob("*.py")}


def test_puzzle_card_is_a_hub_card_whose_solving_snippet_runs(tiny, sudoku4, tmp_path):
    _, tok, model, _ = tiny
    rows = list(sudoku4["test"])[:3]
    out = save_demo_asset(model, tok, rows, tmp_path / "asset")
    card = (out / "README.md").read_text()
    _, metadata, body = card.split("---\n", 2)
    assert "library_name: transformers" in metadata and "custom_code" in metadata
    assert "# Glauber diffusion puzzle solver (sudoku 4x4)" in body and "3 held-out puzzles" in body
    assert 'AutoModel.from_pretrained("<this folder>", trust_remote_code=True)' in body
    assert 'AutoTokenizer.from_pretrained("<this folder>", trust_remote_code=True)' in body
    assert "## Cost" in body and "L model calls for the draft plus N·L" in body and "(N+1)·L" in body
    assert "Kathuria, Tarun and Kumar, Sachin" in body.split("## Citation", 1)[1]
    # the solving block is real code: with the folder filled in it returns one grid per held-out puzzle
    solving = body.split("```python\n")[2].split("```", 1)[0].replace("<this folder>", str(out))
    scope = {}
    exec(compile(solving, "puzzle-card", "exec"), scope)
    assert len(scope["grids"]) == len(rows) and all(len(g) == 16 for g in scope["grids"])
    assert 0 < scope["calls"] <= 4 * 16  # (N+1)·L for N = 3, L = 16, minus steps frozen in every row


def test_shipped_demo_checkpoint_beats_its_draft(tmp_path):
    model, tok = load_model(ASSET)
    assert next(model.parameters()).dtype == torch.float32
    rows = load_rows(ASSET / "test.jsonl")[:96]
    draft = run_method("draft", lambda r: glauber_predictions(model, tok, r, 0), rows, 0)
    refined = run_method("N=3", lambda r: glauber_predictions(model, tok, r, 3), rows, 3)
    assert refined["solved"] > draft["solved"]
    assert fixes(draft, refined)["fixed"] > 0
    assert plot_results([draft, refined], tmp_path / "p.png").stat().st_size > 0


def test_results_plot_of_baselines_alone_has_one_panel_and_no_empty_legend(tmp_path):
    from PIL import Image

    def record(method, rounds, calls, solved):
        return {"method": method, "num_rounds": rounds, "model_calls": calls, "solved": solved,
                "solved_ci_low": solved - 0.05, "solved_ci_high": min(1.0, solved + 0.05)}

    baselines = [record("MDM Top-K prob", None, 16, 0.6), record("AR solver order", None, 16, 0.2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a panel's legend has nothing to show
        alone = plot_results(baselines, tmp_path / "alone.png")
    both = plot_results([record("draft", 0, 16, 0.5), record("N=3", 3, 64, 0.9), *baselines], tmp_path / "both.png")
    assert Image.open(alone).size[0] < 0.6 * Image.open(both).size[0]


def _run_summary(stage1_steps: int, stage2_steps: int, curve_steps: list[int], num_rounds: int = 3) -> dict:
    def stage(steps):
        return {"steps": steps, "loss_steps": list(range(10, steps + 1, 10)), "losses": [1.0] * (steps // 10)}

    points = [{"step": s, "stage": "stage 1", "puzzles": 10, "solved_n0": 0.1, "cell_accuracy_n0": 0.5,
               f"solved_n{num_rounds}": 0.2, f"cell_accuracy_n{num_rounds}": 0.6} for s in curve_steps]
    return {"config": {"num_rounds": num_rounds}, "stage1": stage(stage1_steps), "stage2": stage(stage2_steps),
            "learning_curve": points}


def test_chained_learning_curve_counts_steps_from_the_first_runs_start(tmp_path):
    first, second = _run_summary(100, 20, [50, 120]), _run_summary(40, 0, [40])
    stages, points, num_rounds = chain_learning_curves([("a", first), ("b", second)])
    assert [p["step"] for p in points] == [50, 120, 160]  # b continues a after a's 100 + 20 steps
    assert [name for name, _ in stages] == ["a stage 1", "a stage 2", "b stage 1", "b stage 2"]
    assert num_rounds == 3
    with pytest.raises(ValueError, match="run c: num_rounds 1, but the runs before it have 3"):
        chain_learning_curves([("a", first), ("c", _run_summary(10, 0, [10], num_rounds=1))])
    with pytest.raises(ValueError, match="run d: its results.json has no learning_curve"):
        chain_learning_curves([("d", {**first, "learning_curve": []})])

    for name, summary in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(summary))
    png = tmp_path / "curve.png"
    assert cli.main(["puzzles", "curve", "--run", str(tmp_path / "a"), "--run", str(tmp_path / "b"),
                     "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.partial"))
    with pytest.raises(SystemExit, match="--run .*missing: no results.json there"):
        cli.main(["puzzles", "curve", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "configs").glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_builds_its_model(path):
    cfg = RecipeConfig.load(path)
    model = build_backbone(cfg, build_tokenizer(cfg))
    assert model.config.num_layers == cfg.num_layers and model.config.d_model == cfg.d_model
    assert model.config.relative_attention_num_buckets == cfg.relative_attention_num_buckets


def test_demo_retraining_regenerates_the_shipped_held_out_set():
    """`make demo ARGS=--train` evaluates on its config's test split: it must be the shipped checkpoint's test.jsonl,
    so the retrained model and the shipped one are compared on the same puzzles."""
    cfg = RecipeConfig.load(ROOT / "examples" / "configs" / "sudoku-4x4.json")
    ds, _ = data.build_sudoku(cfg.size, cfg.n_train, cfg.n_test, cfg.seed, workers=1, progress=False)
    shipped = load_rows(ASSET / "test.jsonl")
    assert list(ds["test"]["prompt"]) == [r["prompt"] for r in shipped]
    assert not set(ds["train"]["prompt"]) & {r["prompt"] for r in shipped}


def test_canvas_index_words_reach_every_encoder_path(sudoku4):
    """With `canvas_index` the training rows, the evaluation inputs and the AR baseline all encode the prompt as the
    grid then `@0 … @15`; without it the prompt is the plain grid."""
    cfg = RecipeConfig(**TINY, canvas_index=True)
    tok = build_tokenizer(cfg)
    plain = build_tokenizer(RecipeConfig(**TINY))
    assert len(tok) == len(plain) + 16
    assert tok.convert_tokens_to_ids("<extra_id_0>") == plain.convert_tokens_to_ids("<extra_id_0>")
    rows = list(sudoku4["test"])[:3]
    expected = [r["prompt"].split() + [f"@{i}" for i in range(16)] for r in rows]
    train = tokenized(sudoku4["test"].select(range(3)), tok)
    assert [tok.convert_ids_to_tokens(r["input_ids"]) for r in train] == expected
    ids, _, _, _ = canvas_inputs(rows, tok)
    assert [tok.convert_ids_to_tokens(i) for i in ids.tolist()] == expected  # 4×4 prompts: no padding
    ar_batch = SolverOrderCollator(build_model(cfg, tok), tok)(rows)
    assert [tok.convert_ids_to_tokens(i)[1:-1] for i in ar_batch["input_ids"].tolist()] == expected
    untagged = canvas_inputs(rows, plain)[0]
    assert plain.convert_ids_to_tokens(untagged[0].tolist()) == rows[0]["prompt"].split()
    # Zebra: clue prompts of any length naming entities by their cells, then one word per cell of the answer table
    zebra_tok = build_tokenizer(RecipeConfig(kind="zebra", houses="3", attributes="3", canvas_index=True))
    zebra_rows = [data.zebra_row(zebra.generate_one(3, 3, seed=0, index=i)) for i in range(2)]
    ids, mask, canvas, _ = canvas_inputs(zebra_rows, zebra_tok)
    assert canvas.shape[1] == 36
    for row, r_ids, r_mask in zip(zebra_rows, ids.tolist(), mask.tolist()):
        words = [w for w, m in zip(zebra_tok.convert_ids_to_tokens(r_ids), r_mask) if m]
        assert words == entities_as_cell_words(row["prompt"]).split() + [f"@{i}" for i in range(36)]
        assert "c" not in words and "<unk>" not in words
        assert words.count("CLUE_END") == row["n_clues"]
    with pytest.raises(ValueError, match="canvas_cells"):
        build_puzzle_tokenizer("sudoku", 100)


def test_set_overrides_a_recipe_field_with_its_type():
    assert RecipeConfig.parse_override("stage1_budget_fraction=0.9") == ("stage1_budget_fraction", 0.9)
    assert RecipeConfig.parse_override("stage1_steps=1500") == ("stage1_steps", 1500)
    assert RecipeConfig.parse_override("canvas_index=true") == ("canvas_index", True)
    assert RecipeConfig.parse_override("houses=3,4,5") == ("houses", "3,4,5")
    with pytest.raises(ValueError, match="FIELD one of"):
        RecipeConfig.parse_override("stage_one_steps=3")
    with pytest.raises(ValueError, match="expected a int"):
        RecipeConfig.parse_override("stage1_steps=lots")
    with pytest.raises(ValueError, match="true/false"):
        RecipeConfig.parse_override("canvas_index=maybe")
    with pytest.raises(ValueError, match="stage2_steps must be >= 0"):
        RecipeConfig(stage2_steps=-1)


def test_step_flags_and_set_of_the_same_field_combine_unless_they_disagree(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(dict(TINY, kind="sudoku", stage2_steps=7)))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, str(config))
    out = ["--out", str(tmp_path / "run")]

    def recipe_config(args):
        return RecipeConfig.load(args.config, **command_line_overrides(args))

    assert recipe_config(parser.parse_args(out)).stage2_steps == 7
    assert recipe_config(parser.parse_args(out + ["--set", "stage2_steps=0"])).stage2_steps == 0
    assert recipe_config(parser.parse_args(out + ["--stage2-steps", "3"])).stage2_steps == 3
    assert recipe_config(parser.parse_args(out + ["--stage2-steps", "0", "--set", "stage2_steps=0"])).stage2_steps == 0
    with pytest.raises(ValueError, match=r"--stage2-steps 3 and --set stage2_steps=0 disagree"):
        recipe_config(parser.parse_args(out + ["--stage2-steps", "3", "--set", "stage2_steps=0"]))


def test_run_checkpoints_after_each_stage_and_applies_set(sudoku4, tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    sudoku4.save_to_disk(str(data_dir))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(dict(TINY, kind="sudoku", num_rounds=1, eval_batch=8)))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, str(config))
    args = parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "run"), "--device", "cpu",
                              "--stage1-steps", "3", "--stage2-steps", "1", "--eval-limit", "4",
                              "--set", "canvas_index=1", "--set", "stage1_lr=0.01"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", str(tmp_path / "bad"), "--set", "bogus=1"])
    assert "argument --set: --set takes FIELD=VALUE with FIELD one of" in capsys.readouterr().err
    summary = run(args)
    assert summary["config"]["canvas_index"] is True and summary["config"]["stage1_lr"] == 0.01
    assert summary["stage1"]["steps"] == 3 and summary["stage2"]["steps"] == 1
    model, tok = load_model(tmp_path / "run" / "model")
    assert tok.convert_tokens_to_ids("@15") != tok.unk_token_id
    stage1_model = load_model(tmp_path / "run" / "model-stage1")[0].state_dict()
    assert stage1_model.keys() == model.state_dict().keys()
    assert not all(torch.equal(stage1_model[k], v) for k, v in model.state_dict().items()), "stage 2 trained"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".model.")], "no staging left behind"
    # zero steps in both stages: the --init-from checkpoint is evaluated (and saved) exactly as it was
    evaluated = parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "eval"), "--device", "cpu",
                                   "--init-from", str(tmp_path / "run" / "model"), "--set", "canvas_index=1",
                                   "--stage1-steps", "0", "--stage2-steps", "0", "--eval-limit", "4"])
    summary = run(evaluated)
    assert summary["stage1"]["steps"] == 0 and summary["stage2"]["steps"] == 0
    assert not (tmp_path / "eval" / "model-stage1").exists()
    before, after = model.state_dict(), load_model(tmp_path / "eval" / "model")[0].state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [r["method"] for r in results["results"]] == ["causal draft (N=0, random order)", "Glauber N=1"]
    # a run that dies in stage 2 still leaves the stage-1 model and the held-out rows
    def stage2_dies(*args, **kwargs):
        raise RuntimeError("killed in stage 2")

    monkeypatch.setattr("puzzles.run.train_stage2", stage2_dies)
    cut = parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "cut"), "--device", "cpu",
                             "--stage1-steps", "2", "--eval-limit", "4"])
    with pytest.raises(RuntimeError, match="stage 2"):
        run(cut)
    assert load_model(tmp_path / "cut" / "model")[0].config.num_rounds == 1
    assert len(load_rows(tmp_path / "cut" / "test.jsonl")) == 4
    # continuing a checkpoint under a config whose tokenizer differs (no canvas_index) is refused
    mismatch = parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "again"), "--device", "cpu",
                                  "--init-from", str(tmp_path / "run" / "model")])
    with pytest.raises(ValueError, match="init-from .*tokenizer"):
        run(mismatch)
    # the config's schedule replaces the checkpoint's (w = 2 is what stage 2 trains with and what gets saved) ...
    wider = parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "wider"), "--device", "cpu",
                               "--init-from", str(tmp_path / "run" / "model"), "--set", "canvas_index=1",
                               "--set", "mask_window=2", "--stage1-steps", "0", "--stage2-steps", "1",
                               "--eval-limit", "4"])
    monkeypatch.undo()  # stage 2 runs again
    trained_windows = []
    original_step = GlauberTrainer.compute_loss

    def compute_loss(self, model, *args, **kwargs):
        trained_windows.append(self.glauber.config.mask_window)
        return original_step(self, model, *args, **kwargs)

    monkeypatch.setattr(GlauberTrainer, "compute_loss", compute_loss)
    run(wider)
    assert trained_windows and set(trained_windows) == {2}
    assert load_model(tmp_path / "wider" / "model")[0].config.mask_window == 2
    # ... but a differently shaped model is refused, naming a weight
    wider_model = parser.parse_args(["--data", str(data_dir), "--out", str(tmp_path / "shape"), "--device", "cpu",
                                     "--init-from", str(tmp_path / "run" / "model"), "--set", "canvas_index=1",
                                     "--set", "d_ff=32", "--stage1-steps", "0", "--stage2-steps", "0"])
    with pytest.raises(ValueError, match=r"init-from .*differ in shape.*DenseReluDense"):
        run(wider_model)


def _run_args(tmp_path, config: dict, *flags: str) -> argparse.Namespace:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, str(path))
    return parser.parse_args(["--out", str(tmp_path / "run"), "--device", "cpu", *flags])


def _no_training(monkeypatch, stage1_seconds: float = 0.0) -> list[float | None]:
    """Stages 1 and 2 replaced by stand-ins that train nothing; returns the stage-2 budgets they were handed."""
    import time

    budgets: list[float | None] = []

    def stage1(*args, **kwargs):
        time.sleep(stage1_seconds)
        return {"steps": 0}

    def stage2(model, train_ds, cfg, out, device, precision, budget_s, callbacks=None):
        budgets.append(budget_s)
        return {"steps": 0}

    monkeypatch.setattr("puzzles.run.train_stage1", stage1)
    monkeypatch.setattr("puzzles.run.train_stage2", stage2)
    return budgets


def test_run_with_data_uses_and_records_its_rows_and_refuses_other_puzzles(sudoku4, tmp_path, monkeypatch):
    _no_training(monkeypatch)
    data_dir = tmp_path / "data"
    sudoku4.save_to_disk(str(data_dir))  # 96 train and 16 test rows, 4x4
    config = dict(TINY, kind="sudoku", num_rounds=1, eval_batch=8, n_train=20000, n_test=500)
    summary = run(_run_args(tmp_path, config, "--data", str(data_dir), "--eval-limit", "4"))
    assert (summary["config"]["n_train"], summary["config"]["n_test"]) == (96, 16)
    assert summary["data"] == {"source": str(data_dir), "train_rows": 96, "test_rows": 16, "evaluated_rows": 4}
    summary = run(_run_args(tmp_path, config, "--data", str(data_dir), "--n-train", "40", "--n-test", "8"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["data"]["train_rows"] == saved["config"]["n_train"] == 40
    assert saved["data"]["test_rows"] == saved["data"]["evaluated_rows"] == 8
    assert saved["results"][0]["n"] == 8
    summary = run(_run_args(tmp_path, config, "--data", str(data_dir), "--set", "n_train=24", "--set", "n_test=4"))
    assert summary["data"]["train_rows"] == 24 and summary["data"]["test_rows"] == 4
    with pytest.raises(ValueError, match=r"n_train 97 \(--n-train or --set n_train\): --data .* holds only 96 train"):
        run(_run_args(tmp_path, config, "--data", str(data_dir), "--n-train", "97"))
    with pytest.raises(ValueError, match=r"n_test 17 \(--n-test or --set n_test\): --data .* holds only 16 test"):
        run(_run_args(tmp_path, config, "--data", str(data_dir), "--set", "n_test=17"))
    six = tmp_path / "six"
    data.build_sudoku(6, 4, 1, seed=0, progress=False)[0].save_to_disk(str(six))
    with pytest.raises(ValueError, match="holds sudoku 6x6 puzzles, but the config's model is for sudoku 4x4"):
        run(_run_args(tmp_path, config, "--data", str(six)))
    with pytest.raises(ValueError, match="holds sudoku 4x4 puzzles, but the config's model is for zebra"):
        run(_run_args(tmp_path, dict(config, kind="zebra"), "--data", str(data_dir)))


def test_baselines_share_the_budget_the_stages_leave_and_are_saved_as_checkpoints(sudoku4, tmp_path, monkeypatch):
    import time
    from types import SimpleNamespace

    stage2_budgets = _no_training(monkeypatch, stage1_seconds=0.3)
    baseline_budgets: list[float | None] = []

    class FakeTrainer:
        """Records its time budget and spends 0.1 s instead of training."""

        def __init__(self, *, budget_s, **kwargs):
            baseline_budgets.append(budget_s)
            self.state = SimpleNamespace(global_step=0)

        def train(self):
            time.sleep(0.1)

    monkeypatch.setattr("puzzles.run.BudgetTrainer", FakeTrainer)
    data_dir = tmp_path / "data"
    sudoku4.save_to_disk(str(data_dir))
    args = _run_args(tmp_path, dict(TINY, kind="sudoku", num_rounds=1, eval_batch=8), "--data", str(data_dir),
                     "--eval-limit", "2", "--baselines", "--time-budget-s", "100")
    started = time.perf_counter()
    run(args)
    wall = time.perf_counter() - started
    left = 100 - 0.3  # at most what stage 1 leaves; at least what the whole run leaves
    assert 100 - wall < stage2_budgets[0] <= left
    mdm, ar = baseline_budgets
    assert (100 - wall) / 2 < mdm <= stage2_budgets[0] / 2  # half of what stages 1 and 2 left
    # the rest: less the 0.1 s the MDM spent, and less nothing beyond the run's own wall time (a loaded machine)
    assert 2 * mdm - wall < ar <= 2 * mdm - 0.1
    records = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    glauber = {k: v.shape for k, v in load_model(tmp_path / "run" / "model")[0].state_dict().items()}
    for name, method in (("mdm", "MDM Top-K margin"), ("ar", "AR, solver order")):
        saved = tmp_path / "run" / f"baseline-{name}" / "model"
        assert next(r for r in records if r["method"] == method)["training"]["checkpoint"] == str(saved)
        assert {k: v.shape for k, v in load_model(saved)[0].state_dict().items()} == glauber  # the same network


STRUCTURED = dict(canvas_factors=True, given_embedding=True, infill_prompt=False, prompt_positions=True)


def test_structured_encoding_trains_both_stages_and_solves_in_the_harness(sudoku4, tmp_path):
    """DESIGN §9: row/column/box tables, the given marker, prompt positions and an infill that reads only the canvas
    are built from the recipe, reach stage 1 and stage 2, and leave frozen givens untouched at evaluation."""
    cfg = RecipeConfig(**TINY, **STRUCTURED, augment=True, stage1_steps=30, stage2_steps=2)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    assert model.config.canvas_position_factors == sudoku.canvas_factors(4)
    train = tokenized(sudoku4["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    batch = PuzzleUL2Collator(model, legal, causal_fraction=0.5, infill_per_row=2, seed=1)([train[i] for i in range(8)])
    infill = batch["decoder_canvas_positions"][:, 0] == -1
    # an infill example reads `[NLU] + canvas + </s>` (no prompt), givens marked; a causal one reads the grid
    assert batch["input_ids"][infill].shape[1] >= 18 and (batch["attention_mask"][infill].sum(1) == 18).all()
    assert bool(batch["canvas_given"][infill].any()) and not bool(batch["canvas_given"][~infill].any())
    assert (batch["canvas_positions"][~infill][:, 1:17] == torch.arange(16)).all()
    torch.manual_seed(0)
    stage1 = train_stage1(model, train, cfg, str(tmp_path / "s1"))
    assert stage1["last_loss"] < stage1["first_loss"]
    assert all(float(t.weight.detach().abs().max()) > 0 for t in model.canvas_factor_embeddings)
    assert float(model.canvas_given_embedding.weight.detach().abs().max()) > 0
    assert math.isfinite(train_stage2(model, train, cfg, str(tmp_path / "s2"))["last_loss"])
    rows = list(sudoku4["test"])[:4]
    predictions, _ = glauber_predictions(model.eval(), tok, rows, 1)
    for row, cells in zip(rows, predictions):
        assert all(cells[k] == v for k, v in enumerate(row["canvas"].split()) if row["frozen"][k])


def test_augmentation_moves_prompt_canvas_and_givens_together(sudoku4):
    cfg = RecipeConfig(**{**TINY, "size": 4}, **STRUCTURED, augment=True)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    train = tokenized(sudoku4["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    collator = PuzzleUL2Collator(model, legal, seed=0, augment_size=4)
    features = [train[i] for i in range(32)]
    base = collator._base(features)
    moved = collator._augment(base)
    blank = tok.convert_tokens_to_ids("_")
    values = {t: int(w) for t, w in zip(legal, legal_canvas_tokens("sudoku", 4))}
    geo = sudoku.geometry(4)
    assert not torch.equal(moved["canvas_ids"], base["canvas_ids"])
    for grid, solution, frozen in zip(moved["input_ids"], moved["canvas_ids"], moved["frozen"]):
        solved = [values[int(t)] for t in solution]
        assert all(sorted(solved[c] for c in unit) == [1, 2, 3, 4] for unit in geo.units)
        assert torch.equal(grid != blank, frozen) and torch.equal(grid[frozen], solution[frozen])
        puzzle = [values.get(int(t), 0) for t in grid]
        assert sudoku.count_solutions(puzzle, size=4) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [(dict(size=5), r"size must be a Sudoku side this project knows, one of \[4, 6, 9\], got 5"),
     (dict(augment=True, kind="zebra"), "augment is defined for kind 'sudoku' only"),
     (dict(clue_positions=True, canvas_factors=True), "clue_positions needs kind 'zebra' and canvas_index=true"),
     (dict(clue_positions=True, kind="zebra", canvas_index=True), "clue_positions needs canvas_factors"),
     (dict(prompt_positions=True, canvas_factors=True, canvas_index=True), "set canvas_index=false"),
     (dict(prompt_positions=True), "prompt_positions needs canvas_factors"),
     (dict(peer_attention=True), "peer_attention needs canvas_factors=true"),
     (dict(infill_decoder_positions=True), "infill_decoder_positions needs canvas_factors"),
     (dict(peer_attention_decoder=True, canvas_factors=True), "peer_attention_decoder needs peer_attention=true"),
     (dict(peer_attention=True, canvas_factors=True, backbone="t5gemma"), "peer_attention needs backbone 't5'"),
     (dict(kind="zebra-house", houses="3,4", attributes="3"), "houses and attributes must be one size each"),
     (dict(kind="zebra-house", houses="3", attributes="3", canvas_index=True), "set canvas_index=false"),
     (dict(kind="kakuro"), r"kind must be one of \('sudoku', 'zebra', 'zebra-house'\), got 'kakuro'"),
     (dict(sentinels=7), "sentinels must be in 8 … 81, got 7"),
     (dict(refine_mask_window=9), r"refine_mask_window must be in \[0, sentinels=8\]"),
     (dict(infill_targets=12, sentinels=10), r"infill_targets must be in \[1, sentinels=10\]"),
     (dict(mask_window=9), r"mask_window must be in \[1, sentinels=8\]"),
     (dict(infill_targets=4, infill_targets_min=5), r"infill_targets_min must be in \[1, max\(mask_window, "
                                                    r"infill_targets\)=4\], got 5")],
)
def test_recipe_refuses_encodings_it_cannot_build(fields, message):
    with pytest.raises(ValueError, match=message):
        RecipeConfig(**{**TINY, **fields})


def test_more_sentinels_let_a_recipe_model_mask_and_score_more_cells_per_infill_call(sudoku4):
    cfg = RecipeConfig(**{**TINY, "infill_targets": 12, "sentinels": 12, "causal_fraction": 0.0, "max_corruption": 0.0})
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    default = build_tokenizer(RecipeConfig(**TINY))
    assert model.config.sentinel_token_ids == tok.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(12)])
    assert {w: tok.convert_tokens_to_ids(w) for w in default.get_vocab()} == default.get_vocab()
    train = tokenized(sudoku4["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    collator = PuzzleUL2Collator(model, legal, causal_fraction=0.0, infill_per_row=8, infill_targets=12, seed=0)
    batch = collator([train[i] for i in range(16)])
    scored = (batch["labels"] != -100).sum(dim=1)
    assert int(scored.max()) > 8  # more cells than the default eight sentinels allow, each scored
    rows = list(sudoku4["test"])[:4]
    ids, mask, canvas, frozen = canvas_inputs(rows, tok, model.device)
    out = model.generate(input_ids=ids, attention_mask=mask, canvas_ids=canvas, frozen_mask=frozen, num_rounds=1,
                         mask_window=12, do_sample=False)
    assert out.shape == canvas.shape and torch.equal(out[frozen], canvas[frozen])
    with pytest.raises(ValueError, match="mask_window=13 needs 13 sentinel_token_ids"):
        model.generate(input_ids=ids, attention_mask=mask, canvas_ids=canvas, frozen_mask=frozen, num_rounds=1,
                       mask_window=13)


def test_infill_targets_min_masks_at_least_that_many_cells_per_example(tiny):
    free = torch.stack([(~torch.as_tensor(tiny[3][i]["frozen"], dtype=torch.bool)).sum() for i in range(16)])
    window = torch.minimum(free, torch.tensor(4)).repeat_interleave(2)  # a row with fewer free cells masks them all
    default, *_ = _infill_only_batch(tiny, 16, 2, infill_targets=4, seed=3)
    full, *_ = _infill_only_batch(tiny, 16, 2, infill_targets=4, infill_targets_min=4, seed=3)
    default_scored = (default["labels"] != -100).sum(dim=1)
    assert int(default_scored.min()) == 1 and bool((default_scored <= window).all())
    assert torch.equal((full["labels"] != -100).sum(dim=1), window)
    with pytest.raises(ValueError, match="infill_targets_min must be >= 1"):
        PuzzleUL2Collator(tiny[2], [], infill_targets_min=0)


def test_stage1_corruption_differs_between_dataloader_workers(sudoku4):
    """On an accelerator stage 1 collates in DataLoader workers; each must draw its own corruption and symmetry."""
    cfg = RecipeConfig(**TINY, **STRUCTURED, augment=True)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    train = tokenized(sudoku4["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    collator = PuzzleUL2Collator(model, legal, infill_per_row=1, relabel_corruption=0.5, seed=0, augment_size=4)
    same_row = [train[0]] * 2
    loader = torch.utils.data.DataLoader(same_row, batch_size=1, num_workers=2, collate_fn=collator)
    first, second = (batch["input_ids"].tolist() + batch["decoder_input_ids"].tolist() for batch in loader)
    assert first != second
@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "configs").glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_config_states_what_its_causal_draft_is_trained_on(path):
    assert json.loads(path.read_text())["causal_loss_target"] in ("chain", "data")


def test_stage2_trains_the_draft_on_the_configs_causal_loss_target(sudoku4, tmp_path, monkeypatch):
    import puzzles.recipe as recipe

    seen = []

    class Recorded(recipe.BudgetGlauberTrainer):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["args"].causal_loss_target)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(recipe, "BudgetGlauberTrainer", Recorded)
    tok = build_tokenizer(RecipeConfig(**TINY))
    train = tokenized(sudoku4["train"], tok)
    for target in ("data", "chain"):
        cfg = RecipeConfig(**TINY, stage2_steps=1, causal_loss_target=target)
        train_stage2(build_model(cfg, tok), train, cfg, str(tmp_path / target))
    assert seen == ["data", "chain"]
    with pytest.raises(ValueError, match=r"causal_loss_target must be one of \('data', 'chain'\), got 'x_0'"):
        RecipeConfig(**TINY, causal_loss_target="x_0")


def test_budget_schedule_is_the_stock_cosine_without_a_budget_and_anneals_to_zero_by_its_end(tiny, tmp_path):
    import time

    from transformers import TrainingArguments, get_cosine_schedule_with_warmup

    model = tiny[2]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=20, warmup_steps=4, learning_rate=1e-3,
                             lr_scheduler_type="cosine", use_cpu=True, report_to="none")

    def factors(budget_s, spent_s=None):
        trainer = BudgetTrainer(model=model, args=args, budget_s=budget_s)
        trainer.create_optimizer()
        if spent_s is not None:
            trainer.time_budget.started = time.perf_counter() - spent_s
        scheduler = trainer.create_scheduler(20)
        return [scheduler.lr_lambdas[0](step) for step in range(21)]

    stock = get_cosine_schedule_with_warmup(torch.optim.SGD(model.parameters(), lr=1.0), 4, 20)
    assert factors(None) == pytest.approx([stock.lr_lambdas[0](step) for step in range(21)], abs=1e-12)
    half = factors(1000.0, spent_s=500.0)  # half the budget spent: at least halfway down the cosine
    assert half[:4] == factors(None)[:4]  # warm-up follows the steps
    assert half[4] == pytest.approx(0.5, abs=1e-3) and half[12] == pytest.approx(factors(None)[12])
    assert factors(1000.0, spent_s=1000.0)[4:] == [0.0] * 17
    control = BudgetTrainer(model=model, args=args, budget_s=1e-9)
    control.time_budget.started = time.perf_counter()
    from transformers import TrainerControl

    stop = TrainerControl()
    control.time_budget.on_step_end(args, None, stop)
    assert stop.should_training_stop


def test_learning_curve_follows_both_stages_and_matches_a_fresh_evaluation(sudoku4, tmp_path):
    cfg = RecipeConfig(**TINY, **STRUCTURED, num_rounds=1, stage1_steps=4, stage2_steps=3)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    train = tokenized(sudoku4["train"], tok)
    rows = list(sudoku4["test"])[:6]
    curve = LearningCurve(model, tok, rows, num_rounds=1, every=2, batch_size=4)
    curve.begin_stage("stage 1")
    stage1 = train_stage1(model, train, cfg, str(tmp_path / "s1"), callbacks=[curve])
    assert model.training, "evaluation gives the model back in training mode"
    curve.begin_stage("stage 2")
    stage2 = train_stage2(model, train, cfg, str(tmp_path / "s2"), callbacks=[curve])
    # every 2 steps of each stage, and the end of stage 2 (step 3 of it) once more
    assert [(p["step"], p["stage"]) for p in curve.points] == [
        (2, "stage 1"), (4, "stage 1"), (6, "stage 2"), (7, "stage 2")]
    model.eval()
    last = curve.points[-1]
    for rounds in (0, 1):
        fresh = evaluate_predictions(glauber_predictions(model, tok, rows, rounds, 4)[0], rows)
        assert last[f"solved_n{rounds}"] == fresh["solved"]
        assert last[f"cell_accuracy_n{rounds}"] == fresh["cell_accuracy"]
    assert stage1["loss_steps"] == [1, 2, 3, 4] and len(stage2["loss_steps"]) == len(stage2["losses"]) == 3
    png = plot_learning_curve([("stage 1", stage1), ("stage 2", stage2)], curve.points, 1, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="curve_every must be >= 0"):
        RecipeConfig(**TINY, curve_every=-1)


def test_stage1_loss_skips_decoder_padding_and_equals_the_one_forward_loss(sudoku4):
    cfg = RecipeConfig(**TINY, **STRUCTURED, infill_targets=3)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok).eval()  # no dropout: the two computations must agree to rounding
    train = tokenized(sudoku4["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    batch = PuzzleUL2Collator(model, legal, causal_fraction=0.5, infill_per_row=2, infill_targets=3,
                              seed=2)([train[i] for i in range(8)])
    groups = decoder_length_groups(batch)
    # an R-task span of ≤ 3 cells scores ≤ 6 decoder tokens; an S-task row scores up to all 16 cells
    assert [g["decoder_input_ids"].shape[1] for g in groups] == [6, 16]
    assert sum(g["labels"].shape[0] for g in groups) == batch["labels"].shape[0]
    assert sum(int((g["labels"] != -100).sum()) for g in groups) == int((batch["labels"] != -100).sum())
    whole = model(**batch).loss
    whole.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    split = stage1_loss(model, batch)
    split.backward()
    assert split.item() == pytest.approx(whole.item(), abs=1e-6)
    for name, param in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(param.grad, expected[name], atol=1e-6, rtol=1e-5)


def test_house_canvas_zebra_trains_both_stages_on_a_canvas_sized_to_the_puzzle(tmp_path):
    ds, _ = data.build_zebra([(3, 4)], 24, 4, 0, workers=1, progress=False, house_canvas=True)
    cfg = RecipeConfig(**{**TINY, "kind": "zebra-house"}, houses="3", attributes="4", canvas_factors=True,
                       peer_attention=True, stage1_steps=20, stage2_steps=2)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    # cells of one attribute row (a permutation over the houses) share factor 0, the cells of one house factor 1
    assert model.config.canvas_position_factors == zebra.house_canvas_factors(3, 4)
    train = tokenized(ds["train"], tok)
    assert all(len(row["canvas_ids"]) == 12 for row in train)
    torch.manual_seed(0)
    stage1 = train_stage1(model, train, cfg, str(tmp_path / "s1"))
    assert stage1["last_loss"] < stage1["first_loss"]
    assert math.isfinite(train_stage2(model, train, cfg, str(tmp_path / "s2"))["last_loss"])
    rows = list(ds["test"])
    predictions, _ = glauber_predictions(model.eval(), tok, rows, num_rounds=1)
    assert all(len(p) == 12 and set(p) <= set(legal_canvas_tokens("zebra-house")) for p in predictions)
    assert evaluate_predictions([r["canvas"] for r in rows], rows)["solved"] == 1.0


def test_zebra_clue_words_carry_the_embedding_of_the_cell_they_name():
    ds, _ = data.build_zebra([(3, 3)], 8, 2, 0, workers=1, progress=False)
    cfg = RecipeConfig(**{**TINY, "kind": "zebra"}, canvas_index=True, canvas_factors=True, clue_positions=True)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    assert model.config.canvas_position_factors == zebra.canvas_factors()
    assert [t.num_embeddings for t in model.canvas_factor_embeddings] == [6, 6]
    train = tokenized(ds["train"], tok)
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("zebra"))
    batch = PuzzleUL2Collator(model, legal, causal_fraction=0.5, infill_per_row=1, seed=0)([train[i] for i in range(8)])
    words = [tok.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]
    named = 0
    for row_words, positions, attention in zip(words, batch["canvas_positions"].tolist(), batch["attention_mask"]):
        for word, position, seen in zip(row_words, positions, attention.tolist()):
            if seen and word.startswith("@"):
                assert position == int(word[1:])
                named += 1
    assert named > 8 * 36  # every clue entity and every suffix word, in both modes


def test_canvas_tables_start_at_zero_or_random_as_the_recipe_says():
    tok = build_tokenizer(RecipeConfig(**TINY))
    zero = build_model(RecipeConfig(**TINY, **STRUCTURED), tok)
    assert all(not p.any() for t in zero.canvas_factor_embeddings for p in t.parameters())
    drawn = build_model(RecipeConfig(**TINY, **STRUCTURED, canvas_init_std=0.5), tok)
    weights = torch.cat([t.weight.flatten() for t in drawn.canvas_factor_embeddings]
                        + [drawn.canvas_given_embedding.weight.flatten()])
    assert weights.std().item() == pytest.approx(0.5, rel=0.2)
    again = build_model(RecipeConfig(**TINY, **STRUCTURED, canvas_init_std=0.5), tok)
    assert torch.equal(again.canvas_factor_embeddings[0].weight, drawn.canvas_factor_embeddings[0].weight)
    with pytest.raises(ValueError, match="canvas_init_std must be >= 0"):
        RecipeConfig(**TINY, canvas_init_std=-1.0)


def test_peer_attention_starts_at_zero_and_trains_in_stage_one(sudoku4):
    cfg = RecipeConfig(**TINY, **STRUCTURED, peer_attention=True, canvas_init_std=0.5)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok).train()
    assert model.config.canvas_peer_attention and not model.canvas_peer_bias.weight.any()  # not a canvas table
    train = tokenized(sudoku4["train"], tok)
    batch = stage1_collator(model, cfg, train)(list(train.select(range(8))))
    stage1_loss(model, batch).backward()
    assert model.canvas_peer_bias.weight.grad.abs().sum() > 0


def test_span_targets_in_a_given_slot_order_score_each_value_after_its_own_sentinel():
    start, sentinels = 0, [100, 101, 102]
    targets, valid = torch.tensor([[7, 8, 9], [4, 5, 6]]), torch.tensor([[True, True, True], [True, True, False]])
    ids, labels = infill_span_targets(targets, valid, start, sentinels, torch.tensor([[2, 0, 1], [1, 0, 2]]))
    assert ids.tolist() == [[0, 102, 9, 100, 7, 101], [0, 101, 5, 100, 4, 102]]
    assert labels.tolist() == [[-100, 9, -100, 7, -100, 8], [-100, 5, -100, 4, -100, -100]]
    plain = infill_span_targets(targets, valid, start, sentinels)
    same = infill_span_targets(targets, valid, start, sentinels, torch.tensor([[0, 1, 2], [0, 1, 2]]))
    assert all(torch.equal(a, b) for a, b in zip(plain, same))


def test_slot_shuffle_puts_every_masked_slot_first_and_scores_its_true_value(tiny):
    cfg, tok, model, train = tiny
    legal = tok.convert_tokens_to_ids(legal_canvas_tokens("sudoku", 4))
    features = [train[i] for i in range(16)]
    solutions = torch.stack([torch.as_tensor(f["canvas_ids"]) for f in features]).repeat_interleave(4, 0)
    sentinels = model.config.sentinel_token_ids
    collator = PuzzleUL2Collator(model, legal, causal_fraction=0.0, infill_per_row=4, infill_targets=4, seed=2,
                                 slot_shuffle=1.0)
    batch = collator(features)
    canvas = batch["input_ids"][:, -1 - solutions.shape[1]:-1]
    first = batch["decoder_input_ids"][:, 1]
    assert set(first.tolist()) == set(sentinels[:4]), "every slot j leads some example's decoder"
    for row, sentinel in enumerate(first.tolist()):
        cell = (canvas[row] == sentinel).nonzero().item()  # the cell behind the slot the decoder names first
        assert batch["labels"][row, 1] == solutions[row, cell]
    with pytest.raises(ValueError, match="slot_shuffle must be in"):
        PuzzleUL2Collator(model, legal, slot_shuffle=2.0)


def test_stage1_infill_decoders_name_the_cell_behind_each_sentinel_and_train_its_embedding(sudoku4):
    cfg = RecipeConfig(**TINY, **STRUCTURED, peer_attention=True, peer_attention_decoder=True,
                       infill_decoder_positions=True, causal_fraction=0.0, infill_targets=4, slot_shuffle=0.5)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok).train()
    train = tokenized(sudoku4["train"], tok)
    batch = stage1_collator(model, cfg, train)(list(train.select(range(8))))
    sentinels = set(model.config.sentinel_token_ids)
    checked = 0
    for row in range(len(batch["decoder_input_ids"])):
        encoder = dict(zip(batch["input_ids"][row].tolist(), batch["canvas_positions"][row].tolist()))
        decoder = zip(batch["decoder_input_ids"][row].tolist(), batch["decoder_canvas_positions"][row].tolist())
        for token, cell in decoder:
            if token in sentinels and token in encoder:
                assert cell == encoder[token]  # the masked cell this sentinel stands for in the encoder
                checked += 1
            else:
                assert cell == -1
    assert checked == int((batch["labels"] != -100).sum())
    stage1_loss(model, batch).backward()
    assert model.canvas_cross_peer_bias.weight.grad.abs().sum() > 0


def test_stage2_trains_an_infill_whose_decoder_names_its_cell(sudoku4, tmp_path):
    cfg = RecipeConfig(**TINY, **STRUCTURED, peer_attention=True, peer_attention_decoder=True,
                       infill_decoder_positions=True, stage2_steps=2, canvas_init_std=0.5, causal_loss_weight=0.0)
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    train = tokenized(sudoku4["train"], tok)
    before = model.canvas_cross_peer_bias.weight.detach().clone()
    assert math.isfinite(train_stage2(model, train, cfg, str(tmp_path / "s2"))["last_loss"])
    # with no causal loss only the infill decoder reads the cross bias
    assert not torch.equal(model.canvas_cross_peer_bias.weight.detach(), before)
    rows = list(sudoku4["test"])[:4]
    predictions, _ = glauber_predictions(model.eval(), tok, rows, 1)
    for row, cells in zip(rows, predictions):
        assert all(cells[k] == v for k, v in enumerate(row["canvas"].split()) if row["frozen"][k])


def test_corrupted_solutions_make_exactly_the_asked_share_of_free_cells_wrong(sudoku4):
    from puzzles.repair import corrupted_solutions

    rows = list(sudoku4["test"])[:6]
    starts = corrupted_solutions(rows, 0.5, seed=1)
    for start, row in zip(starts, rows):
        solution, frozen = row["canvas"].split(), row["frozen"]
        wrong = [k for k, (a, b) in enumerate(zip(start, solution)) if a != b]
        assert len(wrong) == round(0.5 * sum(not f for f in frozen))
        assert not any(frozen[k] for k in wrong) and set(start) <= set(solution)
    # seeded per row: a row's start does not depend on the rows around it
    assert corrupted_solutions(rows[3:4], 0.5, seed=1) == starts[3:4]
    assert corrupted_solutions(rows, 0.0) == [r["canvas"].split() for r in rows]
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        corrupted_solutions(rows, 1.5)


def test_puzzles_repair_refines_corrupted_solutions_of_the_shipped_model(sudoku4, tmp_path):
    rows = list(sudoku4["test"])
    data_file = tmp_path / "rows.jsonl"
    data_file.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
    out = tmp_path / "repair"
    rc = cli.main(["puzzles", "repair", "--model", str(ASSET), "--data", str(data_file), "--corruption", "0,0.5",
                   "--num-rounds", "0,3", "--out", str(out)])
    assert rc == 0 and (out / "repair.png").stat().st_size > 0 and "| 50 % |" in (out / "repair.md").read_text()
    results = {(r["corruption"], r["num_rounds"]): r for r in json.loads((out / "repair.json").read_text())["results"]}
    assert results[0.0, 0]["solved"] == 1.0 and results[0.5, 0]["cell_accuracy"] == pytest.approx(0.5, abs=0.05)
    # the 4×4 model keeps a solution and repairs half-wrong grids
    assert results[0.0, 3]["solved"] >= 0.9
    assert results[0.5, 3]["cell_accuracy"] > results[0.5, 0]["cell_accuracy"] + 0.3
    with pytest.raises(SystemExit):
        cli.main(["puzzles", "repair", "--model", str(ASSET), "--data", str(data_file), "--corruption", "0.2,2"])


def test_learning_curve_plot_of_a_run_without_a_logged_loss_raises_no_warning(tmp_path):
    point = {"step": 8, "puzzles": 8, "solved_n0": 0.0, "cell_accuracy_n0": 0.1, "solved_n1": 0.0,
             "cell_accuracy_n1": 0.2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plot_learning_curve([("stage 1", {"steps": 8, "losses": [], "loss_steps": []})], [point], 1,
                                  tmp_path / "curve.png")
    assert png.stat().st_size > 0
