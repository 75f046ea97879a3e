"""``torch.nn.modules.linear_cross_entropy_options``: the options of PyTorch's chunked
``linear_cross_entropy``. ember computes the same values with the plain formulation
(logits, then cross entropy) whatever the options say; they are validated as PyTorch does so
that a program that passes them runs unchanged."""

from __future__ import annotations

import dataclasses

__all__ = ["LinearCrossEntropyOptions"]


@dataclasses.dataclass(frozen=True)
class LinearCrossEntropyOptions:
    """How PyTorch chunks the batch in ``linear_cross_entropy`` (fields and checks as
    PyTorch's): ``allow_retain_graph``, ``batch_chunk_size`` (rows per chunk),
    ``chunking_method`` (``"auto"``, ``"aspect_ratio"``, ``"aspect_ratio:N"`` or None),
    ``acc_policy`` (``"auto"``, ``"accurate"``, ``"balanced"``, ``"compact"``) and
    ``acc_dtype`` (a float dtype or None)."""

    allow_retain_graph: bool = False
    batch_chunk_size: int | None = None
    chunking_method: str | None = "auto"
    acc_policy: str = "auto"
    acc_dtype: object = None

    def __post_init__(self):
        if self.acc_policy not in {"auto", "accurate", "balanced", "compact"}:
            raise ValueError(f"invalid acc_policy: {self.acc_policy!r}")
        if self.chunking_method is not None and self.chunking_method != "auto":
            name, sep, factor = self.chunking_method.partition(":")
            factor = factor if sep else "1"
            if not (name == "aspect_ratio" and factor.isdigit() and int(factor) > 0):
                raise ValueError(f"invalid chunking_method: {self.chunking_method!r}")
        if not (self.batch_chunk_size is None or (isinstance(self.batch_chunk_size, int)
                                                  and self.batch_chunk_size > 0)):
            raise ValueError(f"batch_chunk_size must be positive int or None, got "
                             f"{self.batch_chunk_size!r}")
        from ... import bfloat16, float16, float32, float64
        if self.acc_dtype is not None and self.acc_dtype not in (float16, bfloat16, float32,
                                                                 float64):
            raise ValueError(f"acc_dtype must be one of {{None, torch.float16, "
                             f"torch.bfloat16, torch.float32, torch.float64}}, got "
                             f"{self.acc_dtype!r}. Pass acc_dtype=None to let the op pick "
                             f"automatically.")
