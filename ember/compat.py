"""Run PyTorch programs unchanged: ``import torch`` resolving to ember.

``alias_torch()`` installs a meta-path finder at the front of ``sys.meta_path`` that answers
``torch`` and every ``torch.<sub>`` with ember's own module objects (``torch.nn`` *is*
``ember.nn``), ``torchvision`` with ``ember.vision`` and ``functorch`` with ``ember.func``.
Because the module objects are shared, classes keep their ember names, so pickles written under
the alias (``torch.save(model)``) name ember's classes and load with or without it.

The same finder answers ``importlib.metadata`` (``version("torch")``) with a small distribution
record, so libraries that look torch up before importing it find it. ``ember-run`` (see
``ember.run``) installs the alias before the program's first line runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import re
import sys
import types

__all__ = ["alias_torch", "unalias_torch", "is_aliased", "TorchVersion", "TORCH_API_VERSION",
           "torch_version"]

# The PyTorch API level ember implements.
TORCH_API_VERSION = "2.13.0"
TORCHVISION_API_VERSION = "0.28.0"

# alias prefix -> ember module it stands for
_ALIASES = {"torch": "ember", "torchvision": "ember.vision", "functorch": "ember.func"}


# ---------------------------------------------------------------------------------------------
# versions
# ---------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?"
                         r"(?:\.dev(\d+))?(?:\+([0-9A-Za-z.]+))?\s*$")
_PRE_ORDER = {"a": 0, "b": 1, "rc": 2}


def _version_key(text):
    """A sort key for a PEP 440 version string (release, pre, post, dev, local)."""
    m = _VERSION_RE.match(str(text))
    if m is None:
        raise ValueError(f"invalid version string {text!r}")
    release, pre, pre_n, post, dev, local = m.groups()
    nums = [int(p) for p in release.split(".")]
    while len(nums) > 1 and nums[-1] == 0:  # 2.13 == 2.13.0
        nums.pop()
    # dev releases sort before pre-releases, which sort before the final release
    if pre is not None:
        pre_key = (_PRE_ORDER[pre], int(pre_n))
    elif dev is not None and post is None:
        pre_key = (-1, 0)
    else:
        pre_key = (3, 0)
    post_key = -1 if post is None else int(post)
    dev_key = float("inf") if dev is None else int(dev)
    local_key = () if local is None else tuple(
        (1, int(p), "") if p.isdigit() else (0, 0, p.lower()) for p in local.split("."))
    return (tuple(nums), pre_key, post_key, dev_key, local_key)


class TorchVersion(str):
    """A version string that compares as a version: ``TorchVersion('2.13.0+ember0.1.0') >=
    '2.0'`` is True, as with ``torch.__version__``. Comparisons against tuples of ints
    (``>= (2, 1)``) work too."""

    def _key(self):
        return _version_key(self)

    def _other_key(self, other):
        if isinstance(other, tuple):
            other = ".".join(str(p) for p in other)
        return _version_key(other)

    def __lt__(self, other):
        return self._key() < self._other_key(other)

    def __le__(self, other):
        return self._key() <= self._other_key(other)

    def __gt__(self, other):
        return self._key() > self._other_key(other)

    def __ge__(self, other):
        return self._key() >= self._other_key(other)

    def __eq__(self, other):
        try:
            return self._key() == self._other_key(other)
        except (ValueError, TypeError):
            return str.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = str.__hash__


def torch_version():
    """The version string ember answers as ``torch.__version__``: PyTorch's API level with
    ember's version as the local part, e.g. ``2.13.0+ember0.1.0``."""
    import ember
    own = _saved_version if _saved_version is not None else ember.__version__
    return TorchVersion(f"{TORCH_API_VERSION}+ember{own}")


# ---------------------------------------------------------------------------------------------
# the finder
# ---------------------------------------------------------------------------------------------

def _target(fullname):
    """The ember module name an aliased name stands for, or None if it is not aliased."""
    for alias, real in _ALIASES.items():
        if fullname == alias:
            return real
        if fullname.startswith(alias + "."):
            return real + fullname[len(alias):]
    return None


def _import_target(name):
    """Import ember's module ``name``; a module object kept as an attribute of its parent
    (``ember.cuda`` is built in code, with no file) is registered under its name too."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        parent, _, child = name.rpartition(".")
        if not parent or e.name not in (name, None):
            raise
        mod = getattr(importlib.import_module(parent), child, None)
        if not isinstance(mod, types.ModuleType):
            raise
        sys.modules.setdefault(name, mod)
        return mod


class _Distribution(importlib.metadata.Distribution):
    """The package metadata ``importlib.metadata`` reports for an aliased name."""

    def __init__(self, name, version):
        self._text = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                      f"Summary: ember standing in for {name}\n")

    def read_text(self, filename):
        if filename in ("METADATA", "PKG-INFO"):
            return self._text
        return None

    def locate_file(self, path):
        import pathlib

        import ember
        return pathlib.Path(ember.__file__).parent / path


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``torch``/``torch.*`` (and ``torchvision``, ``functorch``) with ember's modules.

    The loader returns the already-imported ember module from ``create_module``; importlib
    then stamps the alias's spec on it, which ``exec_module`` undoes so that the module keeps
    its own ``__spec__`` (relative imports inside ember rely on it)."""

    def find_spec(self, fullname, path=None, target=None):
        real = _target(fullname)
        if real is None:
            return None
        try:
            mod = _import_target(real)
        except ModuleNotFoundError as e:
            if e.name is not None and real.startswith(e.name):
                return None  # ember has no such module: ``import torch.x`` fails as usual
            raise
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=real,
                                              is_package=hasattr(mod, "__path__"))
        spec.loader_state = (mod, getattr(mod, "__spec__", None))
        return spec

    def create_module(self, spec):
        # importlib sets __spec__ on the module after this call; exec_module restores it
        return spec.loader_state[0]

    def exec_module(self, module):
        _, own_spec = module.__spec__.loader_state
        if own_spec is not None:
            module.__spec__ = own_spec

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        name = (context.name or "").lower().replace("-", "_")
        if name == "torch":
            yield _Distribution("torch", torch_version())
        elif name == "torchvision":
            yield _Distribution("torchvision", TORCHVISION_API_VERSION)


_finder = None
_saved_version = None


def is_aliased():
    """Whether ``import torch`` currently resolves to ember."""
    return _finder is not None and _finder in sys.meta_path


def alias_torch():
    """Make ``import torch`` (and ``torch.*``, ``torchvision``, ``functorch``) give ember,
    in this interpreter from now on. Returns the ember module.

    Refuses with ``RuntimeError`` if the real PyTorch is already imported: two frameworks
    under one name would mix tensors of both. Calling it again is harmless.
    """
    global _finder, _saved_version
    import ember
    real = sys.modules.get("torch")
    if real is not None and real is not ember:
        raise RuntimeError(
            f"ember.compat.alias_torch(): the real PyTorch is already imported (from "
            f"{getattr(real, '__file__', '?')}); call alias_torch() before anything imports "
            f"torch, or start the program with `ember-run script.py`")
    if is_aliased():
        return ember
    _finder = _AliasFinder()
    sys.meta_path.insert(0, _finder)
    _saved_version = ember.__version__
    ember.__version__ = torch_version()
    # modules already imported answer under their torch names at once
    for name, mod in list(sys.modules.items()):
        for alias, target in _ALIASES.items():
            if name == target or name.startswith(target + "."):
                sys.modules.setdefault(alias + name[len(target):], mod)
    return ember


def unalias_torch():
    """Undo ``alias_torch()``: remove the finder and the aliased entries of ``sys.modules``."""
    global _finder
    import ember
    if _finder is None:
        return
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    if _saved_version is not None:
        ember.__version__ = _saved_version
    for name in list(sys.modules):
        if _target(name) is not None:
            mod = sys.modules[name]
            if getattr(mod, "__name__", "").startswith("ember"):
                del sys.modules[name]
