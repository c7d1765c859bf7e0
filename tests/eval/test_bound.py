"""The Glauber bound of DESIGN §7 against exact enumeration on an enumerable toy (3 content tokens, L = 3)."""

from __future__ import annotations

import math

import pytest
import torch

from eval.bound import BoundEstimate, causal_nll, enumerate_toy, glauber_bound

CONTENT = [100, 101, 102]  # bytes "a", "b", "c"
LENGTH = 3


@pytest.mark.parametrize("mask_window", [1, 2])
def test_bound_matches_enumeration_and_upper_bounds_exact_nll(tokenizer, make_model, mask_window):
    model = make_model(num_rounds=2, mask_window=mask_window, content_ids=CONTENT)
    prefix = model.build_prefix(torch.tensor([tokenizer("cab").input_ids]))
    x0 = torch.tensor([[100, 102, 101]])
    exact = enumerate_toy(model, prefix, x0, CONTENT)
    exact_nll, exact_bound = exact.nll, exact.bound
    assert exact_bound >= exact_nll - 1e-9
    assert exact_bound - exact_nll > 0.05  # a real gap on this toy, so the tests below can see tightening

    estimate = glauber_bound(model, prefix, x0, mc_samples=400, seed=0, batch_size=512)
    mean, stderr = float(estimate.mean), float(estimate.stderr)
    assert abs(mean - exact_bound) < 4 * stderr, (mean, stderr, exact_bound)
    assert stderr < 0.1
    # T noising calls, ceil(400·T / 512) batched reverse calls, one causal call
    assert estimate.num_model_calls == 2 * LENGTH + math.ceil(400 * 2 * LENGTH / 512) + 1


def test_bound_variance_shrinks_and_importance_weighting_tightens(tokenizer, make_model):
    model = make_model(num_rounds=2, content_ids=CONTENT)
    prefix = model.build_prefix(torch.tensor([tokenizer("cab").input_ids]))
    x0 = torch.tensor([[100, 102, 101]])
    exact = enumerate_toy(model, prefix, x0, CONTENT)
    exact_nll, exact_bound = exact.nll, exact.bound
    repeats = 40
    pool = glauber_bound(model, prefix, x0, mc_samples=repeats * 16, seed=7, batch_size=1024).samples[0]
    # 40 independent estimates for each M, built from disjoint trajectories of one pool
    spread, iw, means = {}, {}, {}
    for m in (1, 4, 16):
        estimates = BoundEstimate(pool[: repeats * m].view(repeats, m), 0)
        spread[m] = float(estimates.mean.std())
        means[m] = float(estimates.mean.mean())
        iw[m] = float(estimates.importance_weighted.mean())
    # the plain estimate is unbiased for the bound at every M, with a spread shrinking like 1/sqrt(M)
    assert spread[16] < spread[4] < spread[1]
    assert spread[16] < 0.5 * spread[1]
    for m in (1, 4, 16):
        assert abs(means[m] - exact_bound) < 4 * spread[m] / math.sqrt(repeats)
    # the importance-weighted bound tightens with M towards the exact NLL and stays above it
    assert iw[16] < iw[4] < iw[1] + 1e-12
    assert iw[16] > exact_nll - 4 * spread[16] / math.sqrt(repeats)


def test_bound_is_batch_independent_and_skips_frozen_positions(tokenizer, model):
    prompts = torch.tensor([tokenizer("hello").input_ids, tokenizer("abcde").input_ids])
    prefix = model.build_prefix(prompts)
    canvas = torch.tensor([[104, 105, 106, 107], [110, 111, 112, 113]])
    together = glauber_bound(model, prefix, canvas, mc_samples=3, seed=5, batch_size=64)
    alone = glauber_bound(model, prefix.select(torch.tensor([1])), canvas[1:], mc_samples=3, seed=5, batch_size=2)
    torch.testing.assert_close(together.samples[1:], alone.samples, rtol=1e-5, atol=1e-5)
    # everything frozen: nothing is scored
    frozen = torch.ones_like(canvas, dtype=torch.bool)
    assert torch.equal(glauber_bound(model, prefix, canvas, frozen, mc_samples=2).samples, torch.zeros(2, 2, dtype=torch.float64))
    # zero rounds: the bound is the exact causal NLL
    zero = glauber_bound(model, prefix, canvas, mc_samples=2, num_rounds=0)
    torch.testing.assert_close(zero.mean, causal_nll(model, prefix, canvas))
    with pytest.raises(ValueError, match="mc_samples"):
        glauber_bound(model, prefix, canvas, mc_samples=0)
    with pytest.raises(ValueError, match="num_rounds"):
        glauber_bound(model, prefix, canvas, num_rounds=3)
    too_wide = len(model.config.sentinel_token_ids) + 1
    with pytest.raises(ValueError, match=rf"mask_window={too_wide} needs {too_wide} sentinel_token_ids"):
        glauber_bound(model, prefix, torch.full((2, too_wide + 1), 104), mask_window=too_wide)
