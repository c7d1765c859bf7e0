"""Iso-compute best-of-N: equal counted budgets, selection rules and answer extraction."""

from __future__ import annotations

import pytest

from eval.best_of_n import Item, best_of_n, extract_answer, select


def test_extraction_and_selection():
    assert extract_answer("so 1,234 apples, then 56.", "number") == "56"
    assert extract_answer("The answer is B.", "choice") == "B"
    assert extract_answer("  yes ", "exact") == "yes"
    item = Item("q", "#### 12", "number")
    assert select(["7", "x 12"], item, "oracle") and not select(["7", "x 12", "7"], item, "majority")
    assert select(["12", "12", "3"], item, "majority")
    with pytest.raises(ValueError, match="selection"):
        select(["1"], item, "best")


def test_budgets_are_equal_and_counted(model, tokenizer):
    items = [Item("1+1=", "2"), Item("2+2=", "4"), Item("hi", "z", "exact")]
    length, k = 4, 2
    result = best_of_n(items, model, tokenizer, k=k, length=length, batch_size=3, seed=1, progress=False)
    glauber, ar = result["glauber"], result["ar"]
    assert (glauber["candidates"], ar["candidates"]) == (k, 2 * k)
    # K · (1+1)·L  ==  2K · L
    assert glauber["model_calls_per_prompt"] == ar["model_calls_per_prompt"] == 2 * k * length
    assert all(len(samples) == k for samples in glauber["samples"]) and all(len(s) == 2 * k for s in ar["samples"])
    for arm in (glauber, ar):  # accuracy is the oracle selection applied to the returned candidates
        expected = sum(select(s, item, "oracle") for s, item in zip(arm["samples"], items)) / len(items)
        assert arm["accuracy"] == expected
    again = best_of_n(items, model, tokenizer, k=k, length=length, batch_size=5, seed=1, progress=False)
    assert again["glauber"]["samples"] == glauber["samples"]  # seeded per candidate, not per batch
    with pytest.raises(ValueError, match="k must be"):
        best_of_n(items, model, tokenizer, k=0, length=length)
