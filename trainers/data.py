"""Data for the Glauber trainer: the row format, its collator, text packing and the puzzles' string rows.

A training row has `input_ids` (prompt ids, possibly empty), `canvas_ids` (exactly L content ids) and optionally
`frozen` (0/1 per canvas position: never noised, resampled or scored).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

REQUIRED_COLUMNS = ("input_ids", "canvas_ids")


class WorkerGenerator:
    """A collator's numpy generator, seeded by `seed`; in a DataLoader worker, one of the worker's own, seeded by
    `seed` and the worker's seed (which torch draws anew per worker and epoch): each worker process starts from a copy
    of the collator, and copies of one generator would corrupt every worker's batches, and every epoch, alike."""

    def __init__(self, seed: int):
        self.seed = seed
        self._main = np.random.default_rng(seed)
        self._worker: tuple[int, np.random.Generator] | None = None

    def get(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self._main
        if self._worker is None or self._worker[0] != info.seed:
            self._worker = (info.seed, np.random.default_rng([self.seed, info.seed]))
        return self._worker[1]


@dataclass
class GlauberDataCollator:
    """Right-pads prompts (with an attention mask) and stacks canvases and frozen masks into `[B, L]` tensors."""

    pad_token_id: int = 0
    canvas_length: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("GlauberDataCollator got an empty batch")
        missing = [c for c in REQUIRED_COLUMNS if c not in features[0]]
        if missing:
            raise ValueError(
                f"training rows need the columns {list(REQUIRED_COLUMNS)} (and optionally 'frozen'); missing {missing}, "
                f"got {sorted(features[0])}. Build them with `pack_text_dataset` or `tokenize_prompt_canvas_rows`."
            )
        lengths = {len(f["canvas_ids"]) for f in features}
        expected = self.canvas_length if self.canvas_length is not None else max(lengths)
        if lengths != {expected}:
            raise ValueError(
                f"every canvas must hold exactly L = {expected} tokens, got lengths {sorted(lengths)}; pack or drop "
                "shorter sequences (pack_text_dataset does)"
            )
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = 1
        canvas = torch.as_tensor([list(f["canvas_ids"]) for f in features], dtype=torch.long)
        if "frozen" in features[0]:
            frozen = torch.as_tensor([list(f["frozen"]) for f in features], dtype=torch.bool)
            if frozen.shape != canvas.shape:
                raise ValueError(f"'frozen' must have one 0/1 entry per canvas position, got shape {tuple(frozen.shape)}")
        else:
            frozen = torch.zeros_like(canvas, dtype=torch.bool)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "canvas_ids": canvas, "frozen": frozen}


def load_text_dataset(source: str, split: str = "train", streaming: bool = False, **load_kwargs):
    """A Hub dataset name, a local text/json/csv/parquet file, or a folder of `.txt` files, as a `datasets` dataset."""
    from datasets import load_dataset

    if os.path.isdir(source):
        files = sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".txt"))
        if not files:
            raise ValueError(f"{source} holds no .txt files")
        return load_dataset("text", data_files={split: files}, split=split, streaming=streaming, **load_kwargs)
    if os.path.isfile(source):
        extension = os.path.splitext(source)[1].lstrip(".")
        builder = {"txt": "text", "jsonl": "json"}.get(extension, extension)
        return load_dataset(builder, data_files={split: [source]}, split=split, streaming=streaming, **load_kwargs)
    return load_dataset(source, split=split, streaming=streaming, **load_kwargs)


def pack_text_dataset(
    dataset, tokenizer, canvas_length: int, prompt_length: int = 0, text_column: str = "text", separator: str = "\n"
):
    """
    Tokenise `text_column` with `separator` appended to every row (no special tokens: an EOS could not be emitted
    by either mode), concatenate the rows and cut fixed blocks of `prompt_length + canvas_length` ids: the first
    `prompt_length` become `input_ids` (the prompt P), the rest `canvas_ids`. The separator keeps rows (the lines of a
    text file, the documents of a corpus) from running together for tokenizers that add no word boundary of their
    own (byte-level, Gemma); "" packs the rows as they are. The blocks tile the concatenated stream from its start; only
    its trailing partial block is dropped. Works on `Dataset` (the packed set is cached like a `map`) and streaming
    `IterableDataset`.
    """
    from datasets import Dataset, Features, IterableDataset, Sequence, Value

    if canvas_length < 1 or prompt_length < 0:
        raise ValueError(f"canvas_length must be >= 1 and prompt_length >= 0, got {canvas_length}, {prompt_length}")
    columns = getattr(dataset, "column_names", None)
    if columns is not None and text_column not in columns:
        raise ValueError(f"text column {text_column!r} not in the dataset's columns {columns}")
    block = prompt_length + canvas_length

    def blocks():
        # one running buffer over all rows: a row's tail starts the next block (a batched `map` would drop the
        # leftover of every batch)
        buffer: list[int] = []
        for row in dataset:
            buffer += tokenizer(row[text_column] + separator, add_special_tokens=False)["input_ids"]
            full = len(buffer) - len(buffer) % block
            for start in range(0, full, block):
                yield {
                    "input_ids": buffer[start : start + prompt_length],
                    "canvas_ids": buffer[start + prompt_length : start + block],
                }
            del buffer[:full]

    features = Features({"input_ids": Sequence(Value("int32")), "canvas_ids": Sequence(Value("int32"))})
    if isinstance(dataset, IterableDataset):
        return IterableDataset.from_generator(blocks, features=features)
    return Dataset.from_generator(blocks, features=features)


def tokenize_prompt_canvas_rows(dataset, tokenizer, canvas_length: int | None = None):
    """
    Rows with string columns `prompt`, `canvas` (space-separated tokens) and optional `frozen` (0/1 list or
    space-separated string) → `input_ids`, `canvas_ids`, `frozen`, with a word-level tokenizer (whitespace
    pre-tokenisation): each canvas word must map to exactly one id.
    """
    columns = getattr(dataset, "column_names", None)
    if columns is not None and not {"prompt", "canvas"} <= set(columns):
        raise ValueError(f"rows need string columns 'prompt' and 'canvas' (optional 'frozen'), got {columns}")

    def encode(row: dict[str, Any]) -> dict[str, list[int]]:
        words = row["canvas"].split()
        canvas = tokenizer(row["canvas"], add_special_tokens=False)["input_ids"]
        if len(canvas) != len(words):
            raise ValueError(f"canvas {row['canvas']!r}: {len(words)} tokens became {len(canvas)} ids")
        if canvas_length is not None and len(canvas) != canvas_length:
            raise ValueError(f"canvas {row['canvas']!r} has {len(canvas)} tokens, expected L = {canvas_length}")
        frozen = row.get("frozen")
        if frozen is None:
            frozen = [0] * len(canvas)
        elif isinstance(frozen, str):
            frozen = [int(v) for v in frozen.split()]
        if len(frozen) != len(canvas):
            raise ValueError(f"'frozen' has {len(frozen)} entries for a canvas of {len(canvas)} tokens")
        prompt_ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"] if row["prompt"].strip() else []
        return {"input_ids": prompt_ids, "canvas_ids": canvas, "frozen": [int(v) for v in frozen]}

    return dataset.map(encode, remove_columns=columns)


__all__ = [
    "GlauberDataCollator",
    "WorkerGenerator",
    "load_text_dataset",
    "pack_text_dataset",
    "tokenize_prompt_canvas_rows",
]
