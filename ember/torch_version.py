"""``torch.torch_version``: ``TorchVersion`` and the API level as ``__version__``."""

from .compat import TorchVersion, torch_version as _torch_version

__all__ = ["TorchVersion"]

__version__ = _torch_version()
