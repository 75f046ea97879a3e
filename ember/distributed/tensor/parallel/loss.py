"""``loss_parallel``: cross-entropy on logits sharded over the class dim."""

from contextlib import contextmanager

__all__ = ["loss_parallel"]


@contextmanager
def loss_parallel():
    """In PyTorch this context lets ``F.cross_entropy`` take logits sharded on the class
    dim without gathering them. ember's cross-entropy rule always does so (a log-sum-exp and
    the target logit are each one all-reduce of a per-row value), so the context changes
    nothing and exists for programs written for PyTorch."""
    yield
