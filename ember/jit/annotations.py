"""``torch.jit.annotations``: the typing names TorchScript-era code imports from here
(``from torch.jit.annotations import List, Tuple``). ember has no TorchScript type system, so
these are the plain ``typing`` objects; the ``is_*`` predicates inspect typing annotations."""

from __future__ import annotations

import typing
from typing import Any, Dict, List, Optional, Tuple, Union

__all__ = ["Any", "BroadcastingList1", "BroadcastingList2", "BroadcastingList3", "Dict", "List",
           "Optional", "Tuple", "Union", "is_dict", "is_list", "is_optional", "is_tuple",
           "is_union"]

# TorchScript's BroadcastingListN[T] accepts a T or a list of N of them; outside TorchScript it
# is only an annotation, and PyTorch makes it subscriptable the same way
BroadcastingList1 = BroadcastingList2 = BroadcastingList3 = List


def _origin(ann):
    return typing.get_origin(ann)


def is_tuple(ann):
    """Whether ``ann`` is a ``Tuple[...]`` annotation."""
    return _origin(ann) is tuple


def is_list(ann):
    """Whether ``ann`` is a ``List[...]`` annotation."""
    return _origin(ann) is list


def is_dict(ann):
    """Whether ``ann`` is a ``Dict[...]`` annotation."""
    return _origin(ann) is dict


def is_union(ann):
    """Whether ``ann`` is a ``Union[...]`` (or ``X | Y``) annotation."""
    import types
    return _origin(ann) in (Union, types.UnionType)


def is_optional(ann):
    """Whether ``ann`` is ``Optional[T]``: a union that admits ``None``."""
    return is_union(ann) and type(None) in typing.get_args(ann)
