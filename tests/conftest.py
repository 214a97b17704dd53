"""Test-wide settings: torch runs single-threaded (a busy 2-core machine is several
times slower with 2 threads). Override with SCORESDE_TEST_THREADS=N."""
import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("SCORESDE_TEST_THREADS", "1")))


@pytest.fixture
def gen():
    """A seeded CPU generator; each test gets a fresh one."""
    return torch.Generator().manual_seed(0)
