"""save_pretrained → AutoModel.from_pretrained(trust_remote_code=True) in a process that cannot import the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_models import make_glauber
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


@pytest.mark.parametrize("kind", ["t5", "t5gemma"])
def test_checkpoint_loads_identically_in_a_clean_process(kind, tokenizer, tmp_path):
    model = make_glauber(kind, tokenizer, num_rounds=2, mask_window=2)
    model.generation_config.max_new_tokens = 6
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    files = set(os.listdir(ckpt))
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "configuration_glauber.py",
            "modeling_glauber.py"} <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    auto_map = json.loads((ckpt / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}

    enc = tokenizer(["some prompt", "b"], return_tensors="pt", padding=True)
    data = {"ids": enc.input_ids, "mask": enc.attention_mask, "dec": torch.tensor([[0, 70], [0, 80]]),
            "tau": torch.tensor([0.25, 0.75])}
    torch.save(data, tmp_path / "inputs.pt")
    with torch.no_grad():
        logits = model(input_ids=data["ids"], attention_mask=data["mask"], decoder_input_ids=data["dec"],
                       timesteps=data["tau"]).logits
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


def test_checkpoint_code_imports_only_its_siblings():
    package = os.path.dirname(modeling_glauber.__file__)
    for name in os.listdir(package):
        if name.endswith(".py"):
            source = open(os.path.join(package, name), encoding="utf-8").read()
            for line in source.splitlines():
                stripped = line.strip()
                assert not stripped.startswith(("from trainers", "from eval", "import trainers", "import eval",
                                                "from modeling_glauber", "from . import")), (name, line)
