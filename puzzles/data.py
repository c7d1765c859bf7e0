"""Puzzle datasets for the diffusion model: rows, deduplicated splits, atomic ``save_to_disk``.

Row contract (shared by Sudoku and Zebra so the splits can be concatenated):

- ``prompt``: space-separated encoder tokens (Sudoku grid with ``_`` blanks; Zebra clues),
- ``canvas``: space-separated solution tokens (Sudoku ``size*size``; Zebra fixed 36 = 6x6 by entity, or houses x
  attributes for kind ``zebra-house``),
- ``frozen``: 0/1 per canvas token (givens; Zebra ``.`` filler),
- ``solver_order``: canvas positions of the non-frozen cells in human-solver order,
- ``kind``, ``size``, ``difficulty``, ``n_clues``, ``technique_solvable``, ``clues`` (Zebra JSON).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Features, Sequence as SeqFeature, Value

from puzzles import sudoku, zebra
from puzzles.files import staged_dir

FEATURES = Features(
    {
        "prompt": Value("string"),
        "canvas": Value("string"),
        "frozen": SeqFeature(Value("int8")),
        "solver_order": SeqFeature(Value("int32")),
        "kind": Value("string"),
        "size": Value("string"),
        "difficulty": Value("int32"),
        "n_clues": Value("int32"),
        "technique_solvable": Value("bool"),
        "clues": Value("string"),
    }
)
# Sudoku difficulty for puzzles the seven techniques cannot finish.
SUDOKU_BEYOND_TECHNIQUES = 9


def sudoku_row(p: sudoku.SudokuPuzzle) -> dict[str, Any]:
    """Dataset row; an unsolvable puzzle's order continues row-major after the solver gets stuck."""
    order = [cell for cell, _, _ in p.fills]
    done = set(order)
    order += [c for c, v in enumerate(p.puzzle) if v == 0 and c not in done]
    return {
        "prompt": " ".join(str(v) if v else "_" for v in p.puzzle),
        "canvas": " ".join(str(v) for v in p.solution),
        "frozen": [1 if v else 0 for v in p.puzzle],
        "solver_order": order,
        "kind": "sudoku",
        "size": f"{p.size}x{p.size}",
        "difficulty": p.hardest if p.technique_solvable else SUDOKU_BEYOND_TECHNIQUES,
        "n_clues": p.n_givens,
        "technique_solvable": p.technique_solvable,
        "clues": "",
    }


def zebra_row(p: zebra.ZebraPuzzle, house_canvas: bool = False) -> dict[str, Any]:
    """Entity canvas (kind `zebra`, 36 cells, filler frozen) or, with `house_canvas`, Shah et al.'s house canvas sized
    to the puzzle (kind `zebra-house`)."""
    if house_canvas:
        canvas = zebra.table_to_house_canvas(p.table, p.houses, p.attributes)
        order = [zebra.house_canvas_position(r, h, p.houses) for r, h, _ in p.fills]
    else:
        canvas = zebra.table_to_canvas(p.table, p.houses, p.attributes)
        order = [zebra.canvas_position(r, v) for r, _, v in p.fills]
    return {
        "prompt": " ".join(p.prompt_tokens()),
        "canvas": " ".join(canvas),
        "frozen": [1 if t == zebra.FILLER else 0 for t in canvas],
        "solver_order": order,
        "kind": zebra.HOUSE_KIND if house_canvas else zebra.KIND,
        "size": f"{p.houses}x{p.attributes}",
        "difficulty": p.level,
        "n_clues": p.n_clues,
        "technique_solvable": True,
        "clues": zebra.clues_to_json(p.clues),
    }


def prompt_key(row: dict[str, Any]) -> tuple[str, str]:
    """Identity of a puzzle: its size and prompt (clues or givens)."""
    return row["size"], row["prompt"]


def answer_key(row: dict[str, Any]) -> tuple[str, str]:
    """Identity of an answer-as-clues puzzle: its size and canvas. Its clue set is a function of the answer and
    only the clue order is drawn, so two prompts with one canvas are the same puzzle shuffled."""
    return row["size"], row["canvas"]


def unique_rows(
    generate: Callable[[int, int], list[dict[str, Any]]],
    n: int,
    max_factor: int = 20,
    key: Callable[[dict[str, Any]], tuple[str, str]] = prompt_key,
) -> tuple[list[dict[str, Any]], int]:
    """First ``n`` rows of an index stream with distinct ``key``; ``generate(start, count)`` makes rows.

    Rounds are cut by index, never by worker, so the result is independent of parallelism.
    Returns ``(rows, indices consumed)``.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    start = 0
    while len(rows) < n:
        if start >= max_factor * max(n, 1):
            raise RuntimeError(f"only {len(rows)} distinct puzzles after {start} draws; the space is too small")
        # Small overshoot: surplus rows are discarded; a shortfall from duplicates costs another round.
        missing = n - len(rows)
        count = missing + max(1, missing // 50)
        for row in generate(start, count):
            row_key = key(row)
            if row_key not in seen and len(rows) < n:
                seen.add(row_key)
                rows.append(row)
        start += count
    return rows, start


def split_rows(rows: list[dict[str, Any]], test_size: int, seed: int) -> DatasetDict:
    """Shuffle once with ``seed`` and cut; the rows are already distinct puzzles, so the splits are disjoint."""
    if not 1 <= test_size < len(rows):
        raise ValueError(f"test_size {test_size} must be in [1, {len(rows)})")
    perm = np.random.default_rng([seed, 2**31 - 1]).permutation(len(rows))
    test = [rows[i] for i in perm[:test_size]]
    train = [rows[i] for i in perm[test_size:]]
    return DatasetDict(
        {
            "train": Dataset.from_list(train, features=FEATURES),
            "test": Dataset.from_list(test, features=FEATURES),
        }
    )


def _check_counts(n_train: int, n_test: int) -> None:
    if n_train < 1:
        raise ValueError(f"n_train must be an integer >= 1, got {n_train}")
    if n_test < 1:
        # an empty split cannot be saved (datasets writes no schema for it) and every evaluation reads the test split
        raise ValueError(f"n_test must be an integer >= 1, got {n_test}")


def build_sudoku(
    size: int,
    n_train: int,
    n_test: int,
    seed: int,
    workers: int = 1,
    require_technique_solvable: bool = True,
    progress: bool = True,
) -> tuple[DatasetDict, dict[str, Any]]:
    """Sudoku splits plus generation stats (``puzzles_per_s`` counts kept, distinct puzzles)."""
    _check_counts(n_train, n_test)

    def generate(start: int, count: int) -> list[dict[str, Any]]:
        ps = sudoku.generate_sudoku(
            size, count, seed, require_technique_solvable, start=start, workers=workers, progress=progress
        )
        return [sudoku_row(p) for p in ps]

    t0 = time.perf_counter()
    rows, drawn = unique_rows(generate, n_train + n_test)
    elapsed = time.perf_counter() - t0
    stats = _stats("sudoku", len(rows), drawn, elapsed, seed, workers, size=f"{size}x{size}")
    return split_rows(rows, n_test, seed), stats


def build_zebra(
    sizes: Sequence[tuple[int, int]],
    n_train: int,
    n_test: int,
    seed: int,
    workers: int = 1,
    progress: bool = True,
    answer_as_clues: bool = False,
    house_canvas: bool = False,
) -> tuple[DatasetDict, dict[str, Any]]:
    """Zebra splits; each puzzle's ``(houses, attributes)`` is drawn uniformly from ``sizes``; ``house_canvas``: rows
    on the house canvas (`zebra_row`). ``answer_as_clues``:
    each puzzle's clues replaced by its answer (`zebra.answer_as_clues`), the lookup screen; its puzzles are then
    told apart by their answers, so no answer occurs twice and none is shared by train and test."""
    _check_counts(n_train, n_test)
    if answer_as_clues:
        # One answer per table; its attribute rows are independent permutations of the houses.
        distinct_sizes = sorted({(int(h), int(a)) for h, a in sizes})
        answers = sum(math.factorial(h) ** a for h, a in distinct_sizes)
        if n_train + n_test > answers:
            raise ValueError(
                f"answer_as_clues: n_train + n_test = {n_train + n_test} puzzles need as many distinct answers, but "
                f"sizes {distinct_sizes} have only {answers}; ask for fewer or add larger sizes"
            )

    def generate(start: int, count: int) -> list[dict[str, Any]]:
        ps = zebra.generate_zebra(sizes, count, seed, start=start, workers=workers, progress=progress)
        return [zebra_row(zebra.answer_as_clues(p, seed) if answer_as_clues else p, house_canvas) for p in ps]

    t0 = time.perf_counter()
    rows, drawn = unique_rows(generate, n_train + n_test, key=answer_key if answer_as_clues else prompt_key)
    elapsed = time.perf_counter() - t0
    stats = _stats(
        zebra.HOUSE_KIND if house_canvas else zebra.KIND, len(rows), drawn, elapsed, seed, workers,
        sizes=[list(s) for s in sizes], answer_as_clues=answer_as_clues,
    )
    return split_rows(rows, n_test, seed), stats


def _stats(kind: str, kept: int, drawn: int, elapsed: float, seed: int, workers: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        **extra,
        "seed": seed,
        "workers": workers,
        "puzzles": kept,
        "indices_drawn": drawn,
        "seconds": round(elapsed, 3),
        "puzzles_per_s": round(kept / elapsed, 2) if elapsed > 0 else float("inf"),
    }


def save_atomic(ds: DatasetDict, out: str | os.PathLike, metadata: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """``save_to_disk`` into a sibling temp dir, then rename into place.

    Readers never see a half-written ``out``; a failure removes the temp dir and leaves
    any previous ``out`` untouched.
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    with staged_dir(out) as tmp:
        ds.save_to_disk(str(tmp))
        if metadata is not None:
            (tmp / "generation.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return out
