"""Zebra (Einstein) puzzles: generator, restricted deductive solver, independent checker.

Clean-room reimplementation following the algorithm of the Apache-2.0
``google-research/google-research`` ``zebra_puzzle_generator`` (clue types and weights,
attribute/entity sampling biases, solve-after-each-clue, dropping unused clues, side
swaps), with the fill-order bug of PUZZLES.md section 7 fixed by diffing table snapshots.

Table layout: row 0 holds house positions (``table[0][h] == h``); rows ``1..m`` are the
categorical attributes, each a permutation of ``0..n-1`` over the ``n`` houses. An
entity is ``(row, value)``; row 0 entities (``n``) name a house position.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from puzzles.parallel import parallel_map

Entity = tuple[int, int]

CLUE_WEIGHTS: dict[str, int] = {
    "=": 4,
    "!=": 1,
    "nbr": 2,
    "ends": 2,
    "immediate-left": 2,
    "left-of": 2,
    "inbetween": 1,
}
CLUE_TYPES: tuple[str, ...] = tuple(CLUE_WEIGHTS)
SYMMETRIC_TYPES = frozenset({"=", "!=", "nbr"})
# 2 (houses or attributes) is no size of the paper's mixture (3..6) but a curriculum's first step; with 2 houses
# `_ClueSampler` draws neither "ends" nor "inbetween".
MIN_SIZE, MAX_SIZE = 2, 6
CANVAS_ROWS = CANVAS_COLS = MAX_SIZE  # fixed 6 attributes x 6 houses canvas
FILLER = "."
# dataset kinds: the entity canvas (`canvas_position`) and Shah et al.'s house canvas (`house_canvas_position`)
KIND, HOUSE_KIND = "zebra", "zebra-house"


@dataclass(frozen=True)
class Clue:
    """``lhs`` / ``rhs`` entity lists; ``inbetween`` means house(lhs) < house(rhs[0]) < house(rhs[1])."""

    kind: str
    lhs: tuple[Entity, ...]
    rhs: tuple[Entity, ...] = ()

    @property
    def entities(self) -> tuple[Entity, ...]:
        return self.lhs + self.rhs

    def holds(self, houses: Sequence[int], n: int) -> bool:
        """Truth of the clue given the houses of ``self.entities`` in order."""
        k = self.kind
        if k == "=":
            return houses[0] == houses[1]
        if k == "!=":
            return houses[0] != houses[1]
        if k == "nbr":
            return abs(houses[0] - houses[1]) == 1
        if k == "ends":
            return houses[0] == 0 or houses[0] == n - 1
        if k == "immediate-left":
            return houses[0] + 1 == houses[1]
        if k == "left-of":
            return houses[0] < houses[1]
        if k == "inbetween":
            return houses[0] < houses[1] < houses[2]
        raise ValueError(f"unknown clue type {k!r}")

    def tokens(self) -> list[str]:
        """Shah-style tokens, e.g. ``immediate-left LHS n 0 2 RHS c 1 2 CLUE_END``."""
        out = [self.kind, "LHS"]
        for r, v in self.lhs:
            out += ["n" if r == 0 else "c", str(r), str(v)]
        if self.rhs:
            out.append("RHS")
            for r, v in self.rhs:
                out += ["n" if r == 0 else "c", str(r), str(v)]
        out.append("CLUE_END")
        return out

    def to_json(self) -> list:
        return [self.kind, [list(e) for e in self.lhs], [list(e) for e in self.rhs]]

    @classmethod
    def from_json(cls, obj: Sequence) -> Clue:
        kind, lhs, rhs = obj
        return cls(kind, tuple(tuple(e) for e in lhs), tuple(tuple(e) for e in rhs))


def clues_to_json(clues: Sequence[Clue]) -> str:
    return json.dumps([c.to_json() for c in clues])


def clues_from_json(text: str) -> list[Clue]:
    return [Clue.from_json(c) for c in json.loads(text)]


def house_of(table: Sequence[Sequence[int]], entity: Entity) -> int:
    row, value = entity
    return list(table[row]).index(value)


def clue_true(clue: Clue, table: Sequence[Sequence[int]]) -> bool:
    n = len(table[0])
    return clue.holds([house_of(table, e) for e in clue.entities], n)


# --------------------------------------------------------------------------- deductive solver


@functools.lru_cache(maxsize=None)
def _relation(kind: str, n: int, p: int) -> dict[tuple[int, ...], int]:
    """Houses allowed for the clue entity at position ``p``, keyed by the other entities' houses."""
    arity = 1 if kind == "ends" else 3 if kind == "inbetween" else 2
    probe = Clue(kind, ((0, 0),) * arity)
    table: dict[tuple[int, ...], int] = {}
    for others in itertools.product(range(n), repeat=arity - 1):
        mask = 0
        for h in range(n):
            if probe.holds(others[:p] + (h,) + others[p:], n):
                mask |= 1 << h
        table[others] = mask
    return table


class DeductiveSolver:
    """Restricted propagation solver: row singles, then clue groups of size 1, 2, 3.

    State: ``masks[r][v]`` is the set of houses (bitmask) still possible for entity
    ``(r, v)``. A group of clues removes a house from an entity when no assignment of the
    group's entities (distinct houses within a row) satisfying all its clues uses it;
    pairs and triples are only tried when single clues are stuck, and only for clues
    linked through a shared attribute. Deductions only ever shrink masks, so the state
    stays valid when clues are added (generation solves incrementally).
    """

    def __init__(self, n: int, m: int, clues: Sequence[Clue] = (), max_level: int = 3) -> None:
        self.n, self.m, self.max_level = n, m, max_level
        full = (1 << n) - 1
        self.masks = [[full] * n for _ in range(m + 1)]
        self.masks[0] = [1 << h for h in range(n)]
        self.row_version = [0] * (m + 1)
        self.clues: list[Clue] = []
        self.groups: dict[int, list[tuple[int, ...]]] = {1: [], 2: [], 3: []}
        self._checked: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.used: set[int] = set()
        self.level_used = 0
        for clue in clues:
            self.add_clue(clue)

    # -- state queries
    def mask(self, entity: Entity) -> int:
        return self.masks[entity[0]][entity[1]]

    def known(self, entity: Entity) -> bool:
        m = self.mask(entity)
        return m & (m - 1) == 0

    def table(self) -> list[list[int | None]]:
        """Rows ``1..m`` with ``None`` where the value of a cell is not yet deduced."""
        out: list[list[int | None]] = []
        for r in range(1, self.m + 1):
            row: list[int | None] = [None] * self.n
            for v, msk in enumerate(self.masks[r]):
                if msk & (msk - 1) == 0:
                    row[msk.bit_length() - 1] = v
            out.append(row)
        return out

    @property
    def solved(self) -> bool:
        return all(msk & (msk - 1) == 0 for row in self.masks for msk in row)

    # -- clue bookkeeping
    def add_clue(self, clue: Clue) -> None:
        i = len(self.clues)
        self.clues.append(clue)
        rows = [{r for r, _ in c.entities if r} for c in self.clues]
        self.groups[1].append((i,))
        linked = [j for j in range(i) if rows[i] & rows[j]]
        self.groups[2] += [(j, i) for j in linked]
        for j, k in itertools.combinations(range(i), 2):
            # connected triple: i links to j or k, and the three form one component
            a, b = bool(rows[i] & rows[j]), bool(rows[i] & rows[k])
            jk = bool(rows[j] & rows[k])
            if (a and b) or (a and jk) or (b and jk):
                self.groups[3].append((j, k, i))

    def _set(self, entity: Entity, new: int) -> None:
        r, v = entity
        if new == 0:
            raise AssertionError(f"contradiction at entity {entity}")
        self.masks[r][v] = new
        self.row_version[r] += 1

    # -- deduction steps
    def _row_singles(self) -> bool:
        """Permutation rules: a placed value leaves its house; a house with one value takes it."""
        changed = False
        for r in range(1, self.m + 1):
            row = self.masks[r]
            for v, msk in enumerate(row):
                if msk & (msk - 1) == 0:
                    for w in range(self.n):
                        if w != v and row[w] & msk:
                            self._set((r, w), row[w] & ~msk)
                            changed = True
            for h in range(self.n):
                bit = 1 << h
                holders = [v for v in range(self.n) if row[v] & bit]
                if len(holders) == 1 and row[holders[0]] != bit:
                    self._set((r, holders[0]), bit)
                    changed = True
        return changed

    def _narrow(self, group: tuple[int, ...]) -> bool:
        """Keep only houses that occur in some valid joint assignment of the group's entities."""
        clues = [self.clues[i] for i in group]
        ents: list[Entity] = []
        for c in clues:
            for e in c.entities:
                if e not in ents:
                    ents.append(e)
        if all(self.known(e) for e in ents):
            return False
        index = {e: k for k, e in enumerate(ents)}
        doms = [self.mask(e) for e in ents]
        # For each entity, the clues it completes: (indices of the clue's other entities, table).
        checks: list[list[tuple[list[int], dict]]] = [[] for _ in ents]
        for c in clues:
            ix = [index[e] for e in c.entities]
            last = max(ix)
            p = ix.index(last)
            checks[last].append(([i for i in ix if i != last], _relation(c.kind, self.n, p)))
        same_row = [[j for j in range(k) if ents[j][0] == ents[k][0] and ents[k][0]] for k in range(len(ents))]
        support = [0] * len(ents)
        assign = [0] * len(ents)
        count = len(ents)

        def rec(k: int) -> bool:
            if k == count:
                for j in range(count):
                    support[j] |= 1 << assign[j]
                return support == doms  # nothing left to prune: stop early
            cand = doms[k]
            for j in same_row[k]:
                cand &= ~(1 << assign[j])
            for others, table in checks[k]:
                cand &= table[tuple(assign[i] for i in others)]
            while cand:
                bit = cand & -cand
                cand ^= bit
                assign[k] = bit.bit_length() - 1
                if rec(k + 1):
                    return True
            return False

        rec(0)
        changed = False
        for e, d, s in zip(ents, doms, support):
            if s != d:
                if e[0] == 0:
                    raise AssertionError(f"contradiction at position entity {e}")
                self._set(e, s)
                changed = True
        if changed:
            self.used.update(group)
        return changed

    def step(self) -> bool:
        """Apply the simplest available deduction; False when stuck."""
        if self._row_singles():
            return True
        for level in range(1, self.max_level + 1):
            for group in self.groups[level]:
                stamp = tuple(self.row_version[r] for i in group for r, _ in self.clues[i].entities)
                if self._checked.get(group) == stamp:
                    continue  # unchanged since it last failed to narrow
                if self._narrow(group):
                    self.level_used = max(self.level_used, level)
                    return True
                self._checked[group] = stamp
        return False

    def run(self, on_step: Callable[[], None] | None = None) -> bool:
        """Deduce until solved or stuck; ``on_step`` is called after every step."""
        while not self.solved:
            if not self.step():
                return False
            if on_step is not None:
                on_step()
        return True


def solve_with_fill_order(
    n: int, m: int, clues: Sequence[Clue]
) -> tuple[bool, list[tuple[int, int, int]], int, list[list[int | None]]]:
    """Solve from scratch; fills ``(row, house, value)`` come from diffing table snapshots.

    Returns ``(solved, fills, deepest group level used, final table rows 1..m)``.
    """
    solver = DeductiveSolver(n, m, clues)
    fills: list[tuple[int, int, int]] = []
    prev = solver.table()

    def snapshot() -> None:
        nonlocal prev
        cur = solver.table()
        for r in range(m):
            for h in range(n):
                if prev[r][h] is None and cur[r][h] is not None:
                    fills.append((r + 1, h, cur[r][h]))
                elif prev[r][h] is not None and cur[r][h] != prev[r][h]:
                    raise AssertionError("a deduced cell changed value")
        prev = cur

    snapshot()
    ok = solver.run(snapshot)
    return ok, fills, solver.level_used, solver.table()


# --------------------------------------------------------------------------- independent check


@functools.lru_cache(maxsize=None)
def _satisfying(kind: str, n: int) -> tuple[tuple[int, ...], ...]:
    arity = 1 if kind == "ends" else 3 if kind == "inbetween" else 2
    probe = Clue(kind, ((0, 0),) * arity)
    return tuple(t for t in itertools.product(range(n), repeat=arity) if probe.holds(t, n))


def count_solutions(n: int, m: int, clues: Sequence[Clue], limit: int = 2) -> tuple[int, list[list[int]] | None]:
    """Complete search (branching with arc-consistency pruning), independent of ``DeductiveSolver``.

    Returns ``(count up to limit, first solution table including row 0)``.
    """
    full = (1 << n) - 1
    start = [1 << v for v in range(n)] + [full] * (m * n)  # entity (r, v) lives at r * n + v
    cons = [([r * n + v for r, v in c.entities], _satisfying(c.kind, n)) for c in clues]
    found: list[list[list[int]]] = []

    def propagate(d: list[int]) -> bool:
        changed = True
        while changed:
            changed = False
            for ix, tuples in cons:
                sup = [0] * len(ix)
                for t in tuples:
                    if all(d[i] >> h & 1 for i, h in zip(ix, t)):
                        for k, h in enumerate(t):
                            sup[k] |= 1 << h
                for k, i in enumerate(ix):
                    if sup[k] != d[i]:
                        if not sup[k]:
                            return False
                        d[i] = sup[k]
                        changed = True
            for r in range(1, m + 1):
                row = range(r * n, r * n + n)
                union = 0
                for i in row:
                    if d[i] & (d[i] - 1) == 0:
                        for j in row:
                            if j != i and d[j] & d[i]:
                                d[j] &= ~d[i]
                                if not d[j]:
                                    return False
                                changed = True
                    union |= d[i]
                if union != full:
                    return False
        return True

    def rec(d: list[int]) -> bool:
        if not propagate(d):
            return False
        open_ = [i for i in range(n, len(d)) if d[i] & (d[i] - 1)]
        if not open_:
            table = [list(range(n))] + [[0] * n for _ in range(m)]
            for i in range(n, len(d)):
                r, v = divmod(i, n)
                table[r][d[i].bit_length() - 1] = v
            found.append(table)
            return len(found) >= limit
        i = min(open_, key=lambda k: bin(d[k]).count("1"))
        bits = d[i]
        while bits:
            bit = bits & -bits
            bits ^= bit
            child = list(d)
            child[i] = bit
            if rec(child):
                return True
        return False

    rec(start)
    return len(found), (found[0] if found else None)


# --------------------------------------------------------------------------- generation


@dataclass
class ZebraPuzzle:
    """A generated puzzle: ``table`` has ``m + 1`` rows (row 0 = positions)."""

    houses: int
    attributes: int
    index: int
    table: list[list[int]]
    clues: list[Clue]
    fills: list[tuple[int, int, int]]
    level: int
    clues_sampled: int

    @property
    def n_clues(self) -> int:
        return len(self.clues)

    def prompt_tokens(self) -> list[str]:
        return [t for c in self.clues for t in c.tokens()]

    def puzzle_string(self) -> str:
        return f"{self.houses}x{self.attributes}|" + " ".join(self.prompt_tokens())


def _weighted(rng: np.random.Generator, weights: Sequence[float]) -> int:
    x = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        x -= w
        if x < 0:
            return i
    return max(i for i, w in enumerate(weights) if w > 0)  # rounding: never a choice of weight 0


class _ClueSampler:
    """Clue sampling biases of the Google generator."""

    def __init__(self, n: int, m: int, table: list[list[int]], rng: np.random.Generator) -> None:
        self.n, self.m, self.table, self.rng = n, m, table, rng
        self.uses = [0] * (m + 1)
        # With 2 houses every entity is at an end and none lies between two others.
        self.kind_weights = [0 if n < 3 and k in ("ends", "inbetween") else w for k, w in CLUE_WEIGHTS.items()]

    def attr(self, nonzero: bool = False) -> int:
        # Less-used attributes are favoured; the position attribute is kept rare.
        weights = [1 / (3 + u) for u in self.uses]
        weights[0] = 0.0 if nonzero else weights[0] / 5
        return _weighted(self.rng, weights)

    def entity(self, attempt: list[list[int | None]] | None) -> tuple[int, int]:
        """``(attr, house)`` of an LHS entity; with a partial answer, rows with gaps are favoured."""
        n = self.n
        if attempt is None:
            a = self.attr()
            return a, int(self.rng.integers(n))
        filled = [n] + [sum(v is not None for v in row) for row in attempt]
        a = _weighted(self.rng, [n - f + 1 for f in filled])
        known = [True] * n if a == 0 else [v is not None for v in attempt[a - 1]]
        return a, _weighted(self.rng, [5 if k else 1 for k in known])

    def other_attr(self, a: int, allow_same_nonzero: bool) -> int:
        while True:
            b = self.attr()
            if b != a or (allow_same_nonzero and a != 0):
                return b

    def sample(self, attempt: list[list[int | None]] | None) -> Clue:
        n, t, rng = self.n, self.table, self.rng
        kind = CLUE_TYPES[_weighted(rng, self.kind_weights)]
        if kind == "ends":
            a = self.attr(nonzero=True)
            h = (0, n - 1)[int(rng.integers(2))]
            return Clue(kind, ((a, t[a][h]),))
        if kind == "inbetween":
            while True:
                a = self.attr()
                h = int(rng.integers(n))
                if h <= n - 3:
                    break
            c = self.attr(nonzero=True)
            h2 = int(rng.integers(h + 2, n))
            b = self.attr(nonzero=True)
            h1 = int(rng.integers(h + 1, h2))
            return Clue(kind, ((a, t[a][h]),), ((b, t[b][h1]), (c, t[c][h2])))
        a, h = self.entity(attempt)
        while kind in ("immediate-left", "left-of") and h == n - 1:
            a, h = self.entity(attempt)
        lhs = ((a, t[a][h]),)
        if kind == "=":
            b = self.other_attr(a, allow_same_nonzero=False)
            return Clue(kind, lhs, ((b, t[b][h]),))
        if kind == "!=":
            b = self.other_attr(a, allow_same_nonzero=False)
            h2 = int(rng.choice([x for x in range(n) if x != h]))
            return Clue(kind, lhs, ((b, t[b][h2]),))
        if kind == "nbr":
            b = self.other_attr(a, allow_same_nonzero=True)
            h2 = int(rng.choice([x for x in (h - 1, h + 1) if 0 <= x < n]))
            return Clue(kind, lhs, ((b, t[b][h2]),))
        if kind == "immediate-left":
            b = self.other_attr(a, allow_same_nonzero=True)
            return Clue(kind, lhs, ((b, t[b][h + 1]),))
        # left-of: the reference draws the RHS attribute uniformly
        b = int(rng.integers(self.m + 1))
        while a == 0 and b == 0:
            b = self.attr()
        h2 = int(rng.integers(h + 1, n))
        return Clue(kind, lhs, ((b, t[b][h2]),))

    def record(self, clue: Clue) -> None:
        for r, _ in clue.entities:
            self.uses[r] += 1


def _canonical(clue: Clue) -> tuple:
    if clue.kind in SYMMETRIC_TYPES:
        return (clue.kind, frozenset(clue.entities))
    return (clue.kind, clue.entities)


def generate_one(n: int, m: int, seed: int, index: int, max_clues: int = 400) -> ZebraPuzzle:
    """Puzzle number ``index`` of the stream ``seed`` for ``n`` houses x ``m`` attributes."""
    if not (MIN_SIZE <= n <= MAX_SIZE and MIN_SIZE <= m <= MAX_SIZE):
        raise ValueError(f"sizes must lie in {MIN_SIZE}..{MAX_SIZE}, got {n}x{m}")
    rng = np.random.default_rng([seed, n, m, index])
    table = [list(range(n))] + [[int(v) for v in rng.permutation(n)] for _ in range(m)]
    sampler = _ClueSampler(n, m, table, rng)
    solver = DeductiveSolver(n, m)
    seen: set[tuple] = set()
    sampled = 0
    attempt: list[list[int | None]] | None = None
    while not solver.solved:
        clue = sampler.sample(attempt)
        sampled += 1
        if sampled > max_clues:
            raise RuntimeError(f"zebra {n}x{m} #{index}: not solved after {max_clues} clue draws")
        key = _canonical(clue)
        # Duplicates and clues about entities that are all placed already carry no information.
        if key in seen or all(solver.known(e) for e in clue.entities):
            continue
        if not clue_true(clue, table):  # not an assert: `python -O` would let a false clue into a puzzle
            raise AssertionError(f"zebra {n}x{m} #{index}: sampled a clue its own answer contradicts: {clue}")
        seen.add(key)
        sampler.record(clue)
        solver.add_clue(clue)
        solver.run()
        attempt = solver.table()

    clues = [c for i, c in enumerate(solver.clues) if i in solver.used]
    clues = [
        Clue(c.kind, c.rhs, c.lhs) if c.kind in SYMMETRIC_TYPES and rng.random() < 0.25 else c for c in clues
    ]
    ok, fills, level, final = solve_with_fill_order(n, m, clues)
    if not ok or final != table[1:]:
        raise AssertionError(f"zebra {n}x{m} #{index}: reduced clue set no longer deduces the table")
    if len(fills) != n * m or len({(r, h) for r, h, _ in fills}) != n * m:
        raise AssertionError(f"zebra {n}x{m} #{index}: fill order does not cover the table once")
    count, sol = count_solutions(n, m, clues)
    if count != 1 or sol != table:
        raise AssertionError(f"zebra {n}x{m} #{index}: independent check found {count} solutions")
    return ZebraPuzzle(n, m, index, table, clues, fills, level, sampled)


def _generate_indexed(sizes: Sequence[tuple[int, int]], seed: int, index: int) -> ZebraPuzzle:
    # The size of puzzle ``index`` is itself drawn from the index, so it is worker-independent.
    n, m = sizes[int(np.random.default_rng([seed, index]).integers(len(sizes)))]
    return generate_one(n, m, seed, index)


def generate_zebra(
    sizes: Sequence[tuple[int, int]],
    n: int,
    seed: int,
    start: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> list[ZebraPuzzle]:
    """Puzzles ``start .. start+n-1``; each draws its ``(houses, attributes)`` uniformly from ``sizes``."""
    sizes = [tuple(s) for s in sizes]
    for h, a in sizes:
        if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= a <= MAX_SIZE):
            raise ValueError(f"sizes must lie in {MIN_SIZE}..{MAX_SIZE}, got {h}x{a}")
    fn = functools.partial(_generate_indexed, sizes, seed)
    return parallel_map(fn, range(start, start + n), workers=workers, desc="zebra", progress=progress, chunk_size=8)


def answer_as_clues(puzzle: ZebraPuzzle, seed: int) -> ZebraPuzzle:
    """The same answer, its clues replaced by one ``= LHS c r v RHS n 0 h`` per attribute entity (its house) in a
    random order drawn from ``(seed, puzzle.index)``: a puzzle solved by finding, for each cell, the clue that names
    it, with no deduction. A model and recipe that cannot learn this cannot read Zebra clues at all
    (`docs/puzzles.md`: the lookup screen)."""
    n, m = puzzle.houses, puzzle.attributes
    clues = [Clue("=", ((r, v),), ((0, h),)) for r in range(1, m + 1) for h, v in enumerate(puzzle.table[r])]
    order = np.random.default_rng([seed, n, m, puzzle.index, 1]).permutation(len(clues))
    clues = [clues[i] for i in order]
    ok, fills, level, final = solve_with_fill_order(n, m, clues)
    if not ok or final != puzzle.table[1:]:
        raise AssertionError(f"zebra {n}x{m} #{puzzle.index}: the answer's clues do not deduce the answer")
    return dataclasses.replace(puzzle, clues=clues, fills=fills, level=level, clues_sampled=len(clues))


# --------------------------------------------------------------------------- canvas layout


def canvas_position(row: int, value: int) -> int:
    """Canvas index of the entity ``(row, value)`` (``row`` 1-based) in the fixed 6x6 canvas.

    The canvas is the answer table indexed by entity: the cell of attribute ``row``, value ``value`` holds the house
    that value lives in. A clue names entities, so every entity a clue mentions is one canvas cell and every clue is a
    constraint between the houses written in the cells it names (``=``: equal, ``nbr``: one apart, ...), as Sudoku's
    constraints are between the cells of a unit; indexing by house would instead make each clue a lookup of where a
    value currently sits.
    """
    return (row - 1) * CANVAS_COLS + value


def canvas_factors() -> list[list[int]]:
    """Attribute row and value of every cell of the 6 × 6 entity canvas (`canvas_position`): its
    `canvas_position_factors` (row 0 holds attribute 1)."""
    cells = range(CANVAS_ROWS * CANVAS_COLS)
    return [[k // CANVAS_COLS for k in cells], [k % CANVAS_COLS for k in cells]]


def table_to_canvas(table: Sequence[Sequence[int]], n: int, m: int) -> list[str]:
    """Rows ``1..m`` of ``table`` as 36 tokens (the house of each entity), ``.`` outside the ``m x n`` block."""
    canvas = [FILLER] * (CANVAS_ROWS * CANVAS_COLS)
    for r in range(1, m + 1):
        for h in range(n):
            canvas[canvas_position(r, table[r][h])] = str(h)
    return canvas


def canvas_to_table(canvas: Sequence[str], n: int, m: int) -> list[list[int | None]]:
    """Inverse of ``table_to_canvas``, including row 0. A house that no value of its row claims, or that two claim,
    is ``None``; an unparsable or out-of-range token claims no house."""
    table: list[list[int | None]] = [list(range(n))]
    for r in range(1, m + 1):
        claims: list[list[int]] = [[] for _ in range(n)]
        for v in range(n):
            tok = canvas[canvas_position(r, v)]
            if tok.isdigit() and int(tok) < n:
                claims[int(tok)].append(v)
        table.append([c[0] if len(c) == 1 else None for c in claims])
    return table


def house_canvas_position(row: int, house: int, houses: int) -> int:
    """Canvas index of attribute ``row`` (1-based) in house ``house`` on the house canvas of Shah et al.: the
    answer table itself, ``houses`` cells per attribute row, sized to the puzzle (no filler). Each cell holds a value,
    each attribute row is a permutation of ``0..houses-1``, and a clue names values, so a cell finds the clues about
    it by what it holds, not by where it is."""
    return (row - 1) * houses + house


def house_canvas_factors(houses: int, attributes: int) -> list[list[int]]:
    """Attribute row (0 = attribute 1) and house of every cell of the ``attributes x houses`` house canvas: its
    `canvas_position_factors`."""
    cells = range(houses * attributes)
    return [[k // houses for k in cells], [k % houses for k in cells]]


def table_to_house_canvas(table: Sequence[Sequence[int]], n: int, m: int) -> list[str]:
    """Rows ``1..m`` of ``table`` as ``m * n`` tokens, the value of each attribute in each house."""
    return [str(table[r][h]) for r in range(1, m + 1) for h in range(n)]


def house_canvas_to_table(canvas: Sequence[str], n: int, m: int) -> list[list[int | None]]:
    """Inverse of ``table_to_house_canvas``, including row 0; an unparsable or out-of-range token is ``None``."""
    values = [int(t) if t.isdigit() and int(t) < n else None for t in canvas]
    return [list(range(n))] + [values[(r - 1) * n:r * n] for r in range(1, m + 1)]
