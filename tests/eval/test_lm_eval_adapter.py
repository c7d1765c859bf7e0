"""The lm-eval adapter on a tiny model: the three request types, the built-in task schemas on local fixtures, the
causal (AR) baseline, LoRA adapters and model_args validation."""

from __future__ import annotations

from pathlib import Path

import lm_eval
import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from eval.bound import causal_nll, glauber_bound
from eval.lm_eval_adapter import GlauberARLM, GlauberLM, truncate_at

FIXTURES = Path(__file__).parent / "fixtures"
BUILTIN = Path(lm_eval.__file__).parent / "tasks"
TASKS = Path(__file__).parents[2] / "eval" / "tasks"
MC_TASKS = {
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "piqa": "piqa/piqa.yaml",
    "social_iqa": "siqa/siqa.yaml",
}


def _local_task(builtin_yaml: Path, name: str, data: Path) -> str:
    # the built-in definition (its processing and metrics) with the dataset swapped for a local JSONL
    return (
        f"include: {builtin_yaml}\ntask: {name}\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {data}\ntraining_split: null\nvalidation_split: validation\n"
        "test_split: null\n"
    )


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    for name, yaml in MC_TASKS.items():
        (root / f"fixture_{name}.yaml").write_text(_local_task(BUILTIN / yaml, f"fixture_{name}", FIXTURES / f"{name}.jsonl"))
    # eval/tasks/glauber_wikitext103.yaml mirrors the built-in wikitext task (table 2's WT-103)
    (root / "fixture_wikitext.yaml").write_text(
        _local_task(TASKS / "glauber_wikitext103.yaml", "fixture_wikitext", FIXTURES / "wikitext.jsonl")
    )
    (root / "fixture_arithmetic.yaml").write_text(
        "task: fixture_arithmetic\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {FIXTURES / 'arithmetic.jsonl'}\ntest_split: test\noutput_type: generate_until\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: "{{answer}}"\n'
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 3\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model, tokenizer) -> Path:
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_zero_shot_perplexity_tasks_are_indexed():
    names = TaskManager(include_path=str(TASKS), include_defaults=False).all_tasks
    assert {"glauber_wikitext103", "glauber_lm1b", "glauber_zeroshot_ppl"} <= set(names)


def test_lm1b_task_runs_on_a_local_export_and_reports_per_word_and_per_byte(checkpoint, tmp_path, monkeypatch):
    import math

    sentences = ["The cat sat on the mat .", "Markets rose on Tuesday ."]
    (tmp_path / "lm1b").mkdir()
    (tmp_path / "lm1b" / "test.jsonl").write_text("".join(f'{{"text": "{s}"}}\n' for s in sentences))
    monkeypatch.chdir(tmp_path)  # the task reads lm1b/test.jsonl from the working directory
    out = lm_eval.simple_evaluate(
        model="glauber_ar", model_args=f"pretrained={checkpoint},progress=False", tasks=["glauber_lm1b"],
        task_manager=TaskManager(include_path=str(TASKS), include_defaults=False), log_samples=True,
    )
    loglik = sum(sample["filtered_resps"][0] for sample in out["samples"]["glauber_lm1b"])
    metrics = out["results"]["glauber_lm1b"]
    words, num_bytes = sum(len(s.split()) for s in sentences), sum(len(s.encode()) for s in sentences)
    assert metrics["word_perplexity,none"] == pytest.approx(math.exp(-loglik / words), rel=1e-6)
    assert metrics["byte_perplexity,none"] == pytest.approx(math.exp(-loglik / num_bytes), rel=1e-6)


def _request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_simple_evaluate_runs_builtin_schemas_with_the_bound(task_dir, checkpoint, tokenizer, model):
    tasks = [f"fixture_{name}" for name in MC_TASKS] + ["fixture_wikitext", "fixture_arithmetic"]
    out = lm_eval.simple_evaluate(
        model="glauber",
        model_args=f"pretrained={checkpoint},scorer=elbo,mc_samples=2,num_rounds=1,progress=False",
        tasks=tasks,
        batch_size=32,
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        limit=1,
        log_samples=True,
    )
    results = out["results"]
    for name in MC_TASKS:
        assert 0.0 <= results[f"fixture_{name}"]["acc,none"] <= 1.0
    assert results["fixture_wikitext"]["word_perplexity,none"] > 1.0
    assert "exact_match,none" in results["fixture_arithmetic"]
    # hellaswag's process_docs ran (query built from activity_label and contexts), 4 endings scored
    sample = out["samples"]["fixture_hellaswag"][0]
    context, continuation = sample["arguments"][0]
    assert context.startswith("Baking: A man pours flour into a bowl. He")
    assert len(sample["resps"]) == 4
    # each response is −(the bound) of DESIGN §7 with the context as prompt and the continuation as canvas
    loaded = type(model).from_pretrained(checkpoint).eval()
    prefix = loaded.build_prefix(torch.tensor([tokenizer(context).input_ids]))
    canvas = torch.tensor([tokenizer(continuation, add_special_tokens=False).input_ids])
    expected = -glauber_bound(loaded, prefix, canvas, mc_samples=2, num_rounds=1, seed=0).mean
    assert sample["resps"][0][0][0] == pytest.approx(float(expected), rel=1e-5)
    # winogrande: partial scoring, the two options are the contexts and the suffix is the shared continuation
    wino = out["samples"]["fixture_winogrande"][0]["arguments"]
    assert wino[0][0] == "The cup fell off the table because the cup" and wino[0][1] == wino[1][1] == " was slippery."


def test_causal_scorer_values_and_honest_greedy(model, tokenizer):
    lm = GlauberARLM(pretrained=model, tokenizer=tokenizer, progress=False)
    assert (lm.scorer, lm.num_rounds) == ("causal", 0)
    input_ids = torch.tensor([tokenizer("Once upon").input_ids])
    greedy = model.generate(input_ids, max_new_tokens=6, num_rounds=0, do_sample=False)
    greedy_text = tokenizer.decode(greedy[0], skip_special_tokens=True)
    other = greedy_text[:-1] + ("x" if greedy_text[-1] != "x" else "y")
    (ll_greedy, is_greedy), (ll_other, not_greedy) = lm.loglikelihood(
        [_request("loglikelihood", "Once upon", greedy_text), _request("loglikelihood", "Once upon", other)]
    )
    assert is_greedy and not not_greedy
    prefix = model.build_prefix(input_ids)
    expected = -causal_nll(model, prefix, torch.tensor([tokenizer(other, add_special_tokens=False).input_ids]))
    assert ll_other == pytest.approx(float(expected), rel=1e-6)
    assert ll_greedy > ll_other
    # rolling with one window: the whole document is the canvas of an empty prompt
    text = "The toy is red."
    (rolled,) = lm.loglikelihood_rolling([_request("loglikelihood_rolling", text)])
    ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids])
    assert rolled == pytest.approx(-float(causal_nll(model, model.build_prefix(None, batch_size=1), ids)), rel=1e-6)
    # several windows: each later window is conditioned on the tokens before it, the total is their sum
    windowed = GlauberARLM(pretrained=model, tokenizer=tokenizer, max_length=4, progress=False)
    (rolled_windows,) = windowed.loglikelihood_rolling([_request("loglikelihood_rolling", text)])
    assert rolled_windows != pytest.approx(rolled, rel=1e-6)
    assert rolled_windows < 0


def test_elbo_is_greedy_is_the_greedy_glauber_generation(model, tokenizer):
    lm = GlauberLM(pretrained=model, tokenizer=tokenizer, mc_samples=2, progress=False)
    input_ids = torch.tensor([tokenizer("Hi").input_ids])
    greedy = model.generate(input_ids, max_new_tokens=5, do_sample=False, seed=0)
    text = tokenizer.decode(greedy[0], skip_special_tokens=True)
    draft = model.generate(input_ids, max_new_tokens=5, num_rounds=0, do_sample=False)
    assert not torch.equal(draft, greedy)  # the refinement changes the draft, so the check below is informative
    draft_text = tokenizer.decode(draft[0], skip_special_tokens=True)
    results = lm.loglikelihood([_request("loglikelihood", "Hi", text), _request("loglikelihood", "Hi", draft_text)])
    assert results[0][1] is True and results[1][1] is False
    assert all(value < 0 for value, _ in results)


def test_generate_until_matches_generate_and_ignores_batching(model, tokenizer):
    requests = [
        _request("generate_until", "abc", {"until": ["q"], "max_gen_toks": 6, "do_sample": True}),
        _request("generate_until", "hello there", {"until": [], "max_gen_toks": 4, "do_sample": False}),
        _request("generate_until", "x", {"until": "zz", "max_gen_toks": 6, "do_sample": True}),
    ]
    lm = GlauberLM(pretrained=model, tokenizer=tokenizer, batch_size=8, seed=3, progress=False)
    big = lm.generate_until(requests)
    small = GlauberLM(pretrained=model, tokenizer=tokenizer, batch_size=1, seed=3, progress=False).generate_until(requests)
    assert big == small
    # a request's sample depends on the request, not on its place among the others (other tasks, --limit)
    assert lm.generate_until(requests[::-1]) == big[::-1] and lm.generate_until(requests[2:]) == big[2:]
    # lm-eval's repeats are identical requests, and each draws its own sample
    repeats = lm.generate_until([requests[0]] * 3)
    assert repeats[0] == big[0] and len(set(repeats)) == 3
    greedy = model.generate(torch.tensor([tokenizer("hello there").input_ids]), max_new_tokens=4, do_sample=False)
    assert big[1] == tokenizer.decode(greedy[0], skip_special_tokens=True)
    # temperature 0 without do_sample is greedy, as lm-eval's own models read it
    zero = _request("generate_until", "hello there", {"until": [], "max_gen_toks": 4, "temperature": 0})
    assert lm.generate_until([zero]) == [big[1]]
    assert truncate_at("12\n34", ["\n", "3"]) == "12"


def test_continuations_shorter_than_the_mask_window_are_scored_and_generated(make_model, tokenizer):
    wide = make_model(num_rounds=1, mask_window=3, content_ids=[byte + 3 for byte in range(32, 127)])
    lm = GlauberLM(pretrained=wide, tokenizer=tokenizer, mc_samples=2, max_length=8, progress=False)
    ((logp, _),) = lm.loglikelihood([_request("loglikelihood", "Q:", "A")])
    prefix = wide.build_prefix(torch.tensor([tokenizer("Q:").input_ids]))
    expected = -glauber_bound(wide, prefix, torch.tensor([[ord("A") + 3]]), mc_samples=2, mask_window=1, seed=0).mean
    assert logp == pytest.approx(float(expected), rel=1e-6)
    # 9 bytes in windows of 8: the last window holds one token
    (rolled,) = lm.loglikelihood_rolling([_request("loglikelihood_rolling", "123456789")])
    assert rolled < 0
    (text,) = lm.generate_until([_request("generate_until", "Q:", {"until": [], "max_gen_toks": 2})])
    assert len(text) == 2


def test_lora_adapter_is_evaluated_unmerged(model, tokenizer, checkpoint, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = type(model).from_pretrained(checkpoint)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q", "v"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    request = [_request("loglikelihood", "Once upon", " a time")]
    with_adapter = GlauberLM(pretrained=str(checkpoint), peft=str(tmp_path / "adapter"), scorer="causal", progress=False)
    plain = GlauberLM(pretrained=str(checkpoint), scorer="causal", progress=False)
    reference = GlauberLM(pretrained=merged, tokenizer=tokenizer, scorer="causal", progress=False)
    value = with_adapter.loglikelihood(request)[0][0]
    assert value == pytest.approx(reference.loglikelihood(request)[0][0], rel=1e-5)
    assert abs(value - plain.loglikelihood(request)[0][0]) > 1e-3


@pytest.mark.parametrize(
    "args, message",
    [
        ("scorer=bogus", "scorer must be one of"),
        ("mc_samples=0", "mc_samples must be an integer >= 1"),
        ("num_rounds=5", r"num_rounds must be an integer in \[0, 2\]"),
        ("temprature=0.5", r"unknown argument\(s\) \['temprature'\]; allowed: pretrained, tokenizer, peft"),
        ("dtype=float8", "dtype must be one of"),
    ],
)
def test_bad_model_args_give_clear_errors(checkpoint, args, message):
    with pytest.raises(ValueError, match=message):
        GlauberLM.create_from_arg_string(f"pretrained={checkpoint},{args}")


def test_not_a_glauber_checkpoint_is_rejected(tmp_path, tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(vocab_size=384, d_model=16, num_layers=1, num_heads=1, d_kv=8, d_ff=16)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a Glauber checkpoint"):
        GlauberLM.create_from_arg_string(f"pretrained={tmp_path}")


@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("asked", [None, "cuda:0"])
def test_device_defaults_to_cuda_when_lm_eval_passes_none(checkpoint, monkeypatch, cuda, asked):
    """`simple_evaluate` hands `device=None` and the lm-eval command line "cuda:0" when --device is not given: the
    adapter picks the GPU if there is one, else the CPU."""
    import eval.lm_eval_adapter as adapter

    seen = {}

    def fake_load(pretrained, **kwargs):
        seen["device"] = kwargs["device"]
        raise RuntimeError("stop after choosing the device")

    monkeypatch.setattr(adapter.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(adapter, "load_glauber", fake_load)
    with pytest.raises(RuntimeError, match="stop after choosing the device"):
        GlauberLM.create_from_arg_string(f"pretrained={checkpoint}", {"batch_size": 4, "max_batch_size": None, "device": asked})
    assert seen["device"] == ("cpu" if not cuda else asked or "cuda")
