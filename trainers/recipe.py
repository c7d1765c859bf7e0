"""The two-stage text recipe shared by `examples/train_text.py` and `glauber train`.

Step 1 (UL2 stage): mixture-of-denoisers training with the stock `Seq2SeqTrainer` (the paper's Flan-T5 → UL2).
Step 2 (Glauber stage): `GlauberTrainer` on packed canvases of L tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "data", "corpus.txt")


@dataclass
class TextRecipeArguments:
    model_name_or_path: str = field(default="tiny", metadata={"help": "Hub id / folder of a T5 or T5-Gemma, or 'tiny'"})
    dataset: str = field(default=DEFAULT_CORPUS, metadata={"help": "Hub dataset, local file or folder of .txt"})
    dataset_split: str = field(default="train", metadata={"help": "split to train on"})
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    streaming: bool = field(default=False, metadata={"help": "stream the dataset"})
    prompt_length: int = field(default=0, metadata={"help": "tokens of each block used as the prompt P"})
    mask_window: int = field(default=1, metadata={"help": "w of the converted model"})
    ul2_steps: int = field(default=30, metadata={"help": "steps of the UL2 stage (0 skips it)"})
    sample_rows: int = field(default=2, metadata={"help": "rows to generate at the end"})


def tiny_backbone():
    """A random 2-layer T5 (d_model 64) for CPU demos and tests."""
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(vocab_size=384, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128,
                                               decoder_start_token_id=0))


def ul2_training_arguments(args, steps: int):
    """The UL2 stage's `Seq2SeqTrainingArguments`: every `TrainingArguments` field of the Glauber stage's `args`
    (batch, accumulation, precision, schedule, clipping, workers, ...), but its own `steps`, folder and no saving,
    evaluation or pushing (the run's checkpoints and results are the Glauber stage's)."""
    from dataclasses import fields

    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    shared = {f.name: getattr(args, f.name) for f in fields(TrainingArguments) if f.init}
    shared.update(
        output_dir=os.path.join(args.output_dir, "ul2"), max_steps=steps, save_strategy="no", eval_strategy="no",
        load_best_model_at_end=False, push_to_hub=False, resume_from_checkpoint=None, remove_unused_columns=False,
    )
    return Seq2SeqTrainingArguments(**shared)


def run_text_recipe(recipe: TextRecipeArguments, args) -> str:
    """Runs step 1 and step 2, saves the model in `args.output_dir`, prints a sample; returns the output folder."""
    import torch
    from transformers import AutoTokenizer, ByT5Tokenizer, Seq2SeqTrainer, set_seed

    from modeling_glauber import GlauberT5ForDiffusion

    from .data import load_text_dataset, pack_text_dataset
    from .trainer import GlauberTrainer
    from .ul2 import UL2DataCollator

    if args.canvas_length is None:
        args.canvas_length = 32  # the recipe packs fixed canvases: L must be known
    set_seed(args.seed)  # before the model is built: Trainer seeds only once it starts, after conversion
    tiny = recipe.model_name_or_path == "tiny"
    tokenizer = ByT5Tokenizer() if tiny else AutoTokenizer.from_pretrained(recipe.model_name_or_path)
    backbone = tiny_backbone() if tiny else recipe.model_name_or_path
    model = GlauberT5ForDiffusion.from_backbone(backbone, tokenizer, num_rounds=args.num_rounds or 1,
                                                mask_window=recipe.mask_window)
    raw = load_text_dataset(recipe.dataset, split=recipe.dataset_split, streaming=recipe.streaming)
    data = pack_text_dataset(raw, tokenizer, args.canvas_length, recipe.prompt_length, recipe.text_column)

    if recipe.ul2_steps > 0:  # step 1: UL2 mixture of denoisers (τ = 1)
        Seq2SeqTrainer(model=model, args=ul2_training_arguments(args, recipe.ul2_steps), train_dataset=data,
                       processing_class=tokenizer,
                       data_collator=UL2DataCollator.from_model(model, seed=args.seed)).train()

    trainer = GlauberTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)  # step 2
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if recipe.sample_rows > 0 and trainer.is_world_process_zero():
        model.eval()
        prompts = torch.zeros((recipe.sample_rows, 0), dtype=torch.long)  # unconditional rows
        out = model.generate(input_ids=prompts, max_new_tokens=args.canvas_length, seed=0, top_p=0.95,
                             return_dict_in_generate=True)
        for text in tokenizer.batch_decode(out.sequences, skip_special_tokens=True):
            print(f"sample: {text!r}")
    return args.output_dir


__all__ = ["TextRecipeArguments", "run_text_recipe", "tiny_backbone", "ul2_training_arguments", "DEFAULT_CORPUS"]
