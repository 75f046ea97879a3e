"""``torch.types``: the type aliases annotations use."""

from __future__ import annotations

import builtins
import os
from typing import IO, Union

from ._device import device as _device
from ._storage import UntypedStorage as Storage

__all__ = ["Number", "Device", "FileLike", "Storage"]

Number = Union[builtins.int, builtins.float, builtins.bool]
Device = Union[_device, str, builtins.int, None]
FileLike = Union[str, os.PathLike, IO[bytes]]
_int = builtins.int
_float = builtins.float
_bool = builtins.bool
_complex = builtins.complex
_size = tuple
