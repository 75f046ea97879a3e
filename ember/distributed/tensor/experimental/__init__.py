"""``ember.distributed.tensor.experimental``: ``implicit_replication``."""

from contextlib import contextmanager

__all__ = ["implicit_replication"]


@contextmanager
def implicit_replication():
    """Let plain tensors mix with DTensors as replicated values. ember's DTensor ops always
    do so (every rank must then hold the same plain value), so this context changes
    nothing; it exists for programs written for PyTorch, where mixing needs it."""
    yield
