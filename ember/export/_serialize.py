"""Saving and loading captured programs: one zip file, no pickled code.

Layout of the file (a zip archive, written atomically):

* ``program.json``: the program, in schema ``ember.program`` version ``1``::

    {"schema": "ember.program", "version": 1, "kind": "exported_program" | "script_module",
     "graph": {"nodes": [{"name", "op", "target", "args", "kwargs", "meta"}, ...]},
     ...kind-specific fields: signature, input/output structure (pytree specs), guards,
     range constraints...}

  ``op`` is one of fx's opcodes (placeholder, get_attr, call_function, output). A
  call_function ``target`` is a qualified name: ``ember.ops.<family>.<Op>.apply`` (an op of
  the core set, ``ember.export.core_ops()``), ``ember.ops.<family>.<Op>.inplace`` (its in-place
  form), ``ember.export._capture.<helper>`` or ``operator.<name>``. Arguments are JSON with
  tags: ``{"node": name}``, ``{"float": hex}``, ``{"tuple": [...]}``, ``{"list": [...]}``,
  ``{"dict": [[key, value], ...]}``, ``{"slice": [start, stop, step]}``, ``{"ellipsis": 1}``,
  ``{"dtype": "float32"}``, ``{"np_dtype": "<f4"}``, ``{"device": "cpu"}``; ints, strings,
  booleans and null are themselves.
* ``weights.pt``: ``{"state": {name: tensor}, "constants": {name: tensor}}`` written by
  ``ember.save``, i.e. PyTorch's own checkpoint format, read back with ``weights_only=True``.
* ``extra/<name>``: the caller's ``extra_files``.

Loading never executes code from the file: targets are resolved against ember's own op
classes and helpers only (anything else is refused with ``UnknownTargetError``), and the
weights go through the restricted unpickler of ``ember.load``.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import re
import zipfile

import numpy as np

from ..autograd.graph import Function, Node as _OpNode
from . import _capture

SCHEMA = "ember.program"
VERSION = 1

__all__ = ["SCHEMA", "VERSION", "UnknownTargetError", "encode_graph", "decode_graph",
           "write_archive", "read_archive", "save_program", "load_program"]


class UnknownTargetError(RuntimeError):
    """A saved graph names a target outside ember's allowlist (a tampered or foreign file)."""


# ---------------------------------------------------------------------- arguments
def _enc(a, what):
    from .. import _dtype
    from .._device import device as _device
    from ..fx import Node
    if isinstance(a, Node):
        return {"node": a.name}
    if a is None or isinstance(a, (bool, str)):
        return a
    if isinstance(a, int):
        return int(a)
    if isinstance(a, float):
        return {"float": float.hex(a)}
    if isinstance(a, tuple):
        return {"tuple": [_enc(x, what) for x in a]}
    if isinstance(a, list):
        return {"list": [_enc(x, what) for x in a]}
    if isinstance(a, dict):
        return {"dict": [[_enc(k, what), _enc(v, what)] for k, v in a.items()]}
    if isinstance(a, slice):
        return {"slice": [_enc(a.start, what), _enc(a.stop, what), _enc(a.step, what)]}
    if a is Ellipsis:
        return {"ellipsis": 1}
    if isinstance(a, _dtype.dtype):
        return {"dtype": str(a).split(".")[-1]}
    if isinstance(a, np.dtype):
        return {"np_dtype": a.str if a.kind != "V" else a.name}
    if isinstance(a, type) and issubclass(a, np.generic):
        return {"np_dtype": np.dtype(a).str}
    if isinstance(a, _device):
        return {"device": str(a)}
    if isinstance(a, np.generic):
        return _enc(a.item(), what)
    raise TypeError(f"save: cannot serialise the argument {a!r} ({type(a).__name__}) of {what}")


def _dec(a, nodes):
    if a is None or isinstance(a, (bool, str, int)):
        return a
    if isinstance(a, float):
        return a
    if isinstance(a, dict) and len(a) == 1:
        (k, v), = a.items()
        if k == "node":
            return nodes[v]
        if k == "float":
            return float.fromhex(v)
        if k == "tuple":
            return tuple(_dec(x, nodes) for x in v)
        if k == "list":
            return [_dec(x, nodes) for x in v]
        if k == "dict":
            return {_dec(kk, nodes): _dec(vv, nodes) for kk, vv in v}
        if k == "slice":
            return slice(*(_dec(x, nodes) for x in v))
        if k == "ellipsis":
            return Ellipsis
        if k == "dtype":
            from .. import _dtype
            d = getattr(_dtype, v, None)
            if not isinstance(d, _dtype.dtype):
                raise UnknownTargetError(f"load: unknown dtype {v!r}")
            return d
        if k == "np_dtype":
            return np.dtype(v)
        if k == "device":
            from .._device import device as _device
            return _device(v)
    raise UnknownTargetError(f"load: malformed argument {a!r}")


# ---------------------------------------------------------------------- targets
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def resolve_target(name):
    """The callable a saved target name stands for, from ember's allowlist only."""
    if name.startswith("operator.") or name.startswith("ember.export._capture."):
        key = name if name.startswith("operator.") else name.rsplit(".", 1)[1]
        f = _capture._HELPERS.get(key)
        if f is None or f is _capture.optimizer_param_step:
            raise UnknownTargetError(f"load: the target {name!r} is not in ember's allowlist")
        return f
    if not _NAME.match(name) or not name.startswith("ember.") or \
            not (name.endswith(".apply") or name.endswith(".inplace")):
        raise UnknownTargetError(f"load: the target {name!r} is not an ember op; refusing to "
                                 "load it (the file may be corrupt or tampered with)")
    path, kind = name.rsplit(".", 1)
    parts = path.split(".")
    cls = None
    for cut in range(len(parts) - 1, 1, -1):  # the longest importable module prefix
        mod_name = ".".join(parts[:cut])
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        obj = mod
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        cls = obj
        break
    if not (isinstance(cls, type) and issubclass(cls, _OpNode)) or issubclass(cls, Function) \
            or not cls.__module__.startswith("ember."):
        raise UnknownTargetError(f"load: the target {name!r} is not an ember op; refusing to "
                                 "load it (the file may be corrupt or tampered with)")
    return cls.apply if kind == "apply" else _capture.inplace(cls)


# ---------------------------------------------------------------------- graphs
def encode_graph(graph):
    """The JSON form of an fx graph of captured ops (see the module docstring)."""
    nodes = []
    for n in graph.nodes:
        entry = {"name": n.name, "op": n.op}
        what = f"node {n.name}"
        if n.op == "call_function":
            name = _capture.target_name(n.target)
            try:
                if resolve_target(name) != n.target:
                    raise UnknownTargetError(name)
            except UnknownTargetError:
                raise TypeError(f"save: node {n.name} calls {name}, which is not an ember core "
                                "op (a custom autograd.Function or an optimizer step cannot be "
                                "saved); only graphs of ember ops can be saved") from None
            entry["target"] = name
        elif n.op in ("placeholder", "get_attr"):
            entry["target"] = n.target
        elif n.op != "output":
            raise TypeError(f"save: unsupported node kind {n.op}")
        entry["args"] = _enc(tuple(n.args), what)
        entry["kwargs"] = _enc(dict(n.kwargs), what)
        tm = n.meta.get("tensor_meta")
        if tm is not None:
            entry["meta"] = {"shape": list(tm[0]), "dtype": str(tm[1]).split(".")[-1]}
        nodes.append(entry)
    return {"nodes": nodes}


def decode_graph(data):
    """An ``ember.fx.Graph`` from ``encode_graph``'s JSON; targets checked by the allowlist."""
    from ..fx import Graph
    graph = Graph()
    nodes = {}
    for e in data["nodes"]:
        op = e["op"]
        try:
            args = _dec(e.get("args", {"tuple": []}), nodes)
            kwargs = _dec(e.get("kwargs", {"dict": []}), nodes)
        except KeyError as err:
            raise UnknownTargetError(f"load: node {e.get('name')} uses {err} before it is "
                                     "defined") from None
        if op == "placeholder":
            n = graph.placeholder(e["target"])
        elif op == "get_attr":
            n = graph.get_attr(e["target"])
        elif op == "call_function":
            n = graph.call_function(resolve_target(e["target"]), args, kwargs)
        elif op == "output":
            n = graph.output(args[0])
        else:
            raise UnknownTargetError(f"load: unsupported node kind {op!r}")
        if "meta" in e:
            from .. import _dtype
            m = e["meta"]
            dt = getattr(_dtype, m["dtype"], None)
            n.meta["tensor_meta"] = (tuple(m["shape"]), dt, None)
        nodes[e["name"]] = n
    return graph


# ---------------------------------------------------------------------- archives
def write_archive(f, program, state, constants, extra_files=None):
    """Write the zip (``program.json``, ``weights.pt``, ``extra/*``) to a path or file."""
    from ..serialization import _atomic_write, save
    buf = io.BytesIO()
    save({"state": dict(state), "constants": dict(constants)}, buf)
    text = json.dumps(program, indent=1, allow_nan=False)

    def write(fh):
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as z:
            z.writestr("program.json", text)
            z.writestr("weights.pt", buf.getvalue())
            for k, v in (extra_files or {}).items():
                z.writestr(f"extra/{k}", v if isinstance(v, bytes) else str(v).encode())
    if isinstance(f, (str, os.PathLike)):
        _atomic_write(os.fspath(f), write)
    else:
        write(f)


def read_archive(f, extra_files=None):
    """``(program dict, state, constants)`` from a file ``write_archive`` wrote."""
    from ..serialization import load
    try:
        z = zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        raise RuntimeError("load: not an ember program archive (not a zip file)") from None
    with z:
        names = set(z.namelist())
        if "program.json" not in names or "weights.pt" not in names:
            raise RuntimeError("load: not an ember program archive (program.json or weights.pt "
                               "missing)")
        program = json.loads(z.read("program.json"))
        if program.get("schema") != SCHEMA:
            raise RuntimeError(f"load: unknown schema {program.get('schema')!r}")
        if program.get("version") != VERSION:
            raise RuntimeError(f"load: schema version {program.get('version')} is not supported "
                               f"(this ember reads version {VERSION})")
        weights = load(io.BytesIO(z.read("weights.pt")), weights_only=True)
        if extra_files is not None:
            for k in list(extra_files):
                if f"extra/{k}" in names:
                    extra_files[k] = z.read(f"extra/{k}")
    return program, weights["state"], weights["constants"]


# ---------------------------------------------------------------------- exported programs
def _enc_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": float.hex(v)}
    return _enc(v, "a constant input")


def save_program(ep, f, extra_files=None):
    """``ember.export.save``: write an ``ExportedProgram`` (see the module docstring)."""
    from . import ExportedProgram
    if not isinstance(ep, ExportedProgram):
        raise TypeError(f"save: expected an ExportedProgram, got {type(ep).__name__}")
    sig = ep.graph_signature
    program = {
        "schema": SCHEMA, "version": VERSION, "kind": "exported_program",
        "graph": encode_graph(ep.graph),
        "inputs": [{"kind": s.kind.name, "name": s.arg.name, "target": s.target,
                    "persistent": s.persistent,
                    "value": _enc_value(getattr(s.arg, "value", None))}
                   for s in sig.input_specs],
        "outputs": [{"kind": s.kind.name, "name": s.arg.name, "target": s.target,
                     "value": _enc_value(getattr(s.arg, "value", None))}
                    for s in sig.output_specs],
        "buffers_to_mutate": sig.buffers_to_mutate,
        "in_spec": ep._in_spec, "out_spec": ep._out_spec,
        "guards": encode_guards(ep._guards),
        "range_constraints": {k: [lo, None if hi == math.inf else hi]
                              for k, (lo, hi) in ep.range_constraints.items()},
    }
    write_archive(f, program, ep.state_dict, ep.constants, extra_files)


def encode_guards(g):
    return {"inputs": [[x[0], "const", _enc_value(x[2])] if x[1] == "const"
                       else [x[0], list(x[1]), x[2], x[3]] for x in g.inputs],
            "training": g.training, "grad_enabled": g.grad_enabled,
            "dynamic": [[i, d, name, lo, None if hi == math.inf else hi]
                        for (i, d), (name, lo, hi) in g.dynamic.items()]}


def decode_guards(d):
    inputs = [(x[0], "const", _dec(x[2], {})) if x[1] == "const"
              else (x[0], tuple(x[1]), x[2], bool(x[3])) for x in d["inputs"]]
    dyn = {(i, dd): (name, lo, math.inf if hi is None else hi)
           for i, dd, name, lo, hi in d.get("dynamic", [])}
    return _capture.Guards(inputs, dict(d.get("training", {})), bool(d["grad_enabled"]), dyn)


def load_program(f, extra_files=None):
    """``ember.export.load``: an ``ExportedProgram`` from a file ``save_program`` wrote."""
    from . import (ConstantArgument, ExportedProgram, ExportGraphSignature, InputKind,
                   InputSpec, OutputKind, OutputSpec, TensorArgument)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return load_program(io.BytesIO(fh.read()), extra_files)
    program, state, constants = read_archive(f, extra_files)
    if program.get("kind") != "exported_program":
        raise RuntimeError(f"ember.export.load: the file holds a {program.get('kind')}, not an "
                           "exported program (use ember.jit.load)")
    graph = decode_graph(program["graph"])
    names = {n.name for n in graph.nodes}
    ins = []
    for e in program["inputs"]:
        kind = InputKind[e["kind"]]
        if e["name"] not in names and kind is not InputKind.USER_INPUT:
            raise RuntimeError(f"load: input {e['name']} is not in the graph")
        if kind is InputKind.USER_INPUT and e["value"] is not None and e["name"] not in names:
            arg = ConstantArgument(e["name"], _dec(e["value"], {}))
        else:
            arg = TensorArgument(e["name"])
        ins.append(InputSpec(kind, arg, e["target"], e["persistent"]))
    outs = [OutputSpec(OutputKind[e["kind"]],
                       TensorArgument(e["name"]) if e["name"] in names
                       else ConstantArgument(e["name"], _dec(e["value"], {})), e.get("target"))
            for e in program["outputs"]]
    sig = ExportGraphSignature(ins, outs, program.get("buffers_to_mutate", {}))
    guards = decode_guards(program["guards"])
    ranges = {k: (lo, math.inf if hi is None else hi)
              for k, (lo, hi) in program["range_constraints"].items()}
    in_spec = program["in_spec"]
    out_spec = program["out_spec"]
    from ..nn.parameter import Parameter
    for s in ins:
        if s.kind is InputKind.PARAMETER and not isinstance(state[s.target], Parameter):
            state[s.target] = Parameter(state[s.target])
    return ExportedProgram(graph, sig, state, constants, ranges, guards, in_spec, out_spec,
                           None)

