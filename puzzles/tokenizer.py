"""Word-level tokenizer shared by the Sudoku and Zebra datasets, built offline."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from puzzles.zebra import CLUE_TYPES, FILLER, canvas_position

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5
MODE_TOKENS = ["[NLU]", "[NLG]", "[S2S]"]  # UL2 denoiser prefixes
DIGITS = [str(d) for d in range(1, 10)] + ["0"]
SUDOKU_TOKENS = ["_"]
ZEBRA_TOKENS = list(CLUE_TYPES) + ["LHS", "RHS", "CLUE_END", "ANSWER", "n", "c"]
DEFAULT_SENTINELS = 8  # `<extra_id_0>` … `<extra_id_7>`; `sentinel_words(n)` for a wider mask window
MAX_CANVAS_CELLS = 81  # a 9×9 Sudoku; the Zebra canvas has 36


def canvas_index_words(cells: int) -> list[str]:
    """`@0 … @(cells−1)`: one word per canvas cell, written after the prompt by `encoder_prompts`. T5 sees only
    relative positions, so a canvas cell would otherwise have to work out which cell it is (and so which cells are
    its Sudoku peers) from distances alone; with the index words every canvas cell finds its own at one fixed offset
    (the canvas length), like a learned absolute position handed over as input. Zebra clues name their entities by
    the same words (`entities_as_cell_words`)."""
    return [f"@{i}" for i in range(cells)]


def check_sentinels(sentinels: int) -> None:
    """Refuses a sentinel count the puzzle vocabulary cannot hold (the default eight up to one per cell of a 9×9)."""
    if not DEFAULT_SENTINELS <= sentinels <= MAX_CANVAS_CELLS:
        raise ValueError(f"sentinels must be in {DEFAULT_SENTINELS} … {MAX_CANVAS_CELLS}, got {sentinels!r}")


def sentinel_words(sentinels: int = DEFAULT_SENTINELS) -> list[str]:
    """`<extra_id_0> … <extra_id_(sentinels−1)>`: one per cell a MASK-INFILL call masks, so `sentinels` bounds the mask
    window and the R-task's `infill_targets`."""
    check_sentinels(sentinels)
    return [f"<extra_id_{i}>" for i in range(sentinels)]


SENTINELS = sentinel_words()


def puzzle_vocab(kind: str | None = None, canvas_cells: int | None = None,
                 sentinels: int = DEFAULT_SENTINELS) -> list[str]:
    """Ordered vocabulary; ``kind=None`` gives the shared Sudoku + Zebra vocabulary; ``canvas_cells`` appends the
    `canvas_index_words` (after the sentinels, so the other ids do not move); ``sentinels`` beyond the default eight
    come last, so a vocabulary with more of them keeps every id of the default one."""
    if kind not in (None, "sudoku", "zebra"):
        raise ValueError(f"kind must be None, 'sudoku' or 'zebra', got {kind!r}")
    if canvas_cells is not None and not 0 < canvas_cells <= MAX_CANVAS_CELLS:
        raise ValueError(f"canvas_cells must be in 1 … {MAX_CANVAS_CELLS}, got {canvas_cells!r}")
    words = SPECIALS + MODE_TOKENS + DIGITS
    if kind in (None, "sudoku"):
        words += SUDOKU_TOKENS
    words.append(FILLER)
    if kind in (None, "zebra"):
        words += ZEBRA_TOKENS
    words += SENTINELS
    words += canvas_index_words(canvas_cells) if canvas_cells else []
    return words + sentinel_words(sentinels)[DEFAULT_SENTINELS:]


def canvas_index_suffix(tokenizer: PreTrainedTokenizerFast) -> str:
    """`"@0 … @(L−1)"` when `tokenizer` was built with `canvas_cells = L`, else `""`."""
    known = tokenizer.get_vocab()
    return " ".join(w for w in canvas_index_words(MAX_CANVAS_CELLS) if w in known)


def entities_as_cell_words(prompt: str) -> str:
    """A Zebra prompt with each attribute entity `c r v` written as the index word `@k` of its canvas cell,
    k = `canvas_position(r, v)`. A clue then names the very cells it constrains, and canvas cell k finds the clues
    about it by the one word it shares with them instead of by decoding three. House entities `n 0 h` keep their
    number, which is the word the named cell must hold. Sudoku prompts hold no `c` and pass unchanged."""
    words = prompt.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "c" and i + 2 < len(words) and words[i + 1].isdigit() and words[i + 2].isdigit():
            out.append(f"@{canvas_position(int(words[i + 1]), int(words[i + 2]))}")
            i += 3
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def encoder_prompts(tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> list[str]:
    """Dataset `prompt`s as `tokenizer` reads them. A tokenizer with canvas index words gets each prompt with its
    entities written as those words (`entities_as_cell_words`) and followed by its `canvas_index_suffix`. Every path
    that encodes a prompt goes through here."""
    suffix = canvas_index_suffix(tokenizer)
    return [f"{entities_as_cell_words(p)} {suffix}".strip() for p in prompts] if suffix else list(prompts)


def build_puzzle_tokenizer(kind: str | None = None, canvas_cells: int | None = None,
                           sentinels: int = DEFAULT_SENTINELS) -> PreTrainedTokenizerFast:
    """Whitespace word-level tokenizer; encoding appends ``</s>`` like T5. ``canvas_cells``, ``sentinels``: see
    `puzzle_vocab`."""
    vocab = {w: i for i, w in enumerate(puzzle_vocab(kind, canvas_cells, sentinels))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece decoder with an unused prefix joins tokens with single spaces.
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=sentinel_words(sentinels),
        # The default cleanup would glue "." tokens to their left neighbour.
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
