"""Sudoku (4x4, 6x6, 9x9): exact bitmask solver, minimal-puzzle generator, 7-technique grader.

Grids are flat row-major sequences of ints, 0 = blank. Candidates are bitmasks with
bit ``v - 1`` set when value ``v`` is still possible; filled cells have mask 0.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numba import njit

from puzzles.parallel import parallel_map

BOX_SHAPES: dict[int, tuple[int, int]] = {4: (2, 2), 6: (2, 3), 9: (3, 3)}

# Shah's strategy ids (dokusan's ``solvers.steps()`` order); 1 is unused (pencil marking).
GIVEN = 0
LONE_SINGLE = 2
HIDDEN_SINGLE = 3
NAKED_PAIR = 4
NAKED_TRIPLE = 5
LOCKED_CANDIDATE = 6
XY_WING = 7
UNIQUE_RECTANGLE = 8
TECHNIQUE_NAMES: dict[int, str] = {
    GIVEN: "given",
    LONE_SINGLE: "lone_single",
    HIDDEN_SINGLE: "hidden_single",
    NAKED_PAIR: "naked_pair",
    NAKED_TRIPLE: "naked_triple",
    LOCKED_CANDIDATE: "locked_candidate",
    XY_WING: "xy_wing",
    UNIQUE_RECTANGLE: "unique_rectangle",
}


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Cell/unit incidence for an ``n x n`` grid with ``br x bc`` boxes."""

    br: int
    bc: int
    n: int
    rows: tuple[tuple[int, ...], ...]
    cols: tuple[tuple[int, ...], ...]
    boxes: tuple[tuple[int, ...], ...]
    units: tuple[tuple[int, ...], ...]  # rows, then columns, then boxes
    peers: tuple[frozenset[int], ...]

    @property
    def ncells(self) -> int:
        return self.n * self.n

    def box_of(self, cell: int) -> int:
        r, c = divmod(cell, self.n)
        return (r // self.br) * (self.n // self.bc) + c // self.bc


@functools.lru_cache(maxsize=None)
def geometry(size: int) -> Geometry:
    """Geometry for a supported grid size (4, 6 or 9)."""
    if size not in BOX_SHAPES:
        raise ValueError(f"unsupported Sudoku size {size}; expected one of {sorted(BOX_SHAPES)}")
    br, bc = BOX_SHAPES[size]
    n = size
    rows = tuple(tuple(r * n + c for c in range(n)) for r in range(n))
    cols = tuple(tuple(r * n + c for r in range(n)) for c in range(n))
    boxes = tuple(
        tuple((b0 + dr) * n + c0 + dc for dr in range(br) for dc in range(bc))
        for b0 in range(0, n, br)
        for c0 in range(0, n, bc)
    )
    peers = []
    for cell in range(n * n):
        p: set[int] = set()
        for unit in rows + cols + boxes:
            if cell in unit:
                p.update(unit)
        p.discard(cell)
        peers.append(frozenset(p))
    return Geometry(br, bc, n, rows, cols, boxes, rows + cols + boxes, tuple(peers))


def canvas_factors(size: int) -> list[list[int]]:
    """Row, column and box index of every cell (row-major): the `canvas_position_factors` of a Sudoku canvas."""
    geo = geometry(size)
    cells = range(geo.ncells)
    return [[c // size for c in cells], [c % size for c in cells], [geo.box_of(c) for c in cells]]


def random_symmetries(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`[count, size²]` cell permutations σ from the grid's validity-preserving symmetries (bands and the rows inside
    each, stacks and the columns inside each, and the transpose when boxes are square): `grid[σ]` is a valid grid
    whenever `grid` is."""
    geo = geometry(size)
    br, bc = geo.br, geo.bc

    def lines(block: int) -> np.ndarray:  # [count, size]: blocks permuted, then the lines inside each block
        blocks = np.argsort(rng.random((count, size // block)), axis=1)
        inner = np.argsort(rng.random((count, size // block, block)), axis=2)
        return (blocks[:, :, None] * block + np.take_along_axis(inner, blocks[:, :, None], axis=1)).reshape(count, -1)

    rows, cols = lines(br), lines(bc)
    sigma = rows[:, :, None] * size + cols[:, None, :]
    if br == bc:
        flip = rng.random(count) < 0.5
        sigma[flip] = sigma[flip].transpose(0, 2, 1)
    return sigma.reshape(count, size * size)


# --------------------------------------------------------------------------- exact solver


@njit(cache=True)
def _popcount(x: int) -> int:
    c = 0
    while x:
        x &= x - 1
        c += 1
    return c


@njit(cache=True)
def _search(grid, br, bc, limit, order, sol):  # pragma: no cover - compiled
    """Count solutions up to ``limit`` by iterative DFS with MRV; first one goes to ``sol``.

    ``order[d]`` is the value order tried at depth ``d`` (random for grid generation).
    """
    n = br * bc
    nc = n * n
    full = (1 << n) - 1
    nbc = n // bc
    g = grid.copy()
    rows = np.zeros(n, np.int64)
    cols = np.zeros(n, np.int64)
    boxes = np.zeros(n, np.int64)
    empties = np.empty(nc, np.int64)
    ne = 0
    for i in range(nc):
        v = g[i]
        if v == 0:
            empties[ne] = i
            ne += 1
            continue
        r = i // n
        c = i % n
        b = (r // br) * nbc + c // bc
        bit = 1 << (v - 1)
        if (rows[r] | cols[c] | boxes[b]) & bit:
            return 0
        rows[r] |= bit
        cols[c] |= bit
        boxes[b] |= bit
    if ne == 0:
        sol[:] = g
        return 1
    cell_at = np.empty(ne, np.int64)
    pos = np.zeros(ne, np.int64)
    count = 0
    d = 0
    choose = True
    while True:
        if choose:
            best = -1
            best_count = n + 1
            for k in range(ne):
                i = empties[k]
                if g[i] != 0:
                    continue
                r = i // n
                c = i % n
                b = (r // br) * nbc + c // bc
                pc = _popcount(full & ~(rows[r] | cols[c] | boxes[b]))
                if pc < best_count:
                    best = i
                    best_count = pc
                    if pc <= 1:
                        break
            cell_at[d] = best
            pos[d] = 0
            choose = False
        i = cell_at[d]
        r = i // n
        c = i % n
        b = (r // br) * nbc + c // bc
        if g[i] != 0:
            bit = ~(1 << (g[i] - 1))
            rows[r] &= bit
            cols[c] &= bit
            boxes[b] &= bit
            g[i] = 0
        free = full & ~(rows[r] | cols[c] | boxes[b])
        placed = False
        while pos[d] < n:
            v = order[d, pos[d]]
            pos[d] += 1
            bit = 1 << (v - 1)
            if free & bit:
                g[i] = v
                rows[r] |= bit
                cols[c] |= bit
                boxes[b] |= bit
                placed = True
                break
        if placed:
            if d + 1 == ne:
                count += 1
                if count == 1:
                    sol[:] = g
                if count >= limit:
                    return count
            else:
                d += 1
                choose = True
        else:
            if d == 0:
                return count
            d -= 1


@njit(cache=True)
def _dig(solution, br, bc, perm, order):  # pragma: no cover - compiled
    """Blank cells in ``perm`` order, keeping each blank only if the solution stays unique."""
    puzzle = solution.copy()
    scratch = solution.copy()
    for k in range(perm.shape[0]):
        i = perm[k]
        v = puzzle[i]
        puzzle[i] = 0
        if _search(puzzle, br, bc, 2, order, scratch) != 1:
            puzzle[i] = v
    return puzzle


def _identity_order(size: int) -> np.ndarray:
    return np.tile(np.arange(1, size + 1, dtype=np.int8), (size * size, 1))


def _as_grid(grid: Sequence[int] | np.ndarray, size: int) -> np.ndarray:
    arr = np.asarray(grid, dtype=np.int8).reshape(-1)
    if arr.shape[0] != size * size:
        raise ValueError(f"grid has {arr.shape[0]} cells, expected {size * size}")
    return arr


def count_solutions(grid: Sequence[int] | np.ndarray, limit: int = 2, size: int | None = None) -> int:
    """Number of solutions of ``grid`` (0 = blank), counting no further than ``limit``."""
    size = size or int(round(len(grid) ** 0.5))
    br, bc = BOX_SHAPES[size]
    arr = _as_grid(grid, size)
    return int(_search(arr, br, bc, limit, _identity_order(size), arr.copy()))


def solve(grid: Sequence[int] | np.ndarray, size: int | None = None) -> tuple[int, np.ndarray | None]:
    """Return ``(count up to 2, first solution or None)``."""
    size = size or int(round(len(grid) ** 0.5))
    br, bc = BOX_SHAPES[size]
    arr = _as_grid(grid, size)
    sol = arr.copy()
    count = int(_search(arr, br, bc, 2, _identity_order(size), sol))
    return count, (sol if count else None)


def random_full_grid(size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly-seeded random complete grid (randomised DFS with MRV)."""
    br, bc = BOX_SHAPES[size]
    order = rng.permuted(_identity_order(size), axis=1)
    grid = np.zeros(size * size, np.int8)
    sol = grid.copy()
    if _search(grid, br, bc, 1, order, sol) != 1:
        raise RuntimeError("empty grid has no solution")  # cannot happen
    return sol


def minimal_puzzle(solution: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Remove givens in random order while the solution stays unique (a minimal puzzle)."""
    size = int(round(len(solution) ** 0.5))
    br, bc = BOX_SHAPES[size]
    perm = rng.permutation(size * size).astype(np.int64)
    return _dig(np.asarray(solution, np.int8), br, bc, perm, _identity_order(size))


# --------------------------------------------------------------------------- human techniques


class Step(NamedTuple):
    """One technique application: placements ``(cell, value)`` or eliminations ``(cell, mask)``."""

    technique: int
    fills: tuple[tuple[int, int], ...] = ()
    elims: tuple[tuple[int, int], ...] = ()


def _bits(mask: int) -> list[int]:
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


def initial_candidates(geo: Geometry, grid: Sequence[int]) -> list[int]:
    """Pencil marks for every blank cell (0 for filled cells)."""
    full = (1 << geo.n) - 1
    cands = []
    for cell, v in enumerate(grid):
        if v:
            cands.append(0)
        else:
            used = 0
            for p in geo.peers[cell]:
                if grid[p]:
                    used |= 1 << (grid[p] - 1)
            cands.append(full & ~used)
    return cands


def lone_single(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """A blank cell with exactly one candidate."""
    for cell, m in enumerate(cands):
        if m and m & (m - 1) == 0:
            return Step(LONE_SINGLE, fills=((cell, m.bit_length()),))
    return None


def hidden_single(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """A value with exactly one possible cell in some unit."""
    for unit in geo.units:
        once = twice = 0
        for cell in unit:
            m = cands[cell]
            twice |= once & m
            once |= m
        once &= ~twice
        if once:
            bit = once & -once
            for cell in unit:
                if cands[cell] & bit:
                    return Step(HIDDEN_SINGLE, fills=((cell, bit.bit_length()),))
    return None


def _subset_elims(unit: Sequence[int], cells: Sequence[int], mask: int, cands: Sequence[int]) -> tuple:
    return tuple((c, cands[c] & mask) for c in unit if c not in cells and cands[c] & mask)


def naked_pair(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """Two cells of a unit sharing the same two candidates remove them from the unit."""
    for unit in geo.units:
        seen: dict[int, int] = {}
        for cell in unit:
            m = cands[cell]
            if m and bin(m).count("1") == 2:
                if m in seen:
                    elims = _subset_elims(unit, (seen[m], cell), m, cands)
                    if elims:
                        return Step(NAKED_PAIR, elims=elims)
                else:
                    seen[m] = cell
    return None


def naked_triple(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """Three cells of a unit whose candidates span three values remove those values elsewhere."""
    for unit in geo.units:
        small = [c for c in unit if cands[c] and bin(cands[c]).count("1") <= 3]
        for trio in itertools.combinations(small, 3):
            m = cands[trio[0]] | cands[trio[1]] | cands[trio[2]]
            if bin(m).count("1") == 3:
                elims = _subset_elims(unit, trio, m, cands)
                if elims:
                    return Step(NAKED_TRIPLE, elims=elims)
    return None


def locked_candidates(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """Pointing (box -> line) and claiming (line -> box) eliminations."""
    n = geo.n
    for box in geo.boxes:
        for b in range(n):
            bit = 1 << b
            where = [c for c in box if cands[c] & bit]
            if len(where) < 2:
                continue
            for line_of, lines in ((lambda c: c // n, geo.rows), (lambda c: c % n, geo.cols)):
                idx = {line_of(c) for c in where}
                if len(idx) == 1:
                    elims = tuple((c, bit) for c in lines[idx.pop()] if c not in box and cands[c] & bit)
                    if elims:
                        return Step(LOCKED_CANDIDATE, elims=elims)
    for line in geo.rows + geo.cols:
        for b in range(n):
            bit = 1 << b
            where = [c for c in line if cands[c] & bit]
            if len(where) < 2:
                continue
            box_ids = {geo.box_of(c) for c in where}
            if len(box_ids) == 1:
                box = geo.boxes[box_ids.pop()]
                elims = tuple((c, bit) for c in box if c not in line and cands[c] & bit)
                if elims:
                    return Step(LOCKED_CANDIDATE, elims=elims)
    return None


def xy_wing(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """Pivot {x,y} seeing pincers {x,z} and {y,z}: z leaves every cell seeing both pincers.

    The pivot is, by construction, the cell that sees both pincers (dokusan instead takes
    the middle cell by position, which yields wrong eliminations; PUZZLES.md section 7).
    """
    bivalue = [c for c, m in enumerate(cands) if m and bin(m).count("1") == 2]
    for pivot in bivalue:
        pm = cands[pivot]
        wings = [c for c in bivalue if c in geo.peers[pivot] and bin(cands[c] & pm).count("1") == 1]
        for a, b in itertools.combinations(wings, 2):
            am, bm = cands[a], cands[b]
            z = am & ~pm
            if z != bm & ~pm or (am & pm) == (bm & pm):
                continue
            targets = (geo.peers[a] & geo.peers[b]) - {pivot}
            elims = tuple((c, z) for c in sorted(targets) if cands[c] & z)
            if elims:
                return Step(XY_WING, elims=elims)
    return None


def unique_rectangle(geo: Geometry, grid: Sequence[int], cands: Sequence[int]) -> Step | None:
    """Type 1: three corners hold only {a,b}; the fourth corner cannot be a or b.

    Valid because generated puzzles have a unique solution and all corners are blanks
    (never givens), so an {a,b} deadly pattern would admit a second solution.
    """
    n = geo.n
    for r1, r2 in itertools.combinations(range(n), 2):
        for c1, c2 in itertools.combinations(range(n), 2):
            corners = (r1 * n + c1, r1 * n + c2, r2 * n + c1, r2 * n + c2)
            if len({geo.box_of(c) for c in corners}) != 2:
                continue
            ms = [cands[c] for c in corners]
            if not all(ms):
                continue
            for k in range(4):
                others = [ms[j] for j in range(4) if j != k]
                m = others[0]
                if bin(m).count("1") == 2 and others[1] == m and others[2] == m and ms[k] & m == m and ms[k] != m:
                    return Step(UNIQUE_RECTANGLE, elims=((corners[k], m),))
    return None


TECHNIQUES = (lone_single, hidden_single, naked_pair, naked_triple, locked_candidates, xy_wing, unique_rectangle)


@dataclass
class HumanSolve:
    """Result of the technique solver.

    ``fills`` lists ``(cell, value, strategy)`` for each blank in fill order; the
    strategy of a fill is the hardest technique applied since the previous fill, so an
    elimination technique is credited to the placement it unlocked.
    """

    solved: bool
    fills: list[tuple[int, int, int]]
    hardest: int
    technique_counts: dict[int, int] = field(default_factory=dict)


def human_solve(puzzle: Sequence[int], solution: Sequence[int], size: int | None = None) -> HumanSolve:
    """Solve with the seven techniques only (no guessing); every step is checked against ``solution``."""
    size = size or int(round(len(puzzle) ** 0.5))
    geo = geometry(size)
    grid = [int(v) for v in puzzle]
    sol = [int(v) for v in solution]
    cands = initial_candidates(geo, grid)
    fills: list[tuple[int, int, int]] = []
    counts: dict[int, int] = {}
    hardest = GIVEN
    pending = GIVEN
    blanks = grid.count(0)
    while len(fills) < blanks:
        for technique in TECHNIQUES:
            step = technique(geo, grid, cands)
            if step is not None:
                break
        else:
            return HumanSolve(False, fills, hardest, counts)
        counts[step.technique] = counts.get(step.technique, 0) + 1
        hardest = max(hardest, step.technique)
        pending = max(pending, step.technique)
        # Explicit raises, not asserts: `python -O` strips asserts, and a wrong step would then silently grade (and
        # record the fill order of) a puzzle from a deduction that contradicts its solution.
        for cell, mask in step.elims:
            if mask >> (sol[cell] - 1) & 1:
                raise AssertionError(f"technique {step.technique} removed the solution {sol[cell]} at cell {cell}")
            cands[cell] &= ~mask
        for cell, v in step.fills:
            if v != sol[cell]:
                raise AssertionError(f"technique {step.technique} placed {v} at cell {cell}, solution {sol[cell]}")
            grid[cell] = v
            cands[cell] = 0
            bit = ~(1 << (v - 1))
            for p in geo.peers[cell]:
                cands[p] &= bit
            fills.append((cell, v, pending))
            pending = GIVEN
    return HumanSolve(True, fills, hardest, counts)


# --------------------------------------------------------------------------- generation


@dataclass
class SudokuPuzzle:
    """A generated puzzle with its unique solution and technique-solver trace."""

    size: int
    index: int
    puzzle: list[int]
    solution: list[int]
    technique_solvable: bool
    hardest: int
    fills: list[tuple[int, int, int]]
    attempts: int

    @property
    def n_givens(self) -> int:
        return sum(1 for v in self.puzzle if v)

    def puzzle_string(self) -> str:
        return "".join(str(v) if v else "." for v in self.puzzle)


def verify_puzzle(p: SudokuPuzzle) -> None:
    """Independent exact check: unique solution equal to the recorded one; givens consistent."""
    count, sol = solve(p.puzzle, p.size)
    if count != 1 or sol is None or sol.tolist() != p.solution:
        raise AssertionError(f"puzzle {p.index}: {count} solutions or solution mismatch")
    if any(g and g != s for g, s in zip(p.puzzle, p.solution)):
        raise AssertionError(f"puzzle {p.index}: givens disagree with the solution")
    if p.technique_solvable:
        filled = {c for c, _, _ in p.fills}
        blanks = {c for c, v in enumerate(p.puzzle) if v == 0}
        if filled != blanks or len(p.fills) != len(blanks):
            raise AssertionError(f"puzzle {p.index}: fills do not cover the blanks exactly once")


def generate_one(
    size: int,
    seed: int,
    index: int,
    require_technique_solvable: bool = True,
    max_attempts: int = 10_000,
) -> SudokuPuzzle:
    """Puzzle number ``index`` of the stream ``seed`` (depends only on ``(seed, index)``)."""
    rng = np.random.default_rng([seed, index])
    for attempt in range(1, max_attempts + 1):
        solution = random_full_grid(size, rng)
        puzzle = minimal_puzzle(solution, rng)
        result = human_solve(puzzle, solution, size)
        if result.solved or not require_technique_solvable:
            p = SudokuPuzzle(
                size=size,
                index=index,
                puzzle=puzzle.tolist(),
                solution=solution.tolist(),
                technique_solvable=result.solved,
                hardest=result.hardest,
                fills=result.fills,
                attempts=attempt,
            )
            verify_puzzle(p)
            return p
    raise RuntimeError(f"no technique-solvable puzzle within {max_attempts} attempts")


def generate_sudoku(
    size: int,
    n: int,
    seed: int,
    require_technique_solvable: bool = True,
    start: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> list[SudokuPuzzle]:
    """Puzzles ``start .. start+n-1`` of the stream ``seed``; identical for any ``workers``."""
    geometry(size)  # validate before spawning workers
    if workers > 1:
        # Compile/load the numba kernels once here so forked workers inherit them.
        minimal_puzzle(random_full_grid(size, np.random.default_rng(0)), np.random.default_rng(0))
    fn = functools.partial(
        generate_one, size, seed, require_technique_solvable=require_technique_solvable
    )
    return parallel_map(fn, range(start, start + n), workers=workers, desc=f"sudoku {size}x{size}", progress=progress)
