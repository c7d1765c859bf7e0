"""Order-preserving, seed-safe parallel map over puzzle indices."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _run_chunk(args: tuple[Callable[[int], T], Sequence[int]]) -> list[T]:
    fn, chunk = args
    return [fn(i) for i in chunk]


def parallel_map(
    fn: Callable[[int], T],
    indices: Sequence[int],
    workers: int = 1,
    desc: str | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> list[T]:
    """Apply ``fn`` to every index, in order, serially or with a process pool.

    ``fn`` must be picklable (a module-level function or ``functools.partial``) and
    derive all randomness from the index, so the result does not depend on ``workers``.
    """
    indices = list(indices)
    bar = tqdm(total=len(indices), desc=desc, disable=not progress, unit="puzzle")
    out: list[T] = []
    if workers <= 1 or len(indices) <= chunk_size:
        for i in indices:
            out.append(fn(i))
            bar.update(1)
    else:
        chunks = [indices[k : k + chunk_size] for k in range(0, len(indices), chunk_size)]
        with mp.Pool(workers) as pool:
            # imap (not imap_unordered) keeps chunk order, hence the serial result order.
            for res in pool.imap(_run_chunk, [(fn, c) for c in chunks]):
                out.extend(res)
                bar.update(len(res))
    bar.close()
    return out
