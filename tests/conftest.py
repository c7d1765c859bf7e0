"""Shared fixtures; the model factories live in tiny_models.py."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import ByT5Tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tokenizer() -> ByT5Tokenizer:
    return ByT5Tokenizer()


@pytest.fixture
def t5_model(tokenizer):
    from tiny_models import make_glauber

    return make_glauber("t5", tokenizer, num_rounds=2, mask_window=2)
