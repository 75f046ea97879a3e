"""``torch._dynamo._trace_wrapped_higher_order_op``: ``TransformGetItemToIndex``, the mode
under which PyTorch indexes with a 0-d integer tensor as an index op instead of turning it into
a Python int first (it matters when a mask function is vmapped or traced, as Hugging Face's
``masking_utils`` does). ember's indexing already keeps a tensor index a tensor, in eager mode
and under ``ember.func.vmap``, so the mode has nothing to change: it is a context manager that
leaves every call as it is."""

from __future__ import annotations

__all__ = ["TransformGetItemToIndex"]


class TransformGetItemToIndex:
    """Context manager (and decorator, as PyTorch's modes are) that changes nothing in ember."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapped
