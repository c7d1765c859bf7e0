"""Puzzle training recipe: a small GlauberT5 from scratch, stage 1 (puzzle UL2 mixture), stage 2 (Glauber trainer).

Stage 1 trains the two modes of DESIGN §2 on puzzle rows, at τ = 1 (for the R-task, with `stage1_timesteps`
"corruption", at τ = the share of its context's free cells that are wrong):

- S-task (CAUSAL-GEN): encoder `[S2S] + P + </s>`, decoder teacher-forced in the fixed random cell order π_0;
  cross-entropy on the non-given cells.
- R-task (MASK-INFILL): encoder `[NLU] + P + x̃ + </s>` where x̃ is the solution with a random fraction of free
  cells replaced by random legal values (the draft errors refinement must fix) or, for a `relabel_corruption` share
  of examples, by the solution's values under a random permutation of the legal values (a consistent wrong grid, the
  way a failed causal draft usually looks: most of its cells wrong, rows still permutations), and
  `infill_targets_min` … max(w, `infill_targets`) cells replaced by sentinels; for a `draft_corruption` share, the
  example is a training puzzle with the model's own sampled causal draft as x̃ (on-policy: the x_T that the reverse
  process really starts from, DESIGN §5's exactness caveat), taken from a pool drafted `draft_pool` rows at a time.
  The decoder `[start, <extra_id_0>]` predicts the true value of the slot-0 cell and,
  UL2 span-style, goes on `<extra_id_1>, v_1, …` to score every masked cell from one encoder pass (for a
  `slot_shuffle` share, in a random order of the slots: `[start, <extra_id_j>]` first, as a parallel update reads it).

With `stage1_time_conditioning=False` stage 1 leaves the time conditioning at its zero initialisation: trained at
τ = 1 alone it would fit τ = 1 and leave the times the reverse pass visits afterwards untrained, so the stage-1 model
would refine worse than it infills until stage 2 had trained them (docs/puzzles.md, "Stage 1 without time
conditioning").

Stage 2 is `trainers.GlauberTrainer` (DWDSE against an EMA reference, plus the causal loss so the draft keeps
improving). Both stages share `trainers`' data format (`input_ids`, `canvas_ids`, `frozen`); the encodings come
from `modeling_glauber.infill`, so training sees exactly what `generate()` builds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration, T5GemmaConfig
from transformers import T5GemmaForConditionalGeneration, Trainer, TrainerCallback, TrainingArguments

from modeling_glauber import GlauberT5ForDiffusion
from modeling_glauber.infill import concat_mode_inputs, infill_span_canvas_positions, infill_span_targets, mask_canvas
from puzzles import zebra
from puzzles.metrics import evaluate_predictions
from puzzles.sudoku import BOX_SHAPES, canvas_factors, random_symmetries
from puzzles.tokenizer import (build_puzzle_tokenizer, canvas_index_suffix, canvas_index_words, check_sentinels,
                               encoder_prompts)
from trainers import (
    GlauberDataCollator,
    GlauberTrainer,
    GlauberTrainingArguments,
    WorkerGenerator,
    tokenize_prompt_canvas_rows,
)
from trainers.arguments import CAUSAL_LOSS_TARGETS


BACKBONES = ("t5", "t5gemma")
KINDS = ("sudoku", zebra.KIND, zebra.HOUSE_KIND)  # the puzzle kinds of `puzzles.data` rows
STAGE1_TIMESTEPS = ("one", "corruption")  # RecipeConfig.stage1_timesteps


@dataclass
class RecipeConfig:
    """One JSON file of `examples/configs/`: data, model size, and the two training stages."""

    kind: str = "sudoku"  # or "zebra" (entity canvas) or "zebra-house" (Shah et al.'s house canvas, one size)
    size: int = 4  # Sudoku side; ignored for Zebra
    houses: str = "3,4"  # Zebra sizes (comma lists)
    attributes: str = "3,4"
    n_train: int = 20000
    n_test: int = 500
    seed: int = 0
    # "t5": relative-position buckets shared by all layers; "t5gemma": rotary positions in every layer (GeGLU MLP)
    backbone: str = "t5"
    d_model: int = 128
    num_layers: int = 3
    num_heads: int = 4
    d_kv: int = 32
    d_ff: int = 512
    # T5 only: it buckets relative distances logarithmically beyond num_buckets/4 in the encoder; a 9×9 canvas cell
    # is 81 positions after its prompt cell and 9·k after its column mates, which 32 buckets cannot tell apart
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    canvas_index: bool = False  # the prompt ends with one index word per canvas cell (`canvas_index_words`)
    # a learned embedding of each canvas cell on the infill canvas and on the causal decoder input that writes it
    canvas_position_embeddings: bool = False
    # DESIGN §9: factor tables instead of one per cell (`canvas_position_factors`): Sudoku row + column + box,
    # Zebra attribute + value of the entity a cell stands for
    canvas_factors: bool = False
    # Zebra: every clue word `@k` (canvas_index) gets the canvas embedding of cell k (`canvas_position_token_ids`)
    clue_positions: bool = False
    # std of a normal initialisation of the canvas tables (0: zero, the library's default for converted backbones; a
    # model trained from scratch has no behaviour to preserve, and random rows let attention tell peers apart at once)
    canvas_init_std: float = 0.0
    # a learned per-head score bias between encoder tokens of cells sharing a factor (`canvas_peer_attention`, T5 only)
    peer_attention: bool = False
    peer_attention_decoder: bool = False  # also the draft decoder's self- and cross-attention (needs peer_attention)
    given_embedding: bool = False  # a learned marker on the infill's frozen canvas cells (`canvas_given_embedding`)
    # the infill decoder's sentinel carries the canvas embedding (and peer biases) of the cell it predicts
    # (`infill_decoder_canvas_positions`), as the causal decoder's input carries the cell it writes
    infill_decoder_positions: bool = False
    infill_prompt: bool = True  # False: MASK-INFILL reads the canvas alone, its givens frozen (`infill_reads_prompt`)
    # the Sudoku prompt's grid token k gets cell k's canvas embedding (`prompt_canvas_positions`)
    prompt_positions: bool = False
    augment: bool = False  # stage 1 draws a random grid symmetry and digit relabelling per Sudoku row
    time_dim: int = 64
    num_rounds: int = 3
    mask_window: int = 1
    # w written into the saved model for refinement (0: `mask_window`); stage 1 trains the infill on up to
    # `infill_targets` masked cells, so a model whose stage 2 ran with w = 1 can refine with a wider window
    refine_mask_window: int = 0
    stage1_steps: int = 1000
    stage1_lr: float = 2e-3
    stage1_batch: int = 64
    causal_fraction: float = 0.3
    infill_per_row: int = 4
    infill_targets: int = 1  # masked (and scored) cells per R-task example, at least the mask window
    # the fewest masked cells an R-task example draws (up to max(w, infill_targets)); = the window: every example
    # masks as many cells as a refinement step with that window does, and scores all of them
    infill_targets_min: int = 1
    sentinels: int = 8  # `<extra_id_i>` words in the tokenizer: the most cells one MASK-INFILL call masks
    relabel_corruption: float = 0.0  # share of R-task examples corrupted by a value permutation, not uniform noise
    draft_corruption: float = 0.0  # share of R-task examples whose context is the model's own sampled draft
    # stage 1's progress (`TimeBudget.progress`: the larger of step and budget share) from which `draft_corruption`
    # applies; before it those examples are corrupted like the others (a young model's drafts are near uniform noise)
    draft_corruption_from: float = 0.0
    # training rows drafted per `generate` call for `draft_corruption` (`PuzzleUL2Collator.draft_pool`): one wide call
    # costs 2.4× less per row than drafting each batch's ≈ 30 rows (6×6, two threads)
    draft_pool: int = 512
    # share of R-task examples whose span targets visit the masked cells in a random order: trains the decoder row
    # `[start, <extra_id_j>]` that a parallel update (`generate(update_block=m)`) reads for slot j > 0
    slot_shuffle: float = 0.0
    max_corruption: float = 0.5
    stage2_steps: int = 500
    stage2_lr: float = 1e-3
    stage2_batch: int = 32
    timesteps_per_chain: int = 8
    timestep_sampling: str = "t_max"  # where a chain's loss terms fall (GlauberTrainingArguments.timestep_sampling)
    reference_update_steps: int = 50
    reference_ema_decay: float = 0.9
    causal_loss_weight: float = 1.0
    causal_loss_target: str = "chain"  # GlauberTrainingArguments.causal_loss_target: "chain" (x_T) | "data"
    stage1_budget_fraction: float = 0.5  # share of --time-budget-s given to stage 1
    # False: stage 1 leaves the zero-initialised time conditioning untouched, so the model it hands stage 2 computes
    # the same at every τ (DESIGN §3), as a converted pretrained backbone does; True also trains it, at the τ that
    # `stage1_timesteps` gives
    stage1_time_conditioning: bool = True
    # τ of a stage-1 R-task example: "one" (τ = 1 for all) or "corruption" (τ = the share of its unmasked free cells
    # that differ from the solution, 0 when none is unmasked), so that the infill learns how far to trust its
    # context and the reverse pass, whose τ = t/T falls from 1 as its rounds mend the draft, tells it
    stage1_timesteps: str = "one"
    # the wrong share that τ = 1 stands for under stage1_timesteps "corruption" (τ = min(1, share / this)): the
    # reverse pass starts its first round at τ = 1 on the draft; set to the draft's wrong share, τ = 1 asks the
    # infill to mend a draft-like context instead of refilling every cell from the givens
    stage1_full_time_corruption: float = 1.0
    eval_batch: int = 256
    # learning curve: every `curve_every` steps of either stage (0: none), the draft and N = num_rounds are evaluated
    # on the first `curve_puzzles` held-out puzzles (`LearningCurve`; results.json and learning_curve.png)
    curve_every: int = 0
    curve_puzzles: int = 100

    def __post_init__(self):
        if self.causal_loss_target not in CAUSAL_LOSS_TARGETS:
            raise ValueError(f"causal_loss_target must be one of {CAUSAL_LOSS_TARGETS}, got {self.causal_loss_target!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == zebra.HOUSE_KIND:
            if "," in self.houses or "," in self.attributes:
                raise ValueError("kind 'zebra-house' sizes its canvas to the puzzle, so houses and attributes must be "
                                 f"one size each, got houses={self.houses!r}, attributes={self.attributes!r}")
            if self.canvas_index:
                raise ValueError("kind 'zebra-house' keeps Shah et al.'s clue text: set canvas_index=false (its cells "
                                 "are houses, not the entities `@k` words name)")
        if self.kind == "sudoku" and self.size not in BOX_SHAPES:
            raise ValueError(f"size must be a Sudoku side this project knows, one of {sorted(BOX_SHAPES)}, got "
                             f"{self.size!r}")
        for name in ("prompt_positions", "augment"):
            if getattr(self, name) and self.kind != "sudoku":
                raise ValueError(f"{name} is defined for kind 'sudoku' only, got kind {self.kind!r}")
        check_sentinels(self.sentinels)
        if not 0 <= self.refine_mask_window <= self.sentinels:
            raise ValueError(f"refine_mask_window must be in [0, sentinels={self.sentinels}] (0: mask_window; at most "
                             f"one sentinel per masked cell), got {self.refine_mask_window}")
        for name in ("mask_window", "infill_targets"):
            if not 1 <= getattr(self, name) <= self.sentinels:
                raise ValueError(f"{name} must be in [1, sentinels={self.sentinels}] (one sentinel per masked cell), "
                                 f"got {getattr(self, name)}")
        most = max(self.mask_window, self.infill_targets)
        if not 1 <= self.infill_targets_min <= most:
            raise ValueError(f"infill_targets_min must be in [1, max(mask_window, infill_targets)={most}], got "
                             f"{self.infill_targets_min}")
        if self.clue_positions and (self.kind != "zebra" or not self.canvas_index):
            raise ValueError("clue_positions needs kind 'zebra' and canvas_index=true (the clue words @k), got kind "
                             f"{self.kind!r}, canvas_index={self.canvas_index}")
        if self.clue_positions and not (self.canvas_factors or self.canvas_position_embeddings):
            raise ValueError("clue_positions needs canvas_factors or canvas_position_embeddings to embed")
        if self.prompt_positions and self.canvas_index:
            raise ValueError("prompt_positions needs a prompt of one token per cell: set canvas_index=false")
        if self.prompt_positions and not (self.canvas_factors or self.canvas_position_embeddings):
            raise ValueError("prompt_positions needs canvas_factors or canvas_position_embeddings to embed")
        if self.infill_decoder_positions and not (self.canvas_factors or self.canvas_position_embeddings):
            raise ValueError("infill_decoder_positions needs canvas_factors or canvas_position_embeddings to embed")
        if self.peer_attention and not self.canvas_factors:
            raise ValueError("peer_attention needs canvas_factors=true (the factors that make two cells peers)")
        if self.peer_attention_decoder and not self.peer_attention:
            raise ValueError("peer_attention_decoder needs peer_attention=true")
        if self.peer_attention and self.backbone != "t5":
            raise ValueError(f"peer_attention needs backbone 't5' (its relative attention bias), got {self.backbone!r}")
        if self.canvas_init_std < 0:
            raise ValueError(f"canvas_init_std must be >= 0 (0: zero-initialised tables), got {self.canvas_init_std}")
        if self.stage1_timesteps not in STAGE1_TIMESTEPS:
            raise ValueError(f"stage1_timesteps must be one of {STAGE1_TIMESTEPS}, got {self.stage1_timesteps!r}")
        if self.stage1_timesteps == "corruption" and not self.stage1_time_conditioning:
            raise ValueError("stage1_timesteps='corruption' needs stage1_time_conditioning=true (held at zero, the "
                             "time conditioning cannot read τ)")
        if not 0.0 < self.stage1_full_time_corruption <= 1.0:
            raise ValueError(f"stage1_full_time_corruption must be in (0, 1] (a share of wrong cells), got "
                             f"{self.stage1_full_time_corruption}")
        if not 0.0 <= self.draft_corruption_from < 1.0:
            raise ValueError(f"draft_corruption_from must be in [0, 1) (a share of stage 1's progress), got "
                             f"{self.draft_corruption_from}")
        if self.draft_pool < 1:
            raise ValueError(f"draft_pool must be >= 1 (training rows drafted per generate call), got {self.draft_pool}")
        if self.curve_every < 0 or self.curve_puzzles < 1:
            raise ValueError(f"curve_every must be >= 0 (0: no learning curve) and curve_puzzles >= 1, got "
                             f"{self.curve_every} and {self.curve_puzzles}")
        for name in ("stage1_steps", "stage2_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 skips the stage, e.g. to evaluate an --init-from "
                                 f"checkpoint), got {getattr(self, name)}")

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> "RecipeConfig":
        """Read a JSON config; `overrides` with value None are ignored."""
        raw = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown recipe fields {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    @classmethod
    def parse_override(cls, text: str) -> tuple[str, Any]:
        """`FIELD=VALUE` (the command line's `--set`) → `(FIELD, VALUE)` typed like the field's default."""
        name, sep, raw = text.partition("=")
        defaults = {f.name: f.default for f in fields(cls)}
        if not sep or name not in defaults:
            raise ValueError(f"--set takes FIELD=VALUE with FIELD one of {sorted(defaults)}, got {text!r}")
        kind = type(defaults[name])
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {name}: expected true/false/1/0, got {raw!r}")
            return name, raw.lower() in ("true", "1")
        try:
            return name, kind(raw)
        except ValueError:
            raise ValueError(f"--set {name}: expected a {kind.__name__}, got {raw!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ model + tokenizer
def legal_canvas_tokens(kind: str, size: int | None = None) -> list[str]:
    """Values a free canvas cell may hold: Sudoku `1..n`, Zebra `0..5` (houses on the entity canvas, values on the
    house canvas)."""
    if kind == "sudoku":
        return [str(v) for v in range(1, int(size) + 1)]
    if kind in (zebra.KIND, zebra.HOUSE_KIND):
        return [str(v) for v in range(zebra.MAX_SIZE)]
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def build_backbone(cfg: RecipeConfig, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A randomly initialised T5 or T5-Gemma of the recipe's size (the Glauber model's and the baselines' backbone)."""
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(cfg.seed)
    if cfg.backbone == "t5gemma":
        module = dict(
            vocab_size=len(tokenizer),
            hidden_size=cfg.d_model,
            intermediate_size=cfg.d_ff,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads,
            head_dim=cfg.d_kv,
            query_pre_attn_scalar=cfg.d_kv,  # the 1/sqrt(d_kv) scaling; Gemma's default assumes d_kv = 256
            **ids,
        )
        # the top-level dropout rates overwrite both modules' own
        config = T5GemmaConfig(encoder=module, decoder=dict(module), dropout_rate=0.0, attention_dropout=0.0,
                               decoder_start_token_id=tokenizer.pad_token_id, **ids)
        return T5GemmaForConditionalGeneration(config)
    t5 = T5Config(
        vocab_size=len(tokenizer),
        d_model=cfg.d_model,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        d_kv=cfg.d_kv,
        d_ff=cfg.d_ff,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        decoder_start_token_id=tokenizer.pad_token_id,
        dropout_rate=0.0,
        **ids,
    )
    return T5ForConditionalGeneration(t5)


def build_model(cfg: RecipeConfig, tokenizer: PreTrainedTokenizerFast) -> GlauberT5ForDiffusion:
    """The recipe's backbone converted with π_0 random and the recipe's N and w; only canvas values may be emitted."""
    model = GlauberT5ForDiffusion.from_backbone(
        build_backbone(cfg, tokenizer),
        tokenizer,
        num_rounds=cfg.num_rounds,
        mask_window=cfg.mask_window,
        causal_order="random",
        time_frequency_dim=cfg.time_dim,
        time_embedding_dim=cfg.time_dim,
        canvas_position_embeddings=canvas_cells(cfg) if cfg.canvas_position_embeddings else 0,
        canvas_position_factors=recipe_canvas_factors(cfg) if cfg.canvas_factors else None,
        canvas_given_embedding=cfg.given_embedding,
        canvas_peer_attention=cfg.peer_attention,
        canvas_peer_attention_decoder=cfg.peer_attention_decoder,
        infill_decoder_canvas_positions=cfg.infill_decoder_positions,
        prompt_canvas_positions=cfg.prompt_positions,
        canvas_position_token_ids=(tokenizer.convert_tokens_to_ids(canvas_index_words(canvas_cells(cfg)))
                                   if cfg.clue_positions else None),
        infill_reads_prompt=cfg.infill_prompt,
    )
    if cfg.canvas_init_std:
        generator = torch.Generator().manual_seed(cfg.seed)
        tables = [model.canvas_position_embedding, model.canvas_factor_embeddings, model.canvas_given_embedding]
        with torch.no_grad():
            for parameter in (p for table in filter(None, tables) for p in table.parameters()):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * cfg.canvas_init_std)
    # the Zebra filler is always frozen, so free cells can only ever take real values
    model.restrict_canvas_vocabulary(tokenizer.convert_tokens_to_ids(legal_canvas_tokens(cfg.kind, cfg.size)))
    return model


def recipe_canvas_factors(cfg: RecipeConfig) -> list[list[int]]:
    """The puzzle's `canvas_position_factors`: Sudoku row, column, box; Zebra attribute and value (entity canvas) or
    attribute and house (house canvas)."""
    if cfg.kind == "sudoku":
        return canvas_factors(cfg.size)
    if cfg.kind == zebra.HOUSE_KIND:
        return zebra.house_canvas_factors(int(cfg.houses), int(cfg.attributes))
    return zebra.canvas_factors()


def canvas_cells(cfg: RecipeConfig) -> int:
    """Canvas length L (the Sudoku grid, Zebra's fixed 6 × 6 entity table, or the puzzle's house table): one factor
    index per cell, so the layout is defined once, by `recipe_canvas_factors`."""
    return len(recipe_canvas_factors(cfg)[0])


def build_tokenizer(cfg: RecipeConfig) -> PreTrainedTokenizerFast:
    vocabulary = "sudoku" if cfg.kind == "sudoku" else zebra.KIND  # both Zebra canvases write clues in one vocabulary
    return build_puzzle_tokenizer(vocabulary, canvas_cells(cfg) if cfg.canvas_index else None, cfg.sentinels)


def load_model(path: str | Path, device: str = "cpu") -> tuple[GlauberT5ForDiffusion, PreTrainedTokenizerFast]:
    """A saved puzzle checkpoint in fp32 (whatever dtype it was stored in) and its tokenizer."""
    model = GlauberT5ForDiffusion.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(str(path))


def continue_from(path: str | Path, cfg: RecipeConfig, tokenizer: PreTrainedTokenizerFast) -> GlauberT5ForDiffusion:
    """The model `cfg` builds, holding the weights of a saved puzzle checkpoint (same tokenizer, same weight shapes), so
    that a continued run trains and saves the recipe's configuration (its N, w, …), not the checkpoint's."""
    trained, saved = load_model(path)
    if saved.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"--init-from {path}: its tokenizer is not the one --config builds (a different kind, size or "
                         "canvas_index?)")
    model = build_model(cfg, tokenizer)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in trained.state_dict().items()}
    differing = sorted(name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name))
    if differing:
        raise ValueError(f"--init-from {path}: {len(differing)} weights differ in shape from the model --config builds "
                         f"(backbone size, time_dim or canvas_position_embeddings?), e.g. {differing[0]}: "
                         f"checkpoint {found.get(differing[0])}, config {expected.get(differing[0])}")
    model.load_state_dict(trained.state_dict())
    return model


# ------------------------------------------------------------------------------------------------ stage 1
def concat_rows(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor],
                pad_token_id: int) -> dict[str, torch.Tensor]:
    """Two collated puzzle batches with the same keys (tensors of `[rows, …]`) as one, the prompts right-padded to the
    wider of the two (`attention_mask` 0 there)."""
    width = max(first["input_ids"].shape[1], second["input_ids"].shape[1])
    padding = {"input_ids": pad_token_id, "attention_mask": 0}

    def widened(batch: dict[str, torch.Tensor], key: str) -> torch.Tensor:
        if key not in padding:
            return batch[key]
        return torch.nn.functional.pad(batch[key], (0, width - batch[key].shape[1]), value=padding[key])

    return {key: torch.cat([widened(first, key), widened(second, key)]) for key in first}


@dataclass
class PuzzleUL2Collator:
    """Stage-1 batches for `GlauberT5ForDiffusion.forward`: S-task and R-task rows, see the module doc.

    Rows are `tokenize_prompt_canvas_rows` rows; output the model's mode inputs (`input_ids`, `attention_mask`,
    `decoder_input_ids`, `timesteps`: 1, or for R-task examples with `timesteps_from_corruption` their
    `corruption_timesteps`) and `labels` (-100 where no loss is taken). An R-task row yields `infill_per_row` examples,
    so that the infill mode gets a share of the token-averaged loss comparable to the L-token causal rows. Each
    example masks `infill_targets_min` … max(w, `infill_targets`) free cells and scores all of them
    (`infill_span_targets`).
    """

    model: GlauberT5ForDiffusion
    legal_ids: list[int]
    causal_fraction: float = 0.3
    infill_per_row: int = 4
    max_corruption: float = 0.5
    infill_targets: int = 1
    relabel_corruption: float = 0.0
    draft_corruption: float = 0.0
    seed: int = 0
    slot_shuffle: float = 0.0
    augment_size: int | None = None  # Sudoku side: draw a grid symmetry and a digit relabelling for every row
    infill_targets_min: int = 1
    # the training rows drafted examples are drawn from (`__getitem__`, `__len__`), `draft_pool` rows per draft call:
    # a drafted example is a pool puzzle, not one of its batch's rows, so one wide generate call serves many steps
    draft_source: Any = None
    draft_pool: int = 512
    # τ of an R-task example = the share of its unmasked free cells that are wrong (`corruption_timesteps`), not 1,
    # divided by `full_time_corruption` (the share τ = 1 stands for) and capped at 1
    timesteps_from_corruption: bool = False
    full_time_corruption: float = 1.0

    def __post_init__(self):
        if self.infill_targets_min < 1:
            raise ValueError(f"infill_targets_min must be >= 1, got {self.infill_targets_min}")
        for name in ("relabel_corruption", "draft_corruption", "slot_shuffle"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.relabel_corruption + self.draft_corruption > 1.0:
            raise ValueError(
                f"relabel_corruption + draft_corruption must be at most 1 (shares of the R-task examples), got "
                f"{self.relabel_corruption} + {self.draft_corruption}"
            )
        if self.draft_pool < 1:
            raise ValueError(f"draft_pool must be >= 1, got {self.draft_pool}")
        if not 0.0 < self.full_time_corruption <= 1.0:
            raise ValueError(f"full_time_corruption must be in (0, 1], got {self.full_time_corruption}")
        if self.draft_corruption and self.draft_source is None:
            raise ValueError("draft_corruption > 0 needs draft_source (the training rows to draft)")
        self._generators = WorkerGenerator(self.seed)
        self._base = GlauberDataCollator(self.model.config.pad_id)
        self._pool: dict[str, torch.Tensor] | None = None

    @property
    def _rng(self) -> np.random.Generator:
        return self._generators.get()

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        c = self.model.config
        batch = self._base(features)
        if self.augment_size is not None:
            batch = self._augment(batch)
        rows, length = batch["canvas_ids"].shape
        causal = torch.as_tensor(self._rng.random(rows) < self.causal_fraction)
        c_rows = causal.nonzero().flatten()
        i_rows = (~causal).nonzero().flatten().repeat_interleave(self.infill_per_row)
        drafted = torch.as_tensor(self._rng.random(len(i_rows)) < self.draft_corruption)
        drafts = None
        if bool(drafted.any()):
            # drafted examples are pool puzzles, appended to the batch as rows of their own; like a batch row, each
            # serves `infill_per_row` examples (their windows drawn apart)
            n = int(drafted.sum())
            pooled = self._take_drafts(-(-n // self.infill_per_row))
            example_row = torch.arange(n) // self.infill_per_row
            drafts = pooled.pop("drafts")[example_row]
            i_rows[drafted] = rows + example_row
            batch = concat_rows(batch, pooled, self.model.config.pad_id)
        canvas, frozen = batch["canvas_ids"], batch["frozen"]
        prefix = self.model.build_prefix(batch["input_ids"], batch["attention_mask"], frozen_mask=frozen,
                                         device=canvas.device)
        batches, labels = [], []
        if len(c_rows):
            order = self.model.schedule(length).causal_order_positions
            batches.append(self.model.causal_inputs(prefix.select(c_rows), canvas[c_rows]))
            labels.append(canvas[c_rows][:, order].masked_fill(frozen[c_rows][:, order], -100))
        if len(i_rows):
            context, window, valid = self._infill_rows(canvas[i_rows], frozen[i_rows], drafted)
            if drafts is not None:
                context[drafted] = drafts
            tau = 1.0
            if self.timesteps_from_corruption:
                wrong_share = corruption_timesteps(mask_canvas(context, window, valid, self.model.sentinel_ids),
                                                   canvas[i_rows], frozen[i_rows], self.model.sentinel_ids)
                tau = (wrong_share / self.full_time_corruption).clamp(max=1.0)
            inputs = self.model.infill_inputs(prefix.select(i_rows), context, window, valid, tau)
            targets = canvas[i_rows].gather(1, window)
            slot_orders = self._slot_orders(valid)
            inputs["decoder_input_ids"], span_labels = infill_span_targets(
                targets, valid, c.decoder_start_id, c.sentinel_token_ids, slot_orders
            )
            if c.infill_decoder_canvas_positions:
                inputs["decoder_canvas_positions"] = infill_span_canvas_positions(window, valid, slot_orders)
            batches.append(inputs)
            labels.append(span_labels)
        inputs = concat_mode_inputs(batches, c.pad_id)
        width = inputs["decoder_input_ids"].shape[1]
        inputs["labels"] = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=-100) for t in labels])
        return inputs

    def _augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same puzzle under a random validity-preserving cell permutation and digit relabelling, applied alike
        to the prompt grid (its first L tokens), the solution canvas and the frozen mask."""
        canvas = batch["canvas_ids"]
        rows, length = canvas.shape
        sigma = torch.as_tensor(random_symmetries(self.augment_size, rows, self._rng))
        legal = torch.as_tensor(self.legal_ids)
        relabel = torch.arange(int(max(canvas.max(), batch["input_ids"].max(), legal.max())) + 1).repeat(rows, 1)
        relabel[:, legal] = legal[torch.as_tensor(np.argsort(self._rng.random((rows, len(legal))), axis=1))]
        out = dict(batch)
        out["canvas_ids"] = relabel.gather(1, canvas.gather(1, sigma))
        out["frozen"] = batch["frozen"].gather(1, sigma)
        grid = batch["input_ids"][:, :length]
        out["input_ids"] = torch.cat([relabel.gather(1, grid.gather(1, sigma)), batch["input_ids"][:, length:]], dim=1)
        return out

    def _take_drafts(self, n: int) -> dict[str, torch.Tensor]:
        """`n` pool rows (the collated, augmented puzzle and its `drafts`), drafting `draft_pool` more whenever the
        pool runs short: the pool lags the model by at most the steps one pool lasts."""
        while self._pool is None or len(self._pool["drafts"]) < n:
            fresh = self._drafted_rows()
            self._pool = fresh if self._pool is None else concat_rows(self._pool, fresh, self.model.config.pad_id)
        taken = {key: value[:n] for key, value in self._pool.items()}
        self._pool = {key: value[n:] for key, value in self._pool.items()}
        return taken

    def _drafted_rows(self) -> dict[str, torch.Tensor]:
        """`draft_pool` random `draft_source` rows, collated and augmented as a batch is, with the model's CAUSAL-GEN
        draft of each (givens frozen) sampled at temperature 1 with fresh seeds, in eval mode (the draft generation
        would make, without dropout)."""
        picked = self._rng.integers(0, len(self.draft_source), self.draft_pool)
        batch = self._base([self.draft_source[int(i)] for i in picked])
        if self.augment_size is not None:
            batch = self._augment(batch)
        device = self.model.device
        seeds = torch.as_tensor(self._rng.integers(0, 2**62, self.draft_pool), dtype=torch.int64)
        training = self.model.training
        self.model.eval()
        try:
            drafts = self.model.generate(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                canvas_ids=batch["canvas_ids"].to(device), frozen_mask=batch["frozen"].to(device), num_rounds=0,
                do_sample=True, seed=seeds,
            )
        finally:
            self.model.train(training)
        return {**batch, "drafts": drafts.cpu()}

    def _slot_orders(self, valid: torch.Tensor) -> torch.Tensor | None:
        """For a `slot_shuffle` share of the examples, a random order of their masked slots (the others keep 0, 1, …),
        so the span targets train the decoder row `[start, <extra_id_j>]` of every slot j, not only j = 0."""
        if not self.slot_shuffle:
            return None
        rows, slots = valid.shape
        rng = self._rng
        shuffled = rng.random(rows) < self.slot_shuffle
        keys = np.where(valid.numpy() & shuffled[:, None], rng.random((rows, slots)), 1.0 + np.arange(slots))
        return torch.as_tensor(np.argsort(keys, axis=1, kind="stable"))

    def _infill_rows(self, canvas: torch.Tensor, frozen: torch.Tensor, drafted: torch.Tensor):
        """Corrupt each example (a random fraction of the free cells: uniform noise with ρ ~ U(0, max_corruption) or
        relabelling with ρ ~ U(0, 1); or, flagged in `drafted`, left for the caller to replace by a draft), then mask
        1 … m of the free cells. Drawn for the whole batch at once: a per-example loop made the collator, not the
        model, the bottleneck of a GPU step."""
        w = min(max(self.model.config.mask_window, self.infill_targets), len(self.model.sentinel_ids))
        rows, length = canvas.shape
        rng = self._rng
        free = ~frozen.numpy()
        legal = np.asarray(self.legal_ids)
        # a uniformly random ordering of each row's free cells (frozen ones sort last); the window is its first k
        order = np.argsort(np.where(free, rng.random((rows, length)), 2.0), axis=1, kind="stable")[:, :w]
        most = np.minimum(w, free.sum(axis=1))
        k = rng.integers(np.minimum(self.infill_targets_min, most), most + 1)
        valid = np.arange(order.shape[1])[None, :] < k[:, None]
        drafted = drafted.numpy()
        # relabel_corruption is a share of all examples, so of the undrafted ones it is rc / (1 − draft_corruption)
        relabelled = ~drafted & (rng.random(rows) < self.relabel_corruption / max(1.0 - self.draft_corruption, 1e-9))
        rho = rng.random(rows) * np.where(relabelled, 1.0, self.max_corruption)
        noisy = free & ~drafted[:, None] & (rng.random((rows, length)) < rho[:, None])
        values = canvas.numpy()
        uniform = legal[rng.integers(0, len(legal), (rows, length))]
        index_of = np.zeros(int(max(legal.max(), values.max())) + 1, dtype=np.int64)
        index_of[legal] = np.arange(len(legal))
        permuted = legal[np.argsort(rng.random((rows, len(legal))), axis=1)]  # one value permutation per row
        relabel = np.take_along_axis(permuted, index_of[values], axis=1)
        context = np.where(noisy, np.where(relabelled[:, None], relabel, uniform), values)
        window = np.where(valid, order, 0)
        return torch.as_tensor(context), torch.as_tensor(window), torch.as_tensor(valid)


def corruption_timesteps(masked_context: torch.Tensor, solution: torch.Tensor, frozen: torch.Tensor,
                         sentinel_ids: torch.Tensor) -> torch.Tensor:
    """τ per infill example `[B]`: the share of the free cells that the infill sees (`masked_context`, the canvas
    `mask_canvas` gives its encoder, cells not replaced by a sentinel) whose value differs from `solution`; 0 where
    it sees none."""
    seen = ~frozen & ~torch.isin(masked_context, sentinel_ids.to(masked_context.device))
    wrong = (seen & (masked_context != solution)).sum(1)
    return wrong.float() / seen.sum(1).clamp(min=1).float()


class TimeBudget(TrainerCallback):
    """Stops training once `seconds` of wall time have passed since `train()` began."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def fraction(self) -> float:
        """Share of the budget spent so far (0 without a budget or before `train()` begins)."""
        if self.seconds is None or self.started is None:
            return 0.0
        return (time.perf_counter() - self.started) / self.seconds if self.seconds > 0 else 1.0

    def on_step_end(self, args, state, control, **kwargs):
        if self.fraction() >= 1.0:
            control.should_training_stop = True

    def progress(self, step: int, steps: int) -> float:
        """A run's progress in [0, 1]: the larger of `step / steps` and the spent share of the budget."""
        return min(1.0, max(step / max(1, steps), self.fraction()))


class BudgetCosineSchedule:
    """Trainer mixin: linear warm-up, then cosine decay to 0 whose progress is the larger of
    (step − warm-up)/(max_steps − warm-up) and the spent share of a wall-time budget, so that a run stopped by its
    budget has annealed its learning rate instead of stopping mid-schedule. Without a budget this is exactly
    `lr_scheduler_type="cosine"`. Takes `budget_s` and installs the `TimeBudget` callback that stops the run."""

    def __init__(self, *args, budget_s: float | None = None, callbacks=None, **kwargs):
        self.time_budget = TimeBudget(budget_s)
        super().__init__(*args, callbacks=[self.time_budget, *(callbacks or [])], **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            warmup = self.args.get_warmup_steps(num_training_steps)
            budget = self.time_budget

            def factor(step: int) -> float:
                if step < warmup:
                    return step / max(1, warmup)
                progress = budget.progress(step - warmup, num_training_steps - warmup)
                return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, factor)
            self._created_lr_scheduler = True
        return self.lr_scheduler


class BudgetTrainer(BudgetCosineSchedule, Trainer):
    """`Trainer` with the budget-aware cosine schedule (stage 1 and the baselines)."""


class BudgetGlauberTrainer(BudgetCosineSchedule, GlauberTrainer):
    """`GlauberTrainer` with the budget-aware cosine schedule (stage 2)."""


DECODER_KEYS = ("decoder_input_ids", "decoder_canvas_positions", "labels")
ENCODER_KEYS = ("input_ids", "attention_mask", "canvas_positions", "canvas_given")


def decoder_length_groups(inputs: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Split a stage-1 batch into the rows whose scored decoder tokens end in the first half of the decoder width
    (R-task spans, ≤ 2·`infill_targets` + 1 tokens) and the rest (S-task rows, L + 1), each trimmed of its right
    padding. Exact: encoders and decoders are right-padded, padded encoder keys are masked and a causal decoder's
    padded tail changes no earlier logit; the trim only skips the padded FLOPs (the decoders of a mixed batch are
    all as wide as a whole canvas)."""
    labels = inputs["labels"]
    width = labels.shape[1]
    scored = labels != -100
    needed = torch.where(scored.any(1), width - scored.flip(1).int().argmax(1), 0)
    encoder_needed = inputs["attention_mask"].shape[1] - inputs["attention_mask"].flip(1).int().argmax(1)
    short = needed <= (int(needed.max()) + 1) // 2
    groups = []
    for rows in (short.nonzero().flatten(), (~short).nonzero().flatten()):
        if not len(rows):
            continue
        decoder_width, encoder_width = int(needed[rows].max()), int(encoder_needed[rows].max())
        trim = {**dict.fromkeys(DECODER_KEYS, decoder_width), **dict.fromkeys(ENCODER_KEYS, encoder_width)}
        groups.append({key: (value[rows][:, :trim[key]] if key in trim else value[rows]).contiguous()
                       for key, value in inputs.items()})
    return groups


def stage1_loss(model: GlauberT5ForDiffusion, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The token-averaged cross-entropy of a stage-1 batch, `model(**inputs).loss`, computed on its
    `decoder_length_groups` (one forward each) and recombined by their scored-token counts."""
    groups = decoder_length_groups(inputs)
    counts = [int((g["labels"] != -100).sum()) for g in groups]
    total = sum(counts)
    return sum(model(**g).loss * (n / total) for g, n in zip(groups, counts) if n)


class DraftCorruptionFrom(TrainerCallback):
    """Holds the stage-1 collator's `draft_corruption` at 0 from the start of training until the run's progress
    (`TimeBudget.progress`) reaches `start`, then gives it `share`; records the step at which it did."""

    def __init__(self, collator: PuzzleUL2Collator, share: float, start: float, budget: TimeBudget):
        self.collator, self.share, self.start, self.budget = collator, share, start, budget
        self.step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.collator.draft_corruption = 0.0
        self.step = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.step is None and self.budget.progress(state.global_step, state.max_steps) >= self.start:
            self.collator.draft_corruption = self.share
            self.step = state.global_step


class Stage1Trainer(BudgetTrainer):
    """Stage 1's `Trainer`: the loss of `stage1_loss` (same value, no FLOPs on decoder padding)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return stage1_loss(model, inputs)


def common_training_arguments(out: str, steps: int, lr: float, batch: int, device: str, precision: str, seed: int,
                              loader_workers: int = 0) -> dict[str, Any]:
    """`TrainingArguments` fields shared by both stages and the baselines; `loader_workers` > 0 collates batches in
    that many DataLoader processes, ahead of the accelerator's step."""
    ahead = dict(dataloader_persistent_workers=True, dataloader_prefetch_factor=4) if loader_workers else {}
    return dict(
        output_dir=out,
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=batch,
        warmup_steps=min(100, steps // 10),
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_steps=max(1, min(100, steps // 20)),  # a run its time budget stops still logs a curve
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        seed=seed,
        dataloader_num_workers=loader_workers,
        remove_unused_columns=False,
        **ahead,
    )


def loader_workers(cfg: RecipeConfig, device: str) -> int:
    """DataLoader processes for a stage-1 collator: on an accelerator the CPU-side corruption runs ahead of the step;
    on the CPU the collator shares the cores with the step, and draws that generate drafts need the model."""
    return 4 if device != "cpu" and cfg.draft_corruption == 0 else 0


def stage1_collator(model: GlauberT5ForDiffusion, cfg: RecipeConfig, train_rows: Any) -> PuzzleUL2Collator:
    """The recipe's stage-1 collator for `model`, drafting from `train_rows` (the tokenized training rows)."""
    legal = build_tokenizer(cfg).convert_tokens_to_ids(legal_canvas_tokens(cfg.kind, cfg.size))
    return PuzzleUL2Collator(model, legal, cfg.causal_fraction, cfg.infill_per_row, cfg.max_corruption,
                             cfg.infill_targets, cfg.relabel_corruption, cfg.draft_corruption, cfg.seed,
                             slot_shuffle=cfg.slot_shuffle, augment_size=cfg.size if cfg.augment else None,
                             infill_targets_min=cfg.infill_targets_min, draft_source=train_rows,
                             draft_pool=cfg.draft_pool, timesteps_from_corruption=cfg.stage1_timesteps == "corruption",
                             full_time_corruption=cfg.stage1_full_time_corruption)


def train_stage1(model, train_ds, cfg: RecipeConfig, out: str, device: str = "cpu", precision: str = "fp32",
                 budget_s: float | None = None, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Stage 1 (UL2-style S + R mixture, τ as `cfg.stage1_timesteps` says) with the stock `Trainer`; returns its log
    summary."""
    collator = stage1_collator(model, cfg, train_ds)
    held_at_zero = [] if cfg.stage1_time_conditioning else [p for p in model.time_conditioning.parameters()
                                                            if p.requires_grad]
    for p in held_at_zero:
        p.requires_grad_(False)
    args = TrainingArguments(**common_training_arguments(out, cfg.stage1_steps, cfg.stage1_lr, cfg.stage1_batch, device,
                                                         precision, cfg.seed, loader_workers(cfg, device)))
    trainer = Stage1Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collator, budget_s=budget_s,
                            callbacks=callbacks)
    drafts = None
    if cfg.draft_corruption and cfg.draft_corruption_from:
        drafts = DraftCorruptionFrom(collator, cfg.draft_corruption, cfg.draft_corruption_from, trainer.time_budget)
        trainer.add_callback(drafts)
    try:
        summary = _run(trainer)
        if drafts is not None:
            summary["draft_corruption_from_step"] = drafts.step
        return summary
    finally:
        for p in held_at_zero:
            p.requires_grad_(True)


def train_stage2(model, train_ds, cfg: RecipeConfig, out: str, device: str = "cpu", precision: str = "fp32",
                 budget_s: float | None = None, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Stage 2: `GlauberTrainer` (DWDSE + causal loss on `causal_loss_target`) from the stage-1 weights."""
    args = GlauberTrainingArguments(
        **common_training_arguments(out, cfg.stage2_steps, cfg.stage2_lr, cfg.stage2_batch, device, precision, cfg.seed),
        timesteps_per_chain=cfg.timesteps_per_chain,
        timestep_sampling=cfg.timestep_sampling,
        reference_update_steps=cfg.reference_update_steps,
        reference_ema_decay=cfg.reference_ema_decay,
        causal_loss_weight=cfg.causal_loss_weight,
        causal_loss_target=cfg.causal_loss_target,
    )
    trainer = BudgetGlauberTrainer(model=model, args=args, train_dataset=train_ds, budget_s=budget_s,
                                   callbacks=callbacks)
    summary = _run(trainer)
    summary["noising_seconds"] = round(trainer.noising_seconds, 1)
    return summary


def _run(trainer: Trainer) -> dict[str, Any]:
    started = time.perf_counter()
    if trainer.args.max_steps > 0:  # Trainer reads max_steps <= 0 as "train by epochs"; here 0 skips the stage
        trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    losses = [e["loss"] for e in logged]
    seconds = time.perf_counter() - started
    return {
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "steps_per_second": round(trainer.state.global_step / seconds, 3) if seconds else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "losses": losses,
        "loss_steps": [e["step"] for e in logged],
    }


def tokenized(ds, tokenizer: PreTrainedTokenizerFast):
    """`prompt`/`canvas`/`frozen` string rows → the trainers' `input_ids`/`canvas_ids`/`frozen` rows."""
    rows = ds.select_columns(["prompt", "canvas", "frozen"])
    if canvas_index_suffix(tokenizer):  # otherwise the prompts are already what the tokenizer reads
        rows = rows.map(lambda batch: {"prompt": encoder_prompts(tokenizer, batch["prompt"])}, batched=True)
    return tokenize_prompt_canvas_rows(rows, tokenizer)


# ------------------------------------------------------------------------------------------------ evaluation
def canvas_inputs(rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerFast, device: str = "cpu"):
    """Prompts (left-padded), canvases holding only the givens (pad elsewhere) and frozen masks, as tensors."""
    prompts = tokenizer(encoder_prompts(tokenizer, [r["prompt"] for r in rows]), add_special_tokens=False)["input_ids"]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.as_tensor(p)
        mask[i, width - len(p):] = 1
    frozen = torch.as_tensor([list(r["frozen"]) for r in rows], dtype=torch.bool)
    solution = torch.as_tensor([tokenizer(r["canvas"], add_special_tokens=False)["input_ids"] for r in rows])
    canvas = torch.where(frozen, solution, torch.full_like(solution, tokenizer.pad_token_id))
    return ids.to(device), mask.to(device), canvas.to(device), frozen.to(device)


@torch.no_grad()
def glauber_predictions(model: GlauberT5ForDiffusion, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                        num_rounds: int, batch_size: int = 256, mask_window: int | None = None,
                        update_block: int = 1, progress: bool = False,
                        starts: list[list[str]] | None = None, temperature: float | None = None,
                        seed: int = 0) -> tuple[list[list[str]], int]:
    """Reverse process with `num_rounds` rounds (0 = the causal draft), mask window w (default: the config's) and
    `update_block` positions per call (parallel Glauber): canvases and model calls per batch; `progress` shows a tqdm
    bar over each batch's model calls. `starts` (one canvas of cell values per row): the rounds start from these
    (`generate(start="canvas")`) instead of from the draft, and N = 0 returns them. Greedy unless `temperature` is
    given; then sampled, row i of `rows` with seed `seed + i`, so a row's sample does not depend on the batching."""
    predictions, calls = [], 0
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo:lo + batch_size]
        ids, mask, canvas, frozen = canvas_inputs(chunk, tokenizer, model.device)
        start = "draft"
        if starts is not None:
            given = [" ".join(cells) for cells in starts[lo:lo + batch_size]]
            start = "canvas"
            canvas = torch.as_tensor(tokenizer(given, add_special_tokens=False)["input_ids"], device=model.device)
        out = model.generate(input_ids=ids, attention_mask=mask, canvas_ids=canvas, frozen_mask=frozen, start=start,
                             num_rounds=num_rounds, mask_window=mask_window, update_block=update_block,
                             do_sample=temperature is not None, temperature=temperature,
                             seed=None if temperature is None else seed + lo, return_dict_in_generate=True,
                             progress=progress)
        calls = max(calls, out.num_model_calls)
        predictions += [tokenizer.convert_ids_to_tokens(row) for row in out.sequences.tolist()]
    return predictions, calls


class LearningCurve(TrainerCallback):
    """Every `every` optimiser steps and at the end of each stage: solved share and cell accuracy of the greedy causal
    draft (N = 0) and of N = `num_rounds` on `rows`, in eval mode. Steps continue across the stages it is passed to;
    `points` holds one dict per evaluation (the wall time spent evaluating is part of the training budget)."""

    def __init__(self, model: GlauberT5ForDiffusion, tokenizer: PreTrainedTokenizerFast, rows: list[dict[str, Any]],
                 num_rounds: int, every: int, batch_size: int = 256, mask_window: int | None = None):
        self.model, self.tokenizer, self.rows = model, tokenizer, rows
        self.num_rounds, self.every, self.batch_size, self.mask_window = num_rounds, every, batch_size, mask_window
        self.points: list[dict[str, Any]] = []
        self.stage = ""
        self._offset = 0
        self._started = time.perf_counter()

    def begin_stage(self, name: str) -> None:
        self.stage = name

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.measure(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if not self.points or self.points[-1]["step"] != self._offset + state.global_step:
            self.measure(state.global_step)
        self._offset += state.global_step

    def measure(self, stage_step: int) -> dict[str, Any]:
        started = time.perf_counter()
        training = self.model.training
        self.model.eval()
        point = {"step": self._offset + stage_step, "stage": self.stage, "puzzles": len(self.rows),
                 "wall_seconds": round(started - self._started, 1)}
        try:
            for rounds in (0, self.num_rounds):
                predictions, _ = glauber_predictions(self.model, self.tokenizer, self.rows, rounds, self.batch_size,
                                                     self.mask_window)
                metrics = evaluate_predictions(predictions, self.rows)
                point[f"solved_n{rounds}"] = metrics["solved"]
                point[f"cell_accuracy_n{rounds}"] = metrics["cell_accuracy"]
        finally:
            self.model.train(training)
        point["eval_seconds"] = round(time.perf_counter() - started, 1)
        print(f"learning curve: {json.dumps(point)}", flush=True)  # beside the Trainer's own log lines
        self.points.append(point)
        return point
