"""Word-level tokenizer shared by the Sudoku and Zebra datasets, built offline."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from puzzles.zebra import CLUE_TYPES, FILLER

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5
MODE_TOKENS = ["[NLU]", "[NLG]", "[S2S]"]  # UL2 denoiser prefixes
DIGITS = [str(d) for d in range(1, 10)] + ["0"]
SUDOKU_TOKENS = ["_"]
ZEBRA_TOKENS = list(CLUE_TYPES) + ["LHS", "RHS", "CLUE_END", "ANSWER", "n", "c"]
SENTINELS = [f"<extra_id_{i}>" for i in range(8)]


def puzzle_vocab(kind: str | None = None) -> list[str]:
    """Ordered vocabulary; ``kind=None`` gives the shared Sudoku + Zebra vocabulary."""
    if kind not in (None, "sudoku", "zebra"):
        raise ValueError(f"kind must be None, 'sudoku' or 'zebra', got {kind!r}")
    words = SPECIALS + MODE_TOKENS + DIGITS
    if kind in (None, "sudoku"):
        words += SUDOKU_TOKENS
    words.append(FILLER)
    if kind in (None, "zebra"):
        words += ZEBRA_TOKENS
    return words + SENTINELS


def build_puzzle_tokenizer(kind: str | None = None) -> PreTrainedTokenizerFast:
    """Whitespace word-level tokenizer; encoding appends ``</s>`` like T5."""
    vocab = {w: i for i, w in enumerate(puzzle_vocab(kind))}
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
        additional_special_tokens=SENTINELS,
        # The default cleanup would glue "." tokens to their left neighbour.
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
