"""MAUVE with a tiny local featuriser, reporting (Markdown + PNG), the `glauber eval` CLI and the lm-eval script."""

from __future__ import annotations

import argparse
import json
import random

import pytest
import torch
from transformers import GPT2Config, GPT2Model

from eval import cli
from eval.mauve_eval import featurize, join_prefix, mauve_score, split_prefix
from eval.report import load_result, report, write_result


@pytest.fixture(scope="module")
def featurizer():
    torch.manual_seed(0)
    return GPT2Model(GPT2Config(vocab_size=384, n_positions=128, n_embd=64, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1)).eval()


def _texts(alphabet: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(24)) for _ in range(n)]


def test_mauve_separates_distributions(featurizer, tokenizer):
    human = _texts("abcdefgh ", 80, 0)
    same = _texts("abcdefgh ", 80, 1)
    other = _texts("XYZ0123", 80, 2)
    scores = [
        mauve_score(texts, human, featurizer, tokenizer, num_buckets=8, progress=False)["mauve"]
        for texts in (same, same[:40] + other[:40], other)
    ]
    # same law > half mixed > disjoint alphabet
    assert scores[0] > 0.8 and scores[2] < 0.1 and scores[0] > scores[1] > scores[2], scores
    features = featurize(["ab", "abcd"], featurizer, tokenizer, progress=False)
    assert features.shape == (2, 64)
    # the feature of a text is its last real token's state: padding a batch does not change it
    assert featurize(["ab"], featurizer, tokenizer, progress=False)[0] == pytest.approx(features[0], abs=1e-5)
    prompts, rest = split_prefix(tokenizer, ["hello world"], 5)
    assert (prompts, rest) == (["hello"], [" world"])
    # the human continuation is cut to the model's continuation length
    assert split_prefix(tokenizer, ["hello world"], 5, 3) == (["hello"], [" wo"])


def test_prefix_and_continuation_keep_their_word_boundary_with_sentencepiece():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = "the river ran quietly past the old mill"
    vocab = {"<unk>": 0, **{"▁" + w: i + 1 for i, w in enumerate(sorted(set(text.split())))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    metaspace = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    prompts, rest = split_prefix(metaspace, [text], 4)
    assert prompts[0] + rest[0] == "the river ran quietlypast the old mill"  # what joining strings would give
    assert join_prefix(metaspace, prompts[0], rest[0]) == text


def test_report_renders_ours_and_lm_eval_files(tmp_path):
    write_result(tmp_path / "a.json", "gen_ppl", {"label": "draft"}, {"N=0": {"corpus_ppl": 12.5}, "samples": [1, 2]})
    (tmp_path / "lm.json").write_text(json.dumps({
        "results": {"piqa": {"alias": "piqa", "acc,none": 0.5, "acc_stderr,none": 0.1}}, "model_name": "glauber",
    }))
    assert load_result(tmp_path / "a.json") == ("draft", {"N=0/corpus_ppl": 12.5})
    markdown, md_path, png_path = report([str(tmp_path / "a.json"), str(tmp_path / "lm.json")], tmp_path / "out")
    assert markdown.splitlines()[0] == "| result | N=0/corpus_ppl | piqa/acc |"
    assert "| draft | 12.5 |  |" in markdown and "| glauber |  | 0.5 |" in markdown
    assert md_path.read_text().startswith("| result |")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="neither"):
        load_result(tmp_path / "bad.json")


def test_cli_registers_eval_subcommands(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="glauber")
    cli.register(parser.add_subparsers(dest="command", required=True))
    write_result(tmp_path / "r.json", "bound", {}, {"bound_ppl": 3.0})
    args = parser.parse_args(["eval", "report", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep")])
    assert args.func(args) == 0
    assert "bound_ppl" in capsys.readouterr().out and (tmp_path / "rep" / "report.png").exists()
    for command in ("gen-ppl", "bound", "mauve", "best-of-n"):
        with pytest.raises(SystemExit):  # required arguments are enforced
            parser.parse_args(["eval", command])


def test_glauber_lm_eval_script_hands_over_to_lm_eval(monkeypatch):
    import lm_eval.__main__
    from lm_eval.api.registry import get_model

    from eval import lm_eval_adapter

    seen = []
    monkeypatch.setattr(lm_eval.__main__, "cli_evaluate", lambda: seen.append(get_model("glauber")))
    lm_eval_adapter.cli_evaluate()
    assert seen == [lm_eval_adapter.GlauberLM]
    assert get_model("glauber_ar") is lm_eval_adapter.GlauberARLM


def test_eval_bound_scores_a_corpus_whose_texts_are_shorter_than_the_mask_window(make_model, tokenizer, tmp_path):
    import math

    from eval.bound import causal_nll, glauber_bound

    model = make_model(num_rounds=1, mask_window=3, content_ids=[byte + 3 for byte in range(32, 127)])
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    rows = [{"prompt": "Q:", "text": "A"}, {"text": "hello"}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    parser = argparse.ArgumentParser(prog="glauber")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "bound", "--pretrained", str(tmp_path / "ckpt"), "--data",
                              str(tmp_path / "data.jsonl"), "--mc_samples", "2", "--out", str(tmp_path / "b.json")])
    assert args.func(args) == 0
    metrics = json.loads((tmp_path / "b.json").read_text())["metrics"]
    bound = causal = 0.0
    for row in rows:
        prefix = model.build_prefix(torch.tensor([tokenizer(row.get("prompt", "")).input_ids]))
        canvas = torch.tensor([tokenizer(row["text"], add_special_tokens=False).input_ids])
        bound += float(glauber_bound(model, prefix, canvas, mc_samples=2, seed=0).mean)
        causal += float(causal_nll(model, prefix, canvas))
    assert metrics["tokens"] == 6
    assert metrics["bound_nll_per_token"] == pytest.approx(bound / 6, rel=1e-5)
    assert metrics["bound_ppl"] == pytest.approx(math.exp(bound / 6), rel=1e-5)
    assert metrics["causal_nll_per_token"] == pytest.approx(causal / 6, rel=1e-5)
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    args.data = str(tmp_path / "empty.jsonl")
    with pytest.raises(SystemExit, match="row 1 has an empty 'text'"):
        args.func(args)
