"""Solution checkers and aggregate metrics for predicted puzzle canvases."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from puzzles import zebra
from puzzles.sudoku import BOX_SHAPES

Tokens = str | Sequence[str] | Sequence[int]


def _tokens(x: Tokens) -> list[str]:
    return x.split() if isinstance(x, str) else [str(t) for t in x]


def _ints(x: Tokens, blank: str = "_") -> list[int | None]:
    """Token list to ints; the blank token becomes 0, anything unparsable ``None``."""
    out: list[int | None] = []
    for t in _tokens(x):
        out.append(0 if t == blank else int(t) if t.isdigit() else None)
    return out


def sudoku_is_solved(canvas: Tokens, puzzle: Tokens, box_shape: tuple[int, int] | None = None) -> bool:
    """Every row, column and box holds ``1..n`` once, and every given is kept."""
    grid = _ints(canvas)
    givens = _ints(puzzle)
    n = math.isqrt(len(grid))
    if n * n != len(grid) or len(givens) != len(grid):
        return False
    br, bc = box_shape or BOX_SHAPES.get(n, (0, 0))
    if br * bc != n:
        return False
    want = set(range(1, n + 1))
    if any(g and g != v for g, v in zip(givens, grid)):
        return False
    rows = [grid[r * n : (r + 1) * n] for r in range(n)]
    cols = [grid[c::n] for c in range(n)]
    boxes = [
        [grid[(r0 + dr) * n + c0 + dc] for dr in range(br) for dc in range(bc)]
        for r0 in range(0, n, br)
        for c0 in range(0, n, bc)
    ]
    return all(set(u) == want for u in rows + cols + boxes)


def zebra_is_solved(
    table: Sequence[Sequence[int | None]],
    clues: Sequence[zebra.Clue] | str,
    solution: Sequence[Sequence[int]] | None = None,
) -> bool:
    """``table``: attribute rows ``1..m`` (``m x n``). Each row a permutation, every clue true,
    and, when ``solution`` (same layout) is given, equal to it."""
    if isinstance(clues, str):
        clues = zebra.clues_from_json(clues)
    rows = [list(r) for r in table]
    if not rows:
        return False
    n = len(rows[0])
    if any(sorted(r, key=lambda v: -1 if v is None else v) != list(range(n)) for r in rows):
        return False
    full = [list(range(n))] + rows
    for c in clues:
        if any(r >= len(full) for r, _ in c.entities) or not zebra.clue_true(c, full):
            return False
    return solution is None or [list(r) for r in solution] == rows


def zebra_canvas_to_table(canvas: Tokens, size: str, kind: str = zebra.KIND) -> list[list[int | None]]:
    """Attribute rows of a Zebra canvas of `kind` (the 36-token entity canvas, or the house canvas) for a ``"HxA"``
    (houses x attributes) size."""
    n, m = (int(x) for x in size.split("x"))
    to_table = zebra.house_canvas_to_table if kind == zebra.HOUSE_KIND else zebra.canvas_to_table
    return to_table(_tokens(canvas), n, m)[1:]


def cell_accuracy(pred: Tokens, target: Tokens, frozen: Sequence[int] | None = None) -> tuple[int, int]:
    """``(correct, total)`` over non-frozen positions; a short prediction counts missing cells wrong."""
    p, t = _tokens(pred), _tokens(target)
    keep = [i for i in range(len(t)) if not (frozen and frozen[i])]
    return sum(1 for i in keep if i < len(p) and p[i] == t[i]), len(keep)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n``."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval holds p exactly; rounding would otherwise put the bound a hair inside it at p = 0 or 1
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def is_solved(pred: Tokens, row: Mapping[str, Any]) -> bool:
    """Check one predicted canvas against its dataset row."""
    if row["kind"] == "sudoku":
        return sudoku_is_solved(pred, givens(row))
    if row["kind"] in (zebra.KIND, zebra.HOUSE_KIND):
        size = row["size"]
        if len(_tokens(pred)) != len(_tokens(row["canvas"])):
            return False
        table = zebra_canvas_to_table(pred, size, row["kind"])
        return zebra_is_solved(table, row["clues"], zebra_canvas_to_table(row["canvas"], size, row["kind"]))
    raise ValueError(f"unknown puzzle kind {row['kind']!r}")


def givens(row: Mapping[str, Any]) -> list[str]:
    """The row's canvas with its free cells blanked (``_``): the Sudoku puzzle, whatever the prompt layout."""
    return [t if f else "_" for t, f in zip(_tokens(row["canvas"]), row["frozen"])]


def evaluate_predictions(predictions: Sequence[Tokens], rows: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """Solved rate with its 95% Wilson interval, and micro cell accuracy over non-frozen cells."""
    if len(predictions) != len(rows):
        raise ValueError(f"{len(predictions)} predictions for {len(rows)} rows")
    solved = correct = total = 0
    for pred, row in zip(predictions, rows):
        solved += is_solved(pred, row)
        c, t = cell_accuracy(pred, row["canvas"], row["frozen"])
        correct += c
        total += t
    n = len(rows)
    low, high = wilson_interval(solved, n)
    return {
        "solved": solved / n if n else 0.0,
        "solved_ci_low": low,
        "solved_ci_high": high,
        "cell_accuracy": correct / total if total else 0.0,
        "n": n,
    }
