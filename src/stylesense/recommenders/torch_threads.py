"""The thread setting every PyTorch model trains and scores under."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the duration, the previous setting restored after:
    a model's ``threads`` parameter must not leak into the caller's process (oversubscribed
    threads were 20x slower on the 2-core machines this runs on)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
