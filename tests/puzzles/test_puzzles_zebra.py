"""Zebra generator, deductive solver and independent uniqueness check."""

from __future__ import annotations

import pytest

from puzzles import zebra as Z


@pytest.mark.parametrize("n,m", [(2, 3), (3, 2), (3, 3), (3, 4), (4, 3), (4, 4)])
def test_generated_zebra_unique_and_fill_order_complete(n: int, m: int) -> None:
    for i in range(8):
        p = Z.generate_one(n, m, seed=0, index=i)
        assert p.table[0] == list(range(n))
        assert all(sorted(row) == list(range(n)) for row in p.table[1:])
        assert all(Z.clue_true(c, p.table) for c in p.clues)
        # independent complete search: exactly one solution, the ground truth
        count, sol = Z.count_solutions(n, m, p.clues)
        assert count == 1 and sol == p.table
        # fill order covers every attribute cell once with the true value (PUZZLES.md section 7 fix)
        assert len(p.fills) == n * m
        assert sorted((r, h) for r, h, _ in p.fills) == [(r, h) for r in range(1, m + 1) for h in range(n)]
        assert all(p.table[r][h] == v for r, h, v in p.fills)
        # the restricted solver deduces the table from the kept clues alone
        ok, fills, _, final = Z.solve_with_fill_order(n, m, p.clues)
        assert ok and final == p.table[1:] and fills == p.fills


def test_every_kept_clue_is_used_by_the_solver() -> None:
    for i in range(6):
        p = Z.generate_one(4, 4, seed=1, index=i)
        solver = Z.DeductiveSolver(4, 4, p.clues)
        assert solver.run()
        assert solver.used == set(range(len(p.clues)))


def test_all_clue_types_appear_and_tokens_match_shah_layout() -> None:
    puzzles = [Z.generate_one(4, 4, seed=2, index=i) for i in range(25)]
    kinds = {c.kind for p in puzzles for c in p.clues}
    assert kinds == set(Z.CLUE_TYPES)
    c = Z.Clue("immediate-left", ((0, 2),), ((1, 2),))
    assert " ".join(c.tokens()) == "immediate-left LHS n 0 2 RHS c 1 2 CLUE_END"
    c3 = Z.Clue("inbetween", ((1, 0),), ((2, 1), (3, 2)))
    assert " ".join(c3.tokens()) == "inbetween LHS c 1 0 RHS c 2 1 c 3 2 CLUE_END"
    assert Z.clues_from_json(Z.clues_to_json([c, c3])) == [c, c3]


def test_clue_semantics() -> None:
    n = 4
    assert Z.Clue("inbetween", ((1, 0),), ((1, 1), (1, 2))).holds((0, 2, 3), n)
    assert not Z.Clue("inbetween", ((1, 0),), ((1, 1), (1, 2))).holds((3, 2, 0), n)
    assert Z.Clue("ends", ((1, 0),)).holds((3,), n) and not Z.Clue("ends", ((1, 0),)).holds((2,), n)
    assert Z.Clue("nbr", ((1, 0),), ((2, 0),)).holds((2, 1), n)
    assert not Z.Clue("nbr", ((1, 0),), ((2, 0),)).holds((2, 2), n)
    assert Z.Clue("left-of", ((1, 0),), ((2, 0),)).holds((0, 3), n)
    assert not Z.Clue("immediate-left", ((1, 0),), ((2, 0),)).holds((0, 2), n)


def test_hand_built_deduction_and_solution_count() -> None:
    # 3 houses, one attribute: value 2 lives in house 2; value 0 is immediately left of value 1.
    left = Z.Clue("immediate-left", ((1, 0),), ((1, 1),))
    place = Z.Clue("=", ((0, 2),), ((1, 2),))
    assert Z.count_solutions(3, 1, [left])[0] == 2
    count, sol = Z.count_solutions(3, 1, [left, place])
    assert count == 1 and sol == [[0, 1, 2], [0, 1, 2]]
    ok, fills, level, table = Z.solve_with_fill_order(3, 1, [left, place])
    assert ok and table == [[0, 1, 2]] and level == 1
    assert fills[0] == (1, 2, 2) and len(fills) == 3


def test_generation_reproducible_and_canvas_layout() -> None:
    a = Z.generate_zebra([(3, 3), (4, 3)], 6, seed=5)
    b = Z.generate_zebra([(3, 3), (4, 3)], 6, seed=5)
    assert [x.puzzle_string() for x in a] == [x.puzzle_string() for x in b]
    p = a[0]
    canvas = Z.table_to_canvas(p.table, p.houses, p.attributes)
    assert len(canvas) == 36
    assert canvas.count(".") == 36 - p.houses * p.attributes
    assert canvas[Z.canvas_position(1, p.table[1][0])] == "0"
    assert Z.canvas_to_table(canvas, p.houses, p.attributes) == p.table


def test_answer_as_clues_states_every_cell_once_in_a_seeded_order() -> None:
    p = Z.generate_one(4, 3, seed=2, index=7)
    screen = Z.answer_as_clues(p, seed=2)
    assert screen.table == p.table and screen.n_clues == 12
    stated = {c.lhs[0]: c.rhs[0] for c in screen.clues}
    assert all(c.kind == "=" for c in screen.clues)
    assert stated == {(r, v): (0, h) for r in range(1, 4) for h, v in enumerate(p.table[r])}
    assert Z.count_solutions(4, 3, screen.clues) == (1, p.table)
    (r, v), (_, h) = screen.clues[0].lhs[0], screen.clues[0].rhs[0]
    assert screen.prompt_tokens()[:10] == ["=", "LHS", "c", str(r), str(v), "RHS", "n", "0", str(h), "CLUE_END"]
    assert Z.answer_as_clues(p, seed=2).clues == screen.clues
    orders = {tuple(Z.answer_as_clues(p, seed=s).clues) for s in range(4)}
    assert len(orders) > 1, "the clue order must depend on the seed"


def test_canvas_cell_of_an_entity_holds_its_house() -> None:
    # 3 houses, 2 attributes; row 1 puts value 2 in house 0, value 0 in house 1, value 1 in house 2
    table = [[0, 1, 2], [2, 0, 1], [0, 1, 2]]
    canvas = Z.table_to_canvas(table, 3, 2)
    assert canvas[:6] == ["1", "2", "0", ".", ".", "."] and canvas[6:12] == ["0", "1", "2", ".", ".", "."]
    assert canvas[12:] == ["."] * 24
    # a clue is a constraint between the cells it names: "(1, 2) lives with (2, 0)" is "cell 2 == cell 6"
    same = Z.Clue("=", ((1, 2),), ((2, 0),))
    assert Z.clue_true(same, table) and canvas[Z.canvas_position(1, 2)] == canvas[Z.canvas_position(2, 0)] == "0"
    # two values of a row claiming one house give no table row; an out-of-range house counts as unreadable
    clash = list(canvas)
    clash[0] = clash[1]
    assert Z.canvas_to_table(clash, 3, 2)[1] == [2, None, None]
    far = list(canvas)
    far[0] = "5"
    assert Z.canvas_to_table(far, 3, 2)[1] == [2, None, 1]


def test_two_house_puzzles_draw_only_clues_that_can_hold_there() -> None:
    # With two houses every entity is at an end and none lies between two others: such clues would say nothing
    # ("ends") or never be drawable ("inbetween"), so the sampler must not draw them.
    kinds = {c.kind for i in range(60) for c in Z.generate_one(2, 3, seed=0, index=i).clues}
    assert kinds == set(Z.CLUE_TYPES) - {"ends", "inbetween"}


def test_rejects_unsupported_sizes() -> None:
    with pytest.raises(ValueError, match=r"2\.\.6, got 1x3"):
        Z.generate_one(1, 3, seed=0, index=0)
    with pytest.raises(ValueError):
        Z.generate_zebra([(7, 3)], 1, seed=0)
