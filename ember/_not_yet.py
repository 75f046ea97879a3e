"""Parts of PyTorch's API that ember does not provide yet. Each raises NotImplementedError
naming what is missing, instead of failing later in a confusing way (see README's status)."""

from __future__ import annotations


def missing(feature, detail=""):
    """A function that raises NotImplementedError for ``feature``."""
    def fn(*args, **kwargs):
        raise NotImplementedError(f"{feature} is not implemented in ember yet{detail}; see the "
                                  "status table in ember's README")
    fn.__name__ = feature.rsplit(".", 1)[-1]
    fn.__doc__ = f"Not implemented yet: calling it raises NotImplementedError ({feature})."
    return fn
