"""``torch.hub``: the cache directory is served; downloading is not (ember is offline and
runs no code from the network). Load weights from a file with ``ember.load`` instead."""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse  # timm imports it from torch.hub

__all__ = ["download_url_to_file", "get_dir", "help", "list", "load",
           "load_state_dict_from_url", "set_dir"]

_hub_dir = None

# PyTorch's module constants, which libraries import (timm takes HASH_REGEX and urlparse)
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
ENV_GITHUB_TOKEN = "GITHUB_TOKEN"
ENV_TORCH_HOME = "TORCH_HOME"
ENV_XDG_CACHE_HOME = "XDG_CACHE_HOME"
DEFAULT_CACHE_DIR = "~/.cache"
VAR_DEPENDENCY = "dependencies"
MODULE_HUBCONF = "hubconf.py"
READ_DATA_CHUNK = 128 * 1024


def get_dir():
    """The hub cache directory: ``set_dir``'s, else ``$TORCH_HOME/hub``, else
    ``~/.cache/torch/hub``, as PyTorch chooses it."""
    if _hub_dir is not None:
        return _hub_dir
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return os.path.join(os.path.expanduser(home), "hub")


def set_dir(d):
    global _hub_dir
    _hub_dir = os.path.expanduser(os.fspath(d))


def _offline(what):
    raise NotImplementedError(f"ember.hub.{what}: ember does not download models or code; "
                              f"fetch the file yourself and use ember.load(path)")


def download_url_to_file(url, dst, hash_prefix=None, progress=True):
    _offline("download_url_to_file")


def load_state_dict_from_url(url, model_dir=None, map_location=None, progress=True,
                             check_hash=False, file_name=None, weights_only=False):
    """Loads from the cache directory when the file is already there; never downloads."""
    model_dir = model_dir or os.path.join(get_dir(), "checkpoints")
    cached = os.path.join(model_dir, file_name or os.path.basename(urlparse(url).path))
    if os.path.exists(cached):
        from .serialization import load as _load
        return _load(cached, map_location=map_location, weights_only=weights_only)
    _offline(f"load_state_dict_from_url({url!r}) (not in the cache at {cached})")


def list(github, force_reload=False, skip_validation=False, trust_repo=None, verbose=True):
    _offline("list")


def help(github, model, force_reload=False, skip_validation=False, trust_repo=None):
    _offline("help")


def load(repo_or_dir, model, *args, **kwargs):
    _offline("load")
