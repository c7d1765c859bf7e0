"""LoRA on T5-Gemma: adapter reference (EMA of the adapter on the shared base), save/load, merge, memory."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset

from modeling_glauber import GlauberT5ForDiffusion
from trainer_fixtures import tiny_t5, tiny_t5gemma, toy_rows
from trainers import CopyReference, GlauberTrainer, GlauberTrainingArguments, apply_lora, glauber_lora_config


def lora_args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, timesteps_per_chain=2,
        reference_update_steps=1, reference_ema_decay=0.5, learning_rate=1e-2, use_cpu=True, report_to="none",
        save_strategy="steps", save_steps=2, logging_steps=1, disable_tqdm=True,
    )
    return GlauberTrainingArguments(**{**defaults, **kwargs})


def test_lora_t5gemma_adapter_reference(tmp_path):
    model = apply_lora(tiny_t5gemma(), glauber_lora_config(tiny_t5gemma(), r=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)
    assert any("time_conditioning" in n for n in trainable) and any("q_proj.lora_A" in n for n in trainable)
    trainer = GlauberTrainer(model=model, args=lora_args(tmp_path), train_dataset=Dataset.from_dict(toy_rows()))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable  # reference stays frozen
    adapter_bytes = trainer.reference.memory_bytes()
    copy_bytes = CopyReference(model).memory_bytes()
    print(f"reference memory: adapter {adapter_bytes} B vs deep copy {copy_bytes} B ({copy_bytes / adapter_bytes:.1f}x)")
    assert adapter_bytes < copy_bytes
    before = {n: r.clone() for n, r, _ in trainer.reference.pairs()}
    trainer.train()
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    for name, ref, src in trainer.reference.pairs():
        assert not ref.requires_grad
    assert any(not torch.equal(before[n], r) for n, r, _ in trainer.reference.pairs())
    # the reference adapter runs at τ = 1 only while noising; the trained adapter stays active
    assert model.active_adapter == "default"

    # adapters saved and loadable, merge gives a plain GlauberT5ForDiffusion with the same outputs
    from peft import PeftModel

    model.save_pretrained(tmp_path / "adapter", selected_adapters=["default"])
    base = tiny_t5gemma()
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    model.eval()
    x = torch.full((2, 5), 80)
    prefix = model.get_base_model().build_prefix(None, None, 2)
    with torch.no_grad():
        expected = model.get_base_model().infill_logits(prefix, x, torch.tensor([1]), torch.tensor([True]), 0.5)
        got = reloaded.get_base_model().infill_logits(prefix, x, torch.tensor([1]), torch.tensor([True]), 0.5)
        merged = reloaded.merge_and_unload()
        assert isinstance(merged, GlauberT5ForDiffusion)
        merged_logits = merged.infill_logits(prefix, x, torch.tensor([1]), torch.tensor([True]), 0.5)
    finite = torch.isfinite(expected)
    assert torch.allclose(got[finite], expected[finite], atol=1e-5)
    assert torch.allclose(merged_logits[finite], expected[finite], atol=1e-4)


def test_lora_resume_restores_the_adapter_reference(tmp_path):
    def build():
        model = apply_lora(tiny_t5gemma(), glauber_lora_config(tiny_t5gemma(), r=4))
        args = lora_args(tmp_path, max_steps=3)
        return GlauberTrainer(model=model, args=args, train_dataset=Dataset.from_dict(toy_rows()))

    full = build()
    full.train()
    resumed = build()
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    losses = lambda t: [e["loss"] for e in t.state.log_history if "loss" in e]  # noqa: E731
    assert losses(resumed)[2:] == losses(full)[2:]
    for (name, ref, _), (_, ref_full, _) in zip(resumed.reference.pairs(), full.reference.pairs()):
        assert torch.equal(ref, ref_full), name


def test_a_canvas_position_embedding_trains_in_full_under_lora():
    model = tiny_t5(canvas_position_embeddings=6)
    peft_model = apply_lora(model, glauber_lora_config(model))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("canvas_position_embedding" in n for n in trainable)
    with pytest.raises(ValueError, match="canvas_position_embedding"):
        apply_lora(tiny_t5(canvas_position_embeddings=6),
                   glauber_lora_config(model, modules_to_save=["time_conditioning"]))


def test_lora_config_targeting_nothing_is_an_error():
    model = tiny_t5gemma()
    with pytest.raises(ValueError, match="targets no module"):
        apply_lora(model, glauber_lora_config(model, target_modules=["not_a_layer"]))
    with pytest.raises(ValueError, match="time_conditioning"):
        apply_lora(model, glauber_lora_config(model, modules_to_save=[]))
    with pytest.raises(ValueError, match="ref_model cannot be given"):
        peft_model = apply_lora(model, glauber_lora_config(model))
        GlauberTrainer(model=peft_model, args=lora_args("/tmp/unused_lora"), ref_model=copy.deepcopy(peft_model),
                       train_dataset=Dataset.from_dict(toy_rows()))


def test_applying_and_loading_lora_raises_no_future_warning(tmp_path):
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model = apply_lora(tiny_t5gemma(), glauber_lora_config(tiny_t5gemma(), r=4))
        model.save_pretrained(tmp_path, selected_adapters=["default"])
        PeftModel.from_pretrained(tiny_t5gemma(), tmp_path)
    assert not model.get_base_model().is_gradient_checkpointing
    model.get_base_model().activation_checkpointing_enable()
    assert model.get_base_model().is_gradient_checkpointing


def test_lora_example_writes_folders_that_reload_and_evaluate(tmp_path):
    """examples/finetune_t5gemma_lora.py: base, adapter and merged folders each hold a tokenizer; the adapter names
    the saved base; lm-eval's adapter scores merged and base + adapter alike; merged loads with AutoModel."""
    import importlib.util
    import json
    from pathlib import Path

    from lm_eval.api.instance import Instance
    from transformers import AutoModel, AutoTokenizer, HfArgumentParser

    from eval.lm_eval_adapter import GlauberLM

    path = Path(__file__).parents[2] / "examples" / "finetune_t5gemma_lora.py"
    spec = importlib.util.spec_from_file_location("finetune_t5gemma_lora", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "lora"
    argv = ["--output_dir", str(out), "--max_steps", "2", "--num_rounds", "1", "--use_cpu", "--timesteps_per_chain",
            "2", "--per_device_train_batch_size", "2", "--canvas_length", "8", "--lora_r", "2", "--learning_rate",
            "1e-2", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
    example.main(*HfArgumentParser((example.LoraScriptArguments, GlauberTrainingArguments))
                 .parse_args_into_dataclasses(args=argv))

    for folder in ("base", "adapter", "merged"):
        assert (out / folder / "tokenizer_config.json").is_file(), folder
    base = json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base is not None and Path(base).resolve() == (out / "base").resolve()

    request = [Instance(request_type="loglikelihood", doc={}, arguments=("Once upon", " a time"), idx=0)]
    merged = GlauberLM(pretrained=str(out / "merged"), scorer="causal", progress=False)
    unmerged = GlauberLM(pretrained=base, peft=str(out / "adapter"), scorer="causal", progress=False)
    untrained = GlauberLM(pretrained=base, scorer="causal", progress=False)
    value = merged.loglikelihood(request)[0][0]
    assert value == pytest.approx(unmerged.loglikelihood(request)[0][0], rel=1e-4)
    assert abs(value - untrained.loglikelihood(request)[0][0]) > 1e-4  # the adapter changed the model

    reloaded = AutoModel.from_pretrained(out / "merged", trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(out / "merged")
    assert type(reloaded).__name__ == "GlauberT5ForDiffusion" and tok("a").input_ids == merged.tokenizer("a").input_ids
