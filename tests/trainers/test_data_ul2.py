"""Data pipeline (packing, puzzles' string rows, collator) and the UL2 mixture-of-denoisers stage."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from trainer_fixtures import CORPUS, tiny_t5
from trainers import (
    GlauberDataCollator,
    UL2DataCollator,
    UL2Denoiser,
    load_text_dataset,
    pack_text_dataset,
    tokenize_prompt_canvas_rows,
)


def test_pack_local_corpus_and_streaming(tokenizer):
    packed = pack_text_dataset(load_text_dataset(CORPUS), tokenizer, canvas_length=32, prompt_length=8)
    assert len(packed) > 100 and packed.column_names == ["input_ids", "canvas_ids"]
    assert all(len(r["canvas_ids"]) == 32 and len(r["input_ids"]) == 8 for r in packed)
    text = tokenizer.decode(packed[0]["input_ids"] + packed[0]["canvas_ids"])
    assert text.startswith("The river ran quietly")
    streamed = pack_text_dataset(load_text_dataset(CORPUS, streaming=True), tokenizer, canvas_length=32, prompt_length=8)
    first = next(iter(streamed))
    assert first["canvas_ids"] == packed[0]["canvas_ids"]
    batch = GlauberDataCollator(canvas_length=32)([packed[i] for i in range(3)])
    assert batch["canvas_ids"].shape == (3, 32) and batch["frozen"].dtype == torch.bool and not batch["frozen"].any()
    # rows (here the corpus file's lines) are joined by the separator, not run together
    def decoded(rows) -> str:
        return tokenizer.decode([i for r in rows.select(range(6)) for i in r["input_ids"] + r["canvas_ids"]])

    lines = open(CORPUS).read().splitlines()
    assert decoded(packed).startswith(lines[0] + "\n" + lines[1] + "\n")
    # the blocks tile the whole token stream: nothing is lost between rows, however many rows there are
    many = Dataset.from_dict({"text": lines * 20})
    stream = [i for line in lines * 20 for i in tokenizer(line + "\n", add_special_tokens=False).input_ids]
    flat = [i for r in pack_text_dataset(many, tokenizer, canvas_length=500) for i in r["canvas_ids"]]
    assert flat == stream[: len(flat)] and len(stream) - len(flat) < 500
    glued = pack_text_dataset(load_text_dataset(CORPUS), tokenizer, canvas_length=32, prompt_length=8, separator="")
    assert decoded(glued).startswith(lines[0] + lines[1])
    with pytest.raises(ValueError, match="text column"):
        pack_text_dataset(load_text_dataset(CORPUS), tokenizer, canvas_length=8, text_column="body")


def test_puzzle_rows_with_a_word_level_tokenizer():
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{str(d): 3 + d for d in range(10)}, "solve": 13, "row": 14}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    rows = Dataset.from_dict({"prompt": ["solve row", ""], "canvas": ["1 2 3", "3 1 2"], "frozen": ["1 0 0", "0 0 0"]})
    out = tokenize_prompt_canvas_rows(rows, tok, canvas_length=3)
    assert out[0] == {"input_ids": [13, 14], "canvas_ids": [4, 5, 6], "frozen": [1, 0, 0]}
    assert out[1]["input_ids"] == [] and out[1]["canvas_ids"] == [6, 4, 5]
    batch = GlauberDataCollator()(list(out))
    assert batch["attention_mask"].tolist() == [[1, 1], [0, 0]] and batch["frozen"][0].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="expected L = 4"):
        tokenize_prompt_canvas_rows(rows, tok, canvas_length=4)


def test_ul2_collator_builds_r_s_x_examples(tokenizer):
    model = tiny_t5()
    sentinels = model.config.sentinel_token_ids
    ids = list(range(10, 74))
    for kind, density in (("R", 0.15), ("X", 0.5)):
        collator = UL2DataCollator.from_model(model, mixture=[UL2Denoiser(kind, 1.0, density, 3.0)], seed=1)
        batch = collator([{"input_ids": ids}])
        inputs = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
        labels = [t for t in batch["labels"][0].tolist() if t != -100]
        # reassembling the spans gives back the sequence
        spans, current = {}, None
        for t in labels[:-1]:
            if t in sentinels:
                current = t
                spans[current] = []
            else:
                spans[current].append(t)
        rebuilt = [u for t in inputs[:-1] for u in (spans[t] if t in sentinels else [t])]
        assert rebuilt == ids and inputs[-1] == labels[-1] == 1
        assert abs(sum(len(v) for v in spans.values()) - density * len(ids)) <= 1
    s = UL2DataCollator.from_model(model, mixture=[UL2Denoiser("S", 1.0)], mode_token_ids={"S": 5})([{"input_ids": ids}])
    inputs = s["input_ids"][0][s["attention_mask"][0].bool()].tolist()
    labels = [t for t in s["labels"][0].tolist() if t != -100]
    assert inputs[0] == 5 and inputs[1:-1] + labels[:-1] == ids


def test_ul2_corruption_differs_between_dataloader_workers_and_epochs():
    model = tiny_t5()
    collator = UL2DataCollator.from_model(model, mixture=[UL2Denoiser("R", 1.0, 0.15, 3.0)], seed=0)
    rows = [{"input_ids": list(range(10, 74))}] * 4
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(rows, batch_size=1, num_workers=2, collate_fn=collator)
    epochs = [[batch["input_ids"].tolist() for batch in loader] for _ in range(2)]
    assert epochs[0][0] != epochs[0][1]  # the first batch of worker 0 and of worker 1: the same row
    assert epochs[0] != epochs[1]
    torch.manual_seed(0)
    assert [batch["input_ids"].tolist() for batch in loader] == epochs[0]  # and reproducible from torch's seed


def test_ul2_spans_keep_their_mean_length_on_long_sequences(tokenizer):
    """One sentinel per span: the converted model records all of the tokenizer's (ByT5: 125), not just eight."""
    model = tiny_t5()
    assert model.config.sentinel_token_ids == tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(125)])
    collator = UL2DataCollator.from_model(model, mixture=[UL2Denoiser("R", 1.0, 0.15, 3.0)], seed=0)
    batch = collator([{"input_ids": [10 + i % 240 for i in range(600)]}])  # plain bytes, no sentinel among them
    sentinels = set(model.config.sentinel_token_ids)
    spans = sum(int(t) in sentinels for t in batch["input_ids"][0])
    assert spans == round(0.15 * 600 / 3.0)
    few = UL2DataCollator(model.config.sentinel_token_ids[:8], mixture=[UL2Denoiser("R", 1.0, 0.15, 3.0)])
    with pytest.warns(UserWarning, match="needs 30 spans but the tokenizer has only 8 sentinels"):
        few([{"input_ids": [10 + i % 240 for i in range(600)]}])


def test_ul2_stage_trains_with_seq2seq_trainer(tmp_path, tokenizer):
    model = tiny_t5()
    packed = pack_text_dataset(load_text_dataset(CORPUS), tokenizer, canvas_length=48)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                    use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                                    remove_unused_columns=False, disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=packed, data_collator=UL2DataCollator.from_model(model))
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and all(0 < x < 20 for x in losses)
