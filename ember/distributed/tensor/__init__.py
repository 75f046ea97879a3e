"""``ember.distributed.tensor``: DTensor (PyTorch's ``torch.distributed.tensor``).

A DTensor is a global tensor laid out over a ``DeviceMesh`` with one placement per mesh
dimension: ``Shard(dim)`` (split as ``torch.chunk`` splits), ``Replicate()`` or
``Partial(reduce_op)`` (a pending reduction). Ops on DTensors follow sharding rules and
autograd flows through them; ``redistribute`` moves between placements with the right
collective.
"""

from ..device_mesh import DeviceMesh, init_device_mesh
from ._api import DTensor, distribute_module, distribute_tensor
from .placement_types import Partial, Placement, Replicate, Shard

__all__ = ["DTensor", "DeviceMesh", "distribute_tensor", "distribute_module",
           "init_device_mesh", "Shard", "Replicate", "Partial", "Placement"]
