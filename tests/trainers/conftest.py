"""Fixtures of the trainer tests."""

import os
import sys

import pytest
from transformers import ByT5Tokenizer

# the shared helpers (trainer_fixtures.py) and the 2-process script live next to this file
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two threads spin (≈10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer():
    return ByT5Tokenizer()
