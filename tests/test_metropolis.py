"""Metropolis refinement (`metropolis_refine`): exact on an enumerable toy, batch-invariant, counted, bad input refused.

The exactness tests print each TV beside its Monte-Carlo floor (the TV of an exact sampler with the same sample
count); run them with `-s` to see the table.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from tiny_models import make_glauber
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from modeling_glauber import CausalLMEnergy, GlauberT5ForDiffusion

CONTENT = (3, 4)  # a two-token canvas vocabulary (ids of a 16-id toy vocabulary: pad 0, eos 1, sentinels 8-15)
LENGTH = 3
SUFFIX = 4  # the value of the frozen last position in the suffix-conditioned rows
CHAINS = 4096  # independent chains per law (one sample each)
ROUNDS = 16
STATES = torch.tensor(list(itertools.product(CONTENT, repeat=LENGTH)))
BOS = 2


def state_index(canvas: torch.Tensor) -> torch.Tensor:
    return ((canvas - CONTENT[0]) * torch.tensor([4, 2, 1])).sum(dim=1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def empirical_law(samples: torch.Tensor) -> torch.Tensor:
    return torch.bincount(state_index(samples), minlength=len(STATES)).double() / samples.shape[0]


def monte_carlo_floor(law: torch.Tensor, count: int) -> float:
    """TV between `law` and the empirical law of `count` exact draws from it."""
    draws = torch.multinomial(law, count, replacement=True, generator=torch.Generator().manual_seed(123))
    return total_variation(torch.bincount(draws, minlength=len(law)).double() / count, law)


@pytest.fixture(scope="module")
def toy_proposal() -> GlauberT5ForDiffusion:
    """An untrained tiny Glauber model over the toy vocabulary: MH is exact whatever the proposal."""
    torch.manual_seed(1)
    backbone = T5ForConditionalGeneration(
        T5Config(vocab_size=16, d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32, decoder_start_token_id=0,
                 dropout_rate=0.0)
    )
    model = GlauberT5ForDiffusion.from_backbone(backbone, None, num_rounds=2, time_frequency_dim=16,
                                                time_embedding_dim=16).eval()
    model.restrict_canvas_vocabulary(CONTENT)
    return model


@pytest.fixture(scope="module")
def exact_energy():
    """A known law over the 8 canvases, given as a callable energy (a log-probability table)."""
    table = torch.randn(len(STATES), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.8
    table = table.log_softmax(dim=0)
    return lambda prompt_ids, canvas: table[state_index(canvas.cpu())]


@pytest.fixture(scope="module")
def trained_energy(exact_energy):
    """A tiny GPT-2 over the toy vocabulary trained on draws from the exact law (its own law is then enumerated)."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=16, n_positions=LENGTH + 1, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=BOS, eos_token_id=BOS))
    law = exact_energy(None, STATES).exp()
    data = STATES[torch.multinomial(law, 2048, replacement=True, generator=torch.Generator().manual_seed(0))]
    batch = torch.cat([torch.full((len(data), 1), BOS), data], dim=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return CausalLMEnergy(model.eval())


def energy_law(energy, beta: float) -> torch.Tensor:
    """p_E^β over STATES, normalised by enumeration."""
    return (beta * energy([[] for _ in STATES], STATES).double().cpu()).softmax(dim=0)


@pytest.mark.parametrize("start", ["draft", "uniform"])
@pytest.mark.parametrize("beta", [1.0, 2.0])
@pytest.mark.parametrize("energy_kind", ["exact law", "trained causal LM"])
def test_chain_samples_the_energy_law_and_its_suffix_conditional(
    toy_proposal, exact_energy, trained_energy, energy_kind, beta, start
):
    energy = exact_energy if energy_kind == "exact law" else trained_energy
    # rows [0, CHAINS) are free; rows [CHAINS, 2·CHAINS) have the last position frozen to SUFFIX
    canvas = torch.full((2 * CHAINS, LENGTH), SUFFIX)
    frozen = torch.zeros_like(canvas, dtype=torch.bool)
    frozen[CHAINS:, -1] = True
    out = toy_proposal.metropolis_refine(
        canvas_ids=canvas, frozen_mask=frozen, energy=energy, energy_beta=beta, start=start, num_rounds=ROUNDS,
        seed=0, return_dict_in_generate=True,
    )
    law = energy_law(energy, beta)
    suffix_law = torch.where(STATES[:, -1] == SUFFIX, law, torch.zeros_like(law))
    suffix_law = suffix_law / suffix_law.sum()
    free, conditioned = out.sequences[:CHAINS], out.sequences[CHAINS:]
    assert torch.equal(conditioned[:, -1], torch.full((CHAINS,), SUFFIX))
    tv_free = total_variation(empirical_law(free), law)
    tv_suffix = total_variation(empirical_law(conditioned), suffix_law)
    start_tv = total_variation(empirical_law(out.start_sequences[:CHAINS]), law)
    print(
        f"\n{energy_kind:18s} beta={beta} start={start:7s}: TV {tv_free:.4f} (floor "
        f"{monte_carlo_floor(law, CHAINS):.4f}, start {start_tv:.3f}); suffix-conditioned TV {tv_suffix:.4f} (floor "
        f"{monte_carlo_floor(suffix_law, CHAINS):.4f}); acceptance {out.acceptance_rate.nanmean():.3f}"
    )
    assert tv_free <= 0.03 and tv_suffix <= 0.03
    assert start_tv > 0.1  # the chain moved from somewhere else


@pytest.mark.parametrize("energy", ["self", "gpt2"])
def test_a_row_does_not_depend_on_the_rest_of_its_batch(tokenizer, energy):
    model = make_glauber("t5", tokenizer, num_rounds=2)
    if energy == "gpt2":
        torch.manual_seed(0)
        judge = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                           bos_token_id=1, eos_token_id=1)).eval()
        energy = CausalLMEnergy(judge, tokenizer=tokenizer, canvas_tokenizer=tokenizer)
    prompts = ["a", "a much longer prompt", "mid one", ""]
    kwargs = dict(energy=energy, energy_beta=1.5, max_new_tokens=5, num_rounds=3, return_dict_in_generate=True)
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    batch = model.metropolis_refine(**enc, seed=[7, 8, 9, 10], **kwargs)
    for row in range(len(prompts)):
        alone = model.metropolis_refine(**tokenizer([prompts[row]], return_tensors="pt"), seed=[7 + row], **kwargs)
        assert torch.equal(alone.sequences[0], batch.sequences[row])
        assert torch.equal(alone.acceptance_rate[:, 0], batch.acceptance_rate[:, row])
    again = model.metropolis_refine(**enc, seed=7, **kwargs)
    assert torch.equal(again.sequences, batch.sequences)


def test_counts_calls_per_kind_reports_acceptance_per_round_and_never_moves_frozen_positions(tokenizer, monkeypatch):
    model = make_glauber("t5", tokenizer, num_rounds=1)
    canvas = torch.tensor([[100, 101, 102, 103], [104, 105, 106, 107]])
    frozen = torch.tensor([[True, False, False, True], [True, False, True, False]])
    energy_calls = []
    causal_log_likelihood = model.causal_log_likelihood

    def counted(prefix, sequences):
        energy_calls.append(sequences.clone())
        return causal_log_likelihood(prefix, sequences)

    monkeypatch.setattr(model, "causal_log_likelihood", counted)
    out = model.metropolis_refine(canvas_ids=canvas, frozen_mask=frozen, energy="self", num_rounds=3, seed=0,
                                  output_trajectory=True, return_dict_in_generate=True)
    assert torch.equal(out.sequences[frozen], canvas[frozen])
    assert torch.equal(out.trajectory[:, frozen], canvas[frozen].expand(4, -1))
    # position 0 is frozen in every row: its steps cost nothing; the others cost one infill call each
    assert (out.num_draft_calls, out.num_infill_calls) == (4, 3 * 3)
    # the start, then one batched evaluation per step whose proposal changed some row
    assert out.num_energy_calls == len(energy_calls) and out.num_energy_calls <= 1 + out.num_infill_calls
    assert out.acceptance_rate.shape == (3, 2)
    assert bool(((out.acceptance_rate >= 0) & (out.acceptance_rate <= 1)).all())
    # the reported log p_E is the energy of the returned canvas
    prefix = model.build_prefix(None, batch_size=2)
    expected = model.causal_log_likelihood(prefix, out.sequences).double().sum(dim=1)
    torch.testing.assert_close(out.energy_log_prob, expected, rtol=1e-5, atol=1e-5)
    uniform = model.metropolis_refine(canvas_ids=canvas, frozen_mask=frozen, start="uniform", num_rounds=1, seed=0,
                                      return_dict_in_generate=True)
    assert uniform.num_draft_calls == 0 and torch.equal(uniform.start_sequences[frozen], canvas[frozen])


def test_proposals_mark_the_frozen_cells_as_generate_does(tokenizer, monkeypatch):
    """A model trained with the given marker (DESIGN §9) must see it in every infill it proposes from."""
    model = make_glauber("t5", tokenizer, num_rounds=1, canvas_given_embedding=True)
    canvas = torch.tensor([[100, 101, 102, 103]])
    frozen = torch.tensor([[True, False, False, True]])
    seen = []
    infill_logits = model.infill_logits

    def recording(prefix, *args, **kwargs):
        seen.append(prefix.given)
        return infill_logits(prefix, *args, **kwargs)

    monkeypatch.setattr(model, "infill_logits", recording)
    model.metropolis_refine(canvas_ids=canvas, frozen_mask=frozen, energy="self", num_rounds=1, seed=0)
    assert seen and all(given is not None and torch.equal(given, frozen) for given in seen)


def test_retokenised_energy_scores_the_text_with_the_energy_tokenizer(tokenizer):
    """ByT5 spells ASCII text with the same ids, so re-tokenising must give the id-level energy exactly."""
    torch.manual_seed(0)
    judge = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=1, eos_token_id=1)).eval()
    canvas = torch.tensor([[104, 108, 108, 111], [100, 101, 35, 102]])
    prompts = [[75, 104], []]
    by_ids = CausalLMEnergy(judge)(prompts, canvas)
    by_text = CausalLMEnergy(judge, tokenizer=tokenizer, canvas_tokenizer=tokenizer)(prompts, canvas)
    torch.testing.assert_close(by_text, by_ids)
    # the prompt conditions the canvas's likelihood and is not itself scored
    assert not torch.allclose(by_ids[:1], CausalLMEnergy(judge)([[]], canvas[:1]))


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_a_non_positive_or_non_finite_beta_is_refused(t5_model, beta):
    with pytest.raises(ValueError, match="energy_beta"):
        t5_model.metropolis_refine(max_new_tokens=3, energy_beta=beta)


def test_an_energy_with_another_vocabulary_and_no_tokenizer_is_refused(t5_model):
    judge = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    for energy in (judge, CausalLMEnergy(judge)):
        with pytest.raises(ValueError, match="energy has a vocabulary of 100 ids .* no tokenizer"):
            t5_model.metropolis_refine(max_new_tokens=3, energy=energy)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_an_energy_returning_non_finite_values_is_refused(t5_model, value):
    def energy(prompt_ids, canvas):
        out = torch.zeros(canvas.shape[0], dtype=torch.float64)
        out[-1] = value
        return out

    with pytest.raises(ValueError, match=r"energy returned non-finite log p_E for row\(s\) \[1\]"):
        t5_model.metropolis_refine(max_new_tokens=3, batch_size=2, energy=energy)


def test_other_bad_arguments_are_refused_by_name(t5_model):
    with pytest.raises(ValueError, match="start must be one of"):
        t5_model.metropolis_refine(max_new_tokens=3, start="noise")
    with pytest.raises(ValueError, match="start='canvas' needs canvas_ids"):
        t5_model.metropolis_refine(max_new_tokens=3, start="canvas")
    with pytest.raises(ValueError, match="num_rounds must be an integer >= 1"):
        t5_model.metropolis_refine(max_new_tokens=3, num_rounds=0)
    with pytest.raises(ValueError, match="energy must be a causal"):
        t5_model.metropolis_refine(max_new_tokens=3, energy=make_glauber("t5"))
    with pytest.raises(ValueError, match="energy as a string must be 'self'"):
        t5_model.metropolis_refine(max_new_tokens=3, energy="gpt2")
    with pytest.raises(ValueError, match=r"energy must return a tensor of shape \(1,\)"):
        t5_model.metropolis_refine(max_new_tokens=3, energy=lambda prompt_ids, canvas: torch.zeros(2))


def test_truncated_proposals_enter_the_acceptance_ratio_as_sampled(t5_model):
    """top_k=1 proposes only the argmax, a move no proposal can undo: scored exactly (q(x[k]) = 0 for any other current
    token) every such move is rejected, so the chain stays where it started; untruncated, it moves."""
    canvas = torch.randint(100, 110, (4, 5), generator=torch.Generator().manual_seed(0))

    def flat(prompt_ids, canvas):
        return torch.zeros(canvas.shape[0], dtype=torch.float64)

    kwargs = dict(canvas_ids=canvas, start="canvas", energy=flat, num_rounds=2, seed=0)
    assert torch.equal(t5_model.metropolis_refine(top_k=1, **kwargs), canvas)
    assert not torch.equal(t5_model.metropolis_refine(**kwargs), canvas)
