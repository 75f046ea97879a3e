"""``ember.distributed._tensor``: the older import path of ``ember.distributed.tensor``."""

from ..tensor import *  # noqa: F401,F403
from ..tensor import __all__  # noqa: F401
from ..tensor.placement_types import Partial, Placement, Replicate, Shard  # noqa: F401
