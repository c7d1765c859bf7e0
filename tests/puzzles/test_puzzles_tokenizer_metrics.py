"""Tokenizer round trip / persistence and the solution checkers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from puzzles import data, metrics, sudoku, zebra
from puzzles.tokenizer import (SENTINELS, build_puzzle_tokenizer, encoder_prompts, entities_as_cell_words,
                               puzzle_vocab, sentinel_words)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    s = [data.sudoku_row(p) for p in sudoku.generate_sudoku(9, 3, seed=0)]
    s += [data.sudoku_row(p) for p in sudoku.generate_sudoku(6, 2, seed=0)]
    z = [data.zebra_row(zebra.generate_one(4, 4, seed=0, index=i)) for i in range(3)]
    return s + z


def test_more_sentinels_come_last_so_every_default_id_stays(tmp_path: Path) -> None:
    default = build_puzzle_tokenizer("sudoku", canvas_cells=16)
    wide = build_puzzle_tokenizer("sudoku", canvas_cells=16, sentinels=12)
    assert len(wide) == len(default) + 4
    assert all(wide.convert_tokens_to_ids(w) == i for w, i in default.get_vocab().items())
    extra = wide.convert_tokens_to_ids(sentinel_words(12)[8:])
    assert extra == list(range(len(default), len(default) + 4))
    assert set(sentinel_words(12)) <= set(wide.all_special_tokens)
    wide.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).convert_tokens_to_ids("<extra_id_11>") == extra[-1]
    with pytest.raises(ValueError, match="sentinels must be in 8 … 81, got 82"):
        build_puzzle_tokenizer(sentinels=82)


def test_tokenizer_ids_and_round_trip(rows, tmp_path: Path) -> None:
    tok = build_puzzle_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids(["[NLU]", "[NLG]", "[S2S]"]) == [3, 4, 5]
    assert set(SENTINELS) <= set(tok.all_special_tokens)
    assert len(tok) == len(puzzle_vocab())
    for row in rows:
        for text in (row["prompt"], row["canvas"]):
            ids = tok(text).input_ids
            assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
            assert len(ids) == len(text.split()) + 1
            assert tok.decode(ids, skip_special_tokens=True) == text
            assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for row in rows:
        assert loaded(row["prompt"]).input_ids == tok(row["prompt"]).input_ids
        assert loaded.decode(loaded(row["canvas"]).input_ids, skip_special_tokens=True) == row["canvas"]
    assert loaded.convert_tokens_to_ids("<extra_id_7>") == tok.convert_tokens_to_ids("<extra_id_7>")


def test_kind_specific_vocab() -> None:
    assert "_" not in puzzle_vocab("zebra") and "CLUE_END" in puzzle_vocab("zebra")
    assert "CLUE_END" not in puzzle_vocab("sudoku") and "_" in puzzle_vocab("sudoku")
    with pytest.raises(ValueError):
        puzzle_vocab("chess")


def test_entities_become_the_index_words_of_their_canvas_cells() -> None:
    prompt = "= LHS n 0 2 RHS c 1 1 CLUE_END inbetween LHS c 3 2 RHS c 2 0 c 1 2 CLUE_END"
    # (3, 2) is canvas cell 2·6 + 2 = 14; the house entity `n 0 2` keeps the word its cell must hold
    assert entities_as_cell_words(prompt) == "= LHS n 0 2 RHS @1 CLUE_END inbetween LHS @14 RHS @6 @2 CLUE_END"
    assert entities_as_cell_words("1 _ 3 4") == "1 _ 3 4"
    p = zebra.generate_one(4, 4, seed=0, index=0)
    named = entities_as_cell_words(" ".join(p.prompt_tokens())).split()
    cells = [f"@{zebra.canvas_position(r, v)}" for c in p.clues for r, v in c.entities if r > 0]
    assert [w for w in named if w.startswith("@")] == cells
    indexed = build_puzzle_tokenizer("zebra", canvas_cells=36)
    assert encoder_prompts(indexed, [prompt]) == [entities_as_cell_words(prompt) + " " + " ".join(f"@{i}" for i in range(36))]
    assert encoder_prompts(build_puzzle_tokenizer("zebra"), [prompt]) == [prompt]


GRID4 = [1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]


def test_sudoku_checker() -> None:
    puzzle = [v if i % 3 == 0 else 0 for i, v in enumerate(GRID4)]
    assert metrics.sudoku_is_solved(GRID4, puzzle, (2, 2))
    assert metrics.sudoku_is_solved(" ".join(map(str, GRID4)), " ".join(str(v) if v else "_" for v in puzzle))
    swapped = list(GRID4)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # rows still fine, columns broken
    assert not metrics.sudoku_is_solved(swapped, [0] * 16)
    # a valid grid that ignores a given is wrong
    other = [GRID4[r * 4 + c] for c in range(4) for r in range(4)]  # transpose: still valid
    assert metrics.sudoku_is_solved(other, [0] * 16)
    assert not metrics.sudoku_is_solved(other, [0, 2] + [0] * 14)
    assert not metrics.sudoku_is_solved(["1", "x"] + ["1"] * 14, [0] * 16)
    assert not metrics.sudoku_is_solved(GRID4[:15], [0] * 15)


def test_zebra_checker() -> None:
    p = zebra.generate_one(4, 4, seed=3, index=0)
    table = [list(r) for r in p.table[1:]]
    assert metrics.zebra_is_solved(table, p.clues, table)
    assert metrics.zebra_is_solved(table, zebra.clues_to_json(p.clues))
    wrong = [list(r) for r in table]
    wrong[0][0], wrong[0][1] = wrong[0][1], wrong[0][0]
    # unique solution: any other permutation table must violate some clue
    assert not metrics.zebra_is_solved(wrong, p.clues)
    dup = [list(r) for r in table]
    dup[1][0] = dup[1][1]
    assert not metrics.zebra_is_solved(dup, p.clues)
    row = data.zebra_row(p)
    assert metrics.is_solved(row["canvas"], row)
    two_in_one_house = row["canvas"].split()
    two_in_one_house[0] = two_in_one_house[1]
    assert not metrics.is_solved(two_in_one_house, row)


def test_zebra_checker_reads_the_house_canvas() -> None:
    p = zebra.generate_one(4, 3, seed=3, index=0)
    row = data.zebra_row(p, house_canvas=True)
    canvas = row["canvas"].split()
    assert len(canvas) == 12 and metrics.is_solved(canvas, row)
    assert metrics.zebra_canvas_to_table(canvas, "4x3", "zebra-house") == [list(r) for r in p.table[1:]]
    swapped = list(canvas)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # still a permutation row, but the answer is unique
    assert not metrics.is_solved(swapped, row)
    assert not metrics.is_solved(canvas[:-1], row)
    assert not metrics.is_solved(["9"] + canvas[1:], row)
    assert zebra.house_canvas_factors(4, 3) == [[k // 4 for k in range(12)], [k % 4 for k in range(12)]]


def test_wilson_interval_numbers() -> None:
    lo, hi = metrics.wilson_interval(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5) and hi == pytest.approx(0.763407, abs=1e-5)
    lo, hi = metrics.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.277533, abs=1e-5)
    lo, hi = metrics.wilson_interval(10, 10)
    assert lo == pytest.approx(0.722467, abs=1e-5) and hi == 1.0
    lo, hi = metrics.wilson_interval(90, 100, z=2.576)
    assert lo < 0.9 < hi and math.isclose(lo + hi, 2 * (0.9 + 2.576**2 / 200) / (1 + 2.576**2 / 100))
    # every interval holds its own estimate, also at 0 and 1 where rounding used to leave it a hair outside (a plot's
    # error bars must not be negative)
    for n in range(1, 300):
        for k in (0, n // 3, n):
            lo, hi = metrics.wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_evaluate_predictions(rows) -> None:
    preds = [r["canvas"] for r in rows]
    res = metrics.evaluate_predictions(preds, rows)
    assert res["solved"] == 1.0 and res["cell_accuracy"] == 1.0 and res["n"] == len(rows)

    s0, z0 = rows[0], rows[-1]
    bad_s = s0["canvas"].split()
    i = s0["solver_order"][0]
    bad_s[i] = "1" if bad_s[i] != "1" else "2"
    bad_z = z0["canvas"].split()
    a, b = z0["solver_order"][:2]
    bad_z[a] = "3" if bad_z[a] != "3" else "2"
    preds[0], preds[-1] = " ".join(bad_s), " ".join(bad_z)
    res = metrics.evaluate_predictions(preds, rows)
    total_free = sum(len(r["solver_order"]) for r in rows)
    assert res["solved"] == pytest.approx((len(rows) - 2) / len(rows))
    assert res["cell_accuracy"] == pytest.approx((total_free - 2) / total_free)
    lo, hi = metrics.wilson_interval(len(rows) - 2, len(rows))
    assert (res["solved_ci_low"], res["solved_ci_high"]) == (lo, hi)
    with pytest.raises(ValueError):
        metrics.evaluate_predictions(preds[:-1], rows)
