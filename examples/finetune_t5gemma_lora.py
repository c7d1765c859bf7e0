"""LoRA fine-tuning of a T5-Gemma Glauber model (paper §4.3: T5-Gemma, N = 1) with an adapter-only EMA reference.

    python examples/finetune_t5gemma_lora.py --output_dir out/lora --max_steps 30 --use_cpu
    python examples/finetune_t5gemma_lora.py --model_name_or_path google/t5gemma-2b-2b-ul2 --output_dir out/lora ...

The reference kernel of the noising chain is a second LoRA adapter ("reference") on the shared frozen base, the EMA
of the trained adapter: it costs adapter memory, not a second model (both numbers are printed).

Written under --output_dir, each folder with the tokenizer:
    base/     the converted model before LoRA (the adapter's `base_model_name_or_path` points here)
    adapter/  the trained LoRA adapter (+ time conditioning):
              glauber-lm-eval --model glauber --model_args pretrained=OUT/base,peft=OUT/adapter ...
    merged/   the adapter merged into a plain `GlauberT5ForDiffusion`:
              AutoModel.from_pretrained("OUT/merged", trust_remote_code=True),
              glauber-lm-eval --model glauber --model_args pretrained=OUT/merged ...
"""

import os
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, ByT5Tokenizer, HfArgumentParser, set_seed  # noqa: E402

from modeling_glauber import GlauberT5ForDiffusion  # noqa: E402
from trainers import (  # noqa: E402
    CopyReference,
    GlauberTrainer,
    GlauberTrainingArguments,
    apply_lora,
    glauber_lora_config,
    load_text_dataset,
    pack_text_dataset,
)
from trainers.recipe import DEFAULT_CORPUS  # noqa: E402


@dataclass
class LoraScriptArguments:
    model_name_or_path: str = field(default="tiny", metadata={"help": "T5-Gemma Hub id / folder, or 'tiny'"})
    dataset: str = field(default=DEFAULT_CORPUS, metadata={"help": "text dataset (Hub name or local file)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})


def tiny_t5gemma():
    from transformers import T5GemmaConfig, T5GemmaForConditionalGeneration

    module = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=32, vocab_size=384)
    return T5GemmaForConditionalGeneration(T5GemmaConfig(encoder=dict(module), decoder=dict(module)))


def main(script: LoraScriptArguments, args: GlauberTrainingArguments) -> None:
    set_seed(args.seed)  # the converted model's new weights are drawn before Trainer seeds
    tiny = script.model_name_or_path == "tiny"
    tokenizer = ByT5Tokenizer() if tiny else AutoTokenizer.from_pretrained(script.model_name_or_path)
    backbone = tiny_t5gemma() if tiny else AutoModelForSeq2SeqLM.from_pretrained(script.model_name_or_path)
    model = GlauberT5ForDiffusion.from_backbone(backbone, tokenizer, num_rounds=args.num_rounds or 1)
    # the converted model is the adapter's base: saved, so that the adapter names a folder that holds it
    base_dir = os.path.join(args.output_dir, "base")
    model.save_pretrained(base_dir)
    model.name_or_path = base_dir  # what peft writes as base_model_name_or_path
    peft_model = apply_lora(model, glauber_lora_config(model, r=script.lora_r, lora_alpha=script.lora_alpha))
    peft_model.print_trainable_parameters()
    length = args.canvas_length or 32
    data = pack_text_dataset(load_text_dataset(script.dataset), tokenizer, canvas_length=length)
    trainer = GlauberTrainer(model=peft_model, args=args, train_dataset=data, processing_class=tokenizer)
    adapter_bytes = trainer.reference.memory_bytes()
    copy_bytes = CopyReference(peft_model).memory_bytes() if tiny else sum(
        p.numel() * p.element_size() for p in peft_model.parameters())
    print(f"reference memory: adapter EMA {adapter_bytes / 2**20:.2f} MiB vs deep copy {copy_bytes / 2**20:.2f} MiB")
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)

    adapter_dir = os.path.join(args.output_dir, "adapter")
    peft_model.save_pretrained(adapter_dir, selected_adapters=["default"])
    tokenizer.save_pretrained(adapter_dir)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(os.path.join(args.output_dir, "merged"), tokenizer=tokenizer)
    merged.eval()
    out = merged.generate(input_ids=torch.zeros((2, 0), dtype=torch.long), max_new_tokens=length, seed=0, top_p=0.95,
                          return_dict_in_generate=True)
    for text in tokenizer.batch_decode(out.sequences, skip_special_tokens=True):
        print(f"sample: {text!r}")


if __name__ == "__main__":
    argv = sys.argv[1:] or ["--output_dir", "out/lora", "--max_steps", "30", "--num_rounds", "1", "--use_cpu",
                            "--timesteps_per_chain", "8", "--per_device_train_batch_size", "8", "--learning_rate",
                            "1e-3", "--reference_update_steps", "10", "--logging_steps", "10", "--save_steps", "30"]
    main(*HfArgumentParser((LoraScriptArguments, GlauberTrainingArguments)).parse_args_into_dataclasses(args=argv))
