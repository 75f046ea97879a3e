"""``torch.version``: the PyTorch API level ember implements, and no GPU toolkits."""

from .compat import torch_version as _torch_version

__version__ = _torch_version()
debug = False
cuda = None
hip = None
xpu = None
git_version = "ember"
