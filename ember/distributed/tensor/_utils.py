"""``torch.distributed.tensor._utils``: the layout helper libraries import from here
(Hugging Face transformers takes ``compute_local_shape_and_global_offset``)."""

from __future__ import annotations

__all__ = ["compute_local_shape_and_global_offset"]


def compute_local_shape_and_global_offset(global_shape, mesh, placements):
    """This rank's shard shape of a tensor of ``global_shape`` laid out over ``mesh`` by
    ``placements``, and where that shard starts in the global tensor, as two tuples. A rank
    outside the mesh holds nothing: shape ``(0,)`` and an empty offset, as PyTorch answers."""
    from ._api import DTensorSpec
    if mesh.get_coordinate() is None:
        return (0,), ()
    spec = DTensorSpec(mesh, placements, global_shape, dtype=None)
    return spec.local_shape_and_offset()
