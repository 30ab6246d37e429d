"""Train tests: restore torch's thread count after each test (the trainer sets it process-wide)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
