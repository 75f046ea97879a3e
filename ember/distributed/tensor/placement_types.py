"""Placements: how a DTensor's global value is laid out along one mesh dimension."""

from __future__ import annotations

__all__ = ["Placement", "Shard", "Replicate", "Partial"]

_REDUCE_OPS = ("sum", "avg", "max", "min")


class Placement:
    """The base of ``Shard``, ``Replicate`` and ``Partial``."""

    def is_shard(self, dim=None):
        return False

    def is_replicate(self):
        return False

    def is_partial(self, reduce_op=None):
        return False


class Shard(Placement):
    """Split along tensor dimension ``dim`` over the mesh dimension, as ``torch.chunk`` does:
    chunks of ``ceil(n / k)`` elements, the last ones smaller or empty."""

    __slots__ = ("dim",)

    def __init__(self, dim=0):
        if not isinstance(dim, int):
            raise TypeError(f"Shard(dim): dim must be an int, got {type(dim).__name__}")
        self.dim = dim

    def is_shard(self, dim=None):
        return dim is None or dim == self.dim

    def __eq__(self, other):
        return type(other) is Shard and other.dim == self.dim

    def __hash__(self):
        return hash(("Shard", self.dim))

    def __repr__(self):
        return f"Shard(dim={self.dim})"

    def __str__(self):
        return f"S({self.dim})"


class Replicate(Placement):
    """Every rank along the mesh dimension holds the whole value."""

    __slots__ = ()

    def is_replicate(self):
        return True

    def __eq__(self, other):
        return type(other) is Replicate

    def __hash__(self):
        return hash("Replicate")

    def __repr__(self):
        return "Replicate()"

    def __str__(self):
        return "R"


class Partial(Placement):
    """The global value is the reduction (``"sum"``, ``"avg"``, ``"max"``, ``"min"``) of the
    ranks' local values along the mesh dimension; it is pending until a redistribution."""

    __slots__ = ("reduce_op",)

    def __init__(self, reduce_op="sum"):
        if reduce_op not in _REDUCE_OPS:
            raise ValueError(f"Partial: reduce_op must be one of {_REDUCE_OPS}, got "
                             f"{reduce_op!r}")
        self.reduce_op = reduce_op

    def is_partial(self, reduce_op=None):
        return reduce_op is None or reduce_op == self.reduce_op

    def __eq__(self, other):
        return type(other) is Partial and other.reduce_op == self.reduce_op

    def __hash__(self):
        return hash(("Partial", self.reduce_op))

    def __repr__(self):
        return f"Partial({self.reduce_op})"

    def __str__(self):
        return "P"


class _StridedShard(Shard):
    """PyTorch's private placement for a dimension sharded twice by nested parallelism (FSDP
    over tensor parallelism): ``split_factor`` interleaved chunks. Here for libraries that
    import and test for it (Hugging Face transformers); ember's DTensor ops do not produce it
    and redistribution does not accept it."""

    __slots__ = ("split_factor",)

    def __init__(self, dim=0, split_factor=1):
        super().__init__(dim)
        self.split_factor = int(split_factor)

    def __eq__(self, other):
        return (type(other) is _StridedShard and other.dim == self.dim
                and other.split_factor == self.split_factor)

    def __hash__(self):
        return hash(("_StridedShard", self.dim, self.split_factor))

    def __repr__(self):
        return f"_StridedShard(dim={self.dim}, sf={self.split_factor})"
