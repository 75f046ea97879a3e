"""Saving and loading ``jit.script`` results: symbolic-trace ``GraphModule``s, no pickle.

A scripted module is an ``ember.fx`` graph over leaf modules (``call_module``), Tensor methods
(``call_method``) and functions (``call_function``). It is written in the program archive of
``ember.export._serialize`` (a zip: ``program.json`` + ``weights.pt``) with
``"kind": "scripted_module"``:

* ``graph.nodes``: ``{"name", "op", "target", "args", "kwargs"}`` in graph order. Targets:
  a ``call_module``/``get_attr`` target is a dotted attribute path; a ``call_method`` target
  is the name of a public ``Tensor`` method; a ``call_function`` target is
  ``{"fn": "<module>:<qualname>"}`` of a function defined in ember (``ember.*``), in
  ``operator`` or ``math``, or one of a few builtins (``getattr``, ``len``, ...). Arguments
  use the export schema's tags, plus ``{"fn": ...}`` for a function passed as a value.
* ``modules``: ``[[path, class, attrs, training, non-persistent buffers, None parameters,
  None buffers], ...]`` for every submodule (parents first). ``class`` must be an
  ``nn.Module`` class defined in ember; ``attrs`` are the instance's plain attributes
  (numbers, strings, tuples, dtypes, functions as above, and ``{"tensor": name}`` for the
  module's own parameters or buffers).
* ``weights.pt``: every parameter and buffer by dotted name (PyTorch's checkpoint format).

Loading builds each module with ``cls.__new__`` (its ``__init__`` is not run) and sets the
recorded attributes; nothing from the file is executed, and anything outside the allowlist
raises ``UnknownTargetError``. Modules or functions that are not ember's (a user's own leaf
module, a function registered with ``fx.wrap``) cannot be saved: the loading process would
need their source.
"""

from __future__ import annotations

import builtins
import importlib
import io
import math
import os
import types

from ..export._serialize import UnknownTargetError, _dec, _enc, read_archive, write_archive

__all__ = ["save_scripted", "load_scripted", "build_scripted"]

_BUILTINS = {f.__name__: f for f in (builtins.getattr, builtins.len, builtins.int,
                                     builtins.float, builtins.bool, builtins.tuple,
                                     builtins.list, builtins.slice, builtins.range,
                                     builtins.min, builtins.max, builtins.abs)}
_OK_MODULES = ("operator", "math", "_operator")


# ---------------------------------------------------------------------- functions
def _fn_name(f, what):
    """``module:qualname`` of an allowlisted function, or a TypeError naming ``what``."""
    for k, v in _BUILTINS.items():
        if f is v:
            return f"builtins:{k}"
    mod = getattr(f, "__module__", None) or ""
    qual = getattr(f, "__qualname__", None) or getattr(f, "__name__", "")
    owner = getattr(f, "__self__", None)
    if isinstance(owner, type):  # an op class's ``apply`` (a bound classmethod)
        mod, qual = owner.__module__, f"{owner.__qualname__}.{f.__name__}"
    if mod in ("_operator",):
        mod = "operator"
    if (mod.startswith("ember.") or mod in _OK_MODULES) and "<" not in qual:
        name = f"{mod}:{qual}"
        try:
            if _resolve_fn(name) == f:  # bound methods are equal, not identical
                return name
        except UnknownTargetError:
            pass
    raise TypeError(f"jit.save: {what} calls {mod}.{qual}, which is not a function of ember "
                    "(a function of the model's own code, e.g. registered with fx.wrap, would "
                    "need the model's source to load); only graphs of ember functions, "
                    "modules and Tensor methods can be saved")


def _resolve_fn(name):
    """The function ``module:qualname`` stands for, from the allowlist only."""
    mod_name, _, qual = name.partition(":")
    if mod_name == "builtins":
        f = _BUILTINS.get(qual)
        if f is None:
            raise UnknownTargetError(f"load: the builtin {qual!r} is not in ember's allowlist")
        return f
    if not (mod_name == "ember" or mod_name.startswith("ember.") or mod_name in _OK_MODULES):
        raise UnknownTargetError(f"load: the function {name!r} is not ember's; refusing to "
                                 "load it (the file may be corrupt or tampered with)")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError:
        raise UnknownTargetError(f"load: no module {mod_name!r} for the function {name!r}") \
            from None
    parts = qual.split(".")
    for i, part in enumerate(parts):
        if part.startswith("__") or not part.isidentifier():
            raise UnknownTargetError(f"load: the function {name!r} is not allowed")
        obj = getattr(obj, part, None)
        # only classes may stand between the module and the function (no other modules)
        if i < len(parts) - 1 and not isinstance(obj, type):
            raise UnknownTargetError(f"load: the function {name!r} is not ember's")
    fmod = getattr(obj, "__module__", None) or ""
    fmod = "operator" if fmod == "_operator" else fmod
    if not callable(obj) or isinstance(obj, (type, types.ModuleType)) or not \
            (fmod.startswith("ember.") or fmod in _OK_MODULES or
             (mod_name in _OK_MODULES and fmod in ("builtins", ""))):
        raise UnknownTargetError(f"load: the function {name!r} is not ember's; refusing to "
                                 "load it")
    return obj


# ---------------------------------------------------------------------- values
def _enc_value(a, what, tensors=None):
    """``_enc`` plus functions (allowlisted) and a module's own tensors by name."""
    from .._dtype import dtype as _dtype
    from .._tensor import Tensor
    from ..fx import Node
    if isinstance(a, Tensor) and tensors is not None:
        for k, t in tensors.items():
            if t is a:
                return {"tensor": k}
        raise TypeError(f"jit.save: {what} holds a tensor that is not one of the module's "
                        "parameters or buffers")
    if isinstance(a, (tuple, list)) and not isinstance(a, Node):
        tag = "tuple" if isinstance(a, tuple) else "list"
        return {tag: [_enc_value(x, what, tensors) for x in a]}
    if isinstance(a, dict):
        return {"dict": [[_enc_value(k, what, tensors), _enc_value(v, what, tensors)]
                         for k, v in a.items()]}
    if isinstance(a, (types.FunctionType, types.BuiltinFunctionType)) and \
            not isinstance(a, _dtype):
        return {"fn": _fn_name(a, what)}
    if isinstance(a, float) and not math.isfinite(a):
        return {"float": float.hex(a)}
    return _enc(a, what)


def _dec_value(a, nodes, tensors=None):
    if isinstance(a, dict) and len(a) == 1:
        (k, v), = a.items()
        if k == "fn":
            return _resolve_fn(v)
        if k == "tensor":
            if tensors is None or v not in tensors:
                raise UnknownTargetError(f"load: unknown tensor attribute {v!r}")
            return tensors[v]
        if k == "tuple":
            return tuple(_dec_value(x, nodes, tensors) for x in v)
        if k == "list":
            return [_dec_value(x, nodes, tensors) for x in v]
        if k == "dict":
            return {_dec_value(kk, nodes, tensors): _dec_value(vv, nodes, tensors)
                    for kk, vv in v}
    return _dec(a, nodes)


# ---------------------------------------------------------------------- modules
def _module_class_name(m, path):
    from ..fx import GraphModule
    cls = type(m)
    if isinstance(m, GraphModule) or not cls.__module__.startswith("ember.") or \
            "<" in cls.__qualname__:
        raise TypeError(f"jit.save: submodule {path or '<root>'} is a {cls.__module__}."
                        f"{cls.__qualname__}, not a module of ember; a scripted program can "
                        "be saved when its leaf modules are ember's own layers")
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_module_class(name):
    from ..nn.modules.module import Module
    mod_name, _, qual = name.partition(":")
    if not mod_name.startswith("ember.") or not all(p.isidentifier() and
                                                    not p.startswith("__")
                                                    for p in qual.split(".")):
        raise UnknownTargetError(f"load: the module class {name!r} is not ember's")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError:
        raise UnknownTargetError(f"load: no module {mod_name!r} for {name!r}") from None
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, Module)) or \
            not obj.__module__.startswith("ember."):
        raise UnknownTargetError(f"load: {name!r} is not an ember module class")
    return obj


_BASE_KEYS: list = []


def _plain_attrs(m, path):
    """The instance attributes of ``m`` beyond ``Module``'s own bookkeeping."""
    from ..nn.modules.module import Module
    if not _BASE_KEYS:
        _BASE_KEYS.append(set(vars(Module())))
    own = dict(m._parameters)
    own.update(m._buffers)
    out = {}
    for k, v in vars(m).items():
        if k in _BASE_KEYS[0]:
            continue
        out[k] = _enc_value(v, f"attribute {k!r} of submodule {path or '<root>'} "
                               f"({type(m).__name__})", own)
    return out


# ---------------------------------------------------------------------- save / load
def save_scripted(gm, f, name, is_function, extra_files=None):
    """Write the scripted ``GraphModule`` ``gm`` to ``f`` (see the module docstring)."""
    nodes = []
    for n in gm.graph.nodes:
        what = f"node {n.name}"
        entry = {"name": n.name, "op": n.op}
        if n.op == "call_function":
            entry["target"] = {"fn": _fn_name(n.target, what)}
        elif n.op == "call_method":
            _check_method(n.target)
            entry["target"] = n.target
        else:
            entry["target"] = n.target
        entry["args"] = _enc_value(tuple(n.args), what)
        entry["kwargs"] = _enc_value(dict(n.kwargs), what)
        nodes.append(entry)
    modules = []
    for path, m in gm.named_modules():
        if not path:
            continue
        modules.append([path, _module_class_name(m, path), _plain_attrs(m, path),
                        bool(m.training), sorted(m._non_persistent_buffers_set),
                        # parameters and buffers registered as None (``bias=False``)
                        [k for k, v in m._parameters.items() if v is None],
                        [k for k, v in m._buffers.items() if v is None]])
    state = dict(gm.named_parameters(remove_duplicate=False))
    state.update(gm.named_buffers(remove_duplicate=False))
    params = [k for k, _ in gm.named_parameters(remove_duplicate=False)]
    program = {"schema": "ember.program", "version": 1, "kind": "scripted_module",
               "name": name, "is_function": bool(is_function), "training": bool(gm.training),
               "graph": {"nodes": nodes}, "modules": modules, "params": params,
               "root_non_persistent": sorted(gm._non_persistent_buffers_set)}
    write_archive(f, program, state, {}, extra_files)


def _check_method(name):
    from .._tensor import Tensor
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") or \
            not callable(getattr(Tensor, name, None)):
        raise UnknownTargetError(f"load: {name!r} is not a public Tensor method")


def load_scripted(f, extra_files=None):
    """The scripted module written by ``save_scripted``: a ``GraphModule`` over modules
    rebuilt from the allowlist (see the module docstring)."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            f = io.BytesIO(fh.read())
    program, state, _ = read_archive(f, extra_files)
    if program.get("kind") != "scripted_module":
        raise RuntimeError(f"load: the file holds a {program.get('kind')}, not a scripted "
                           "module")
    return build_scripted(program, state)


def build_scripted(program, state):
    """The scripted ``GraphModule`` of an archive's ``program.json`` and weights."""
    from ..fx import Graph
    from ..nn.modules.module import Module
    from ..nn.parameter import Parameter
    from . import _scripted_class
    root = Module()
    params = set(program.get("params", []))

    def owner_of(dotted):
        *path, leaf = dotted.split(".")
        owner = root
        for atom in path:
            owner = owner._modules[atom]
        return owner, leaf
    # modules first (parents before children), their tensors, then their plain attributes
    built = []
    for path, cls_name, attrs, training, non_persistent, *nones in program["modules"]:
        cls = _resolve_module_class(cls_name)
        m = cls.__new__(cls)
        Module.__init__(m)
        m.training = bool(training)
        none_params, none_buffers = nones if nones else ([], [])
        for k in none_params:
            m._parameters[str(k)] = None
        for k in none_buffers:
            m._buffers[str(k)] = None
        parent, leaf = owner_of(path)
        parent._modules[leaf] = m
        built.append((m, attrs, non_persistent))
    for k, t in state.items():
        owner, leaf = owner_of(k)
        if k in params:
            owner._parameters[leaf] = t if isinstance(t, Parameter) else \
                Parameter(t, requires_grad=t.requires_grad)
        else:
            owner._buffers[leaf] = t
    for m, attrs, non_persistent in built:
        own = dict(m._parameters)
        own.update(m._buffers)
        for k, v in attrs.items():
            m.__dict__[k] = _dec_value(v, {}, own)
        m._non_persistent_buffers_set = set(non_persistent)
    root._non_persistent_buffers_set = set(program.get("root_non_persistent", []))
    graph = Graph()
    nodes = {}
    for e in program["graph"]["nodes"]:
        op, target = e["op"], e["target"]
        try:
            args = _dec_value(e.get("args", {"tuple": []}), nodes)
            kwargs = _dec_value(e.get("kwargs", {"dict": []}), nodes)
        except KeyError as err:
            raise UnknownTargetError(f"load: node {e.get('name')} uses {err} before it is "
                                     "defined") from None
        if op == "call_function":
            if not (isinstance(target, dict) and set(target) == {"fn"}):
                raise UnknownTargetError(f"load: malformed target {target!r}")
            target = _resolve_fn(target["fn"])
        elif op == "call_method":
            _check_method(target)
        elif op in ("call_module", "get_attr", "placeholder", "output"):
            if not isinstance(target, str):
                raise UnknownTargetError(f"load: malformed target {target!r}")
        else:
            raise UnknownTargetError(f"load: unsupported node kind {op!r}")
        nodes[e["name"]] = graph.create_node(op, target, args, kwargs, name=e["name"])
    gm = _scripted_class()(root, graph, program.get("name", "GraphModule"))
    gm.training = bool(program.get("training", False))  # submodules keep their own flags
    gm.__dict__["_ember_script_is_function"] = bool(program.get("is_function"))
    return gm
