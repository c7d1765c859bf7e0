"""save_pretrained → AutoModel.from_pretrained(trust_remote_code=True) in a process that cannot import the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_models import make_glauber, tokenizer_without_sentinels
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

import modeling_glauber
from modeling_glauber import GlauberT5Config, GlauberT5ForDiffusion

LOADER = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoModel, AutoModelForSeq2SeqLM
    try:
        import modeling_glauber
        raise SystemExit("the project is importable here: the test would prove nothing")
    except ImportError:
        pass
    ckpt, inputs, out = sys.argv[1:4]
    data = torch.load(inputs, weights_only=True)
    from transformers import AutoTokenizer
    # the tokenizer the model was converted with (sentinels included) is saved with it
    tok = AutoTokenizer.from_pretrained(ckpt, trust_remote_code=True)
    assert tok(data["prompts"], return_tensors="pt", padding=True).input_ids.tolist() == data["ids"].tolist()
    model = AutoModel.from_pretrained(ckpt, trust_remote_code=True).eval()
    assert type(model).__name__ == "GlauberT5ForDiffusion", type(model)
    # a second load in the same process gets the same class (transformers adds GenerationMixin to remote code once)
    second = AutoModelForSeq2SeqLM.from_pretrained(ckpt, trust_remote_code=True).eval()
    assert type(second).__name__ == "GlauberT5ForDiffusion" and model.can_generate() and second.can_generate()
    with torch.no_grad():
        logits = model(input_ids=data["ids"], attention_mask=data["mask"], decoder_input_ids=data["dec"],
                       timesteps=data["tau"]).logits
    # the canvas length comes from the saved generation_config.json
    sequences = second.generate(input_ids=data["ids"], attention_mask=data["mask"], num_rounds=2, top_p=0.9, seed=7)
    torch.save({"logits": logits, "sequences": sequences}, out)
    """
)


@pytest.mark.parametrize("kind", ["t5", "t5gemma", "t5gemma_with_added_sentinels"])
def test_checkpoint_loads_identically_in_a_clean_process(kind, tokenizer, tmp_path):
    if kind == "t5gemma_with_added_sentinels":
        # T5-Gemma's tokenizer has no <extra_id_*>: from_backbone adds 8 and resizes both embedding tables
        tokenizer = tokenizer_without_sentinels()
        model = make_glauber("t5gemma", tokenizer, vocab_size=len(tokenizer), num_rounds=2, mask_window=2)
        assert model.get_encoder().embed_tokens.num_embeddings == len(tokenizer) == 52
        prompts, decoder_ids = ["w1 w2 w3", "w4"], [[2, 10], [2, 20]]
    else:
        model = make_glauber(kind, tokenizer, num_rounds=2, mask_window=2)
        prompts, decoder_ids = ["some prompt", "b"], [[0, 70], [0, 80]]
    model.generation_config.max_new_tokens = 6
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    files = set(os.listdir(ckpt))
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "configuration_glauber.py",
            "modeling_glauber.py", "tokenizer_config.json"} <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    auto_map = json.loads((ckpt / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}
    with torch.no_grad():
        reloaded = GlauberT5ForDiffusion.from_pretrained(ckpt).eval()

    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    data = {"ids": enc.input_ids, "mask": enc.attention_mask, "dec": torch.tensor(decoder_ids),
            "tau": torch.tensor([0.25, 0.75]), "prompts": prompts}
    torch.save(data, tmp_path / "inputs.pt")
    with torch.no_grad():
        logits = model(input_ids=data["ids"], attention_mask=data["mask"], decoder_input_ids=data["dec"],
                       timesteps=data["tau"]).logits
        assert torch.equal(reloaded(input_ids=data["ids"], attention_mask=data["mask"], decoder_input_ids=data["dec"],
                                    timesteps=data["tau"]).logits, logits)
    sequences = model.generate(input_ids=data["ids"], attention_mask=data["mask"], max_new_tokens=6, num_rounds=2,
                               top_p=0.9, seed=7)

    (tmp_path / "load.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    # -I -S: isolated, no site processing, so neither the project directory nor its editable install is on sys.path
    site = [p for p in sys.path if p.endswith("site-packages")]
    script = f"import sys; sys.path[:0] = {site!r}; exec(open({str(tmp_path / 'load.py')!r}).read())"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(ckpt), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(loaded["logits"], logits)
    assert torch.equal(loaded["sequences"], sequences)


def test_auto_classes_resolve_when_the_package_is_imported(tokenizer, tmp_path):
    model = make_glauber("t5", tokenizer)
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GlauberT5Config)
    for auto in (AutoModel, AutoModelForSeq2SeqLM):
        loaded = auto.from_pretrained(tmp_path)
        assert isinstance(loaded, GlauberT5ForDiffusion)
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_a_bf16_backbone_converts_to_a_bf16_model_that_reloads_identically(tokenizer, tmp_path):
    from tiny_models import tiny_t5gemma

    model = GlauberT5ForDiffusion.from_backbone(tiny_t5gemma().to(torch.bfloat16), tokenizer,
                                                canvas_position_embeddings=4)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        model.time_conditioning.modulation.weight.normal_(generator=torch.Generator().manual_seed(0))
    model.save_pretrained(tmp_path)
    loaded = GlauberT5ForDiffusion.from_pretrained(tmp_path)
    ids, dec = torch.tensor([[70, 71, 72, 1]]), torch.tensor([[2, 80, 81]])
    with torch.no_grad():
        logits = [m(input_ids=ids, decoder_input_ids=dec, timesteps=torch.tensor([0.3])).logits for m in (model, loaded)]
    assert torch.equal(*logits)


def test_model_card_describes_the_checkpoint(tokenizer, tmp_path):
    make_glauber("t5", tokenizer, num_rounds=3).save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "trust_remote_code=True" in card and "num_rounds N = 3" in card and "(N+1)·L" in card


def test_model_card_is_a_hub_card_with_usage_cost_and_citation(tokenizer, tmp_path):
    make_glauber("t5", tokenizer, num_rounds=2).save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    _, metadata, body = card.split("---\n", 2)
    assert card.startswith("---\n") and "library_name: transformers" in metadata
    assert "pipeline_tag: text-generation" in metadata and "- custom_code" in metadata
    # loading: model and tokenizer both with trust_remote_code, then a generate call with this checkpoint's N
    assert 'AutoModel.from_pretrained("<this folder or repo>", trust_remote_code=True)' in body
    assert 'AutoTokenizer.from_pretrained("<this folder or repo>", trust_remote_code=True)' in body
    assert "model.generate(**enc, max_new_tokens=64, num_rounds=2," in body
    # cost model: L draft calls + N·L refinement calls
    assert "## Cost" in body and "L model calls for the draft" in body and "N·L" in body and "(N+1)·L" in body
    # the paper's citation as a BibTeX entry
    citation = body.split("## Citation", 1)[1]
    assert "@misc{" in citation and "Kathuria, Tarun and Kumar, Sachin" in citation
    assert "Leveraging Pretrained Language Models as Energy Functions for Glauber Dynamics Text Diffusion" in citation


def test_model_card_generation_snippet_runs_against_the_saved_checkpoint(tokenizer, tmp_path):
    """The card's Python block is real code: with the folder name filled in it loads and generates."""
    make_glauber("t5", tokenizer, num_rounds=1).save_pretrained(tmp_path, tokenizer=tokenizer)
    card = (tmp_path / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace("<this folder or repo>", str(tmp_path))
    snippet = snippet.replace("max_new_tokens=64", "max_new_tokens=4")
    printed = []
    exec(compile(snippet, "model-card", "exec"), {"print": printed.append})
    assert printed[-1] == 2 * 4  # (N+1)·L model calls for N = 1, L = 4
    assert len(printed[0]) == len(printed[1]) == 1


def test_checkpoint_code_imports_only_its_siblings():
    package = os.path.dirname(modeling_glauber.__file__)
    for name in os.listdir(package):
        if name.endswith(".py"):
            source = open(os.path.join(package, name), encoding="utf-8").read()
            for line in source.splitlines():
                stripped = line.strip()
                assert not stripped.startswith(("from trainers", "from eval", "import trainers", "import eval",
                                                "from modeling_glauber", "from . import")), (name, line)


@pytest.fixture
def fake_hub(monkeypatch):
    """The Hub's upload API faked at the commit level: records each commit's files and their bytes."""
    from huggingface_hub import CommitInfo, HfApi
    from huggingface_hub.hf_api import RepoUrl

    commits = []

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            with open(op.path_or_fileobj, "rb") as handle:
                files[op.path_in_repo] = handle.read()
        commits.append({"repo_id": repo_id, "files": files, **kwargs})
        url = f"https://huggingface.co/{repo_id}/commit/{len(commits):040d}"
        return CommitInfo(commit_url=url, commit_message=kwargs.get("commit_message") or "",
                          commit_description="", oid=f"{len(commits):040d}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return commits


def test_push_to_hub_publishes_weights_code_tokenizer_and_the_project_card(fake_hub):
    from tiny_models import tiny_t5gemma

    tokenizer = tokenizer_without_sentinels()
    backbone = tiny_t5gemma(vocab_size=len(tokenizer))
    backbone.name_or_path = "google/t5gemma-s-s-prefixlm"
    model = GlauberT5ForDiffusion.from_backbone(backbone, tokenizer, num_rounds=3)
    model.push_to_hub("me/glauber-t5gemma", tags=["my-tag"])

    (commit,) = fake_hub
    assert commit["repo_id"] == "me/glauber-t5gemma"
    files = commit["files"]
    assert {"model.safetensors", "config.json", "generation_config.json", "configuration_glauber.py",
            "modeling_glauber.py", "infill.py", "sampling.py", "schedule.py", "time_conditioning.py",
            "tokenizer.json", "tokenizer_config.json", "README.md"} <= set(files)
    # the tokenizer is the converted one, with the sentinels from_backbone added
    assert "<extra_id_7>" in files["tokenizer.json"].decode()
    card = files["README.md"].decode()
    metadata = card.split("---")[1]
    assert "base_model: google/t5gemma-s-s-prefixlm" in metadata and "library_name: transformers" in metadata
    assert "pipeline_tag: text-generation" in metadata
    assert "- glauber-diffusion" in metadata and "- my-tag" in metadata
    assert "automatically generated" not in card  # transformers' generic card
    assert 'AutoModel.from_pretrained("me/glauber-t5gemma", trust_remote_code=True)' in card
    assert 'AutoTokenizer.from_pretrained("me/glauber-t5gemma", trust_remote_code=True)' in card
    assert "num_rounds N = 3" in card
    assert json.loads(files["config.json"])["backbone_name_or_path"] == "google/t5gemma-s-s-prefixlm"


def test_save_pretrained_with_push_to_hub_uploads_the_project_card_and_an_explicit_tokenizer(fake_hub, tokenizer,
                                                                                               tmp_path):
    model = make_glauber("t5", tokenizer)
    model.tokenizer = None  # as after from_pretrained: the tokenizer must be given
    model.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id="me/glauber-t5", tokenizer=tokenizer,
                          commit_message="first")
    (commit,) = fake_hub
    assert commit["repo_id"] == "me/glauber-t5" and commit["commit_message"] == "first"
    assert {"model.safetensors", "modeling_glauber.py", "tokenizer_config.json", "README.md"} <= set(commit["files"])
    card = commit["files"]["README.md"].decode()
    assert "glauber-diffusion" in card and "automatically generated" not in card
    assert "base_model" not in card  # built from a config: no Hub id to name


def test_plain_autotokenizer_load_does_not_ask_about_remote_code_where_the_package_is_imported(tokenizer, tmp_path,
                                                                                                 monkeypatch):
    from transformers import AutoTokenizer
    from transformers.models.auto import configuration_auto

    calls = []

    def asks(trust_remote_code, model_name, has_local_code, has_remote_code, *args, **kwargs):
        calls.append(has_remote_code)
        if trust_remote_code is None and not has_local_code:
            raise AssertionError(f"would prompt about the remote code of {model_name}")
        return bool(trust_remote_code)

    make_glauber("t5", tokenizer).save_pretrained(tmp_path)
    monkeypatch.setattr(configuration_auto, "resolve_trust_remote_code", asks)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert calls == [True]  # config.json's custom code was considered, and answered without asking
    assert loaded("abc").input_ids == tokenizer("abc").input_ids
