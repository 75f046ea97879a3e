"""``ember.jit``: TorchScript's Python API over ember's graph capture.

``trace(module_or_fn, example_inputs)`` runs the module once under the dispatch-level capture
(``ember.export._capture``) and returns a ``ScriptModule`` (or ``ScriptFunction``) whose
``forward`` replays the recorded graph of ember ops: ``.graph`` (an ``ember.fx.Graph``),
``.code`` (readable Python), ``parameters()``/``state_dict()`` (the traced module's own, so
training the traced module trains the original), ``.save(f)``. Every call checks the
specialisation's guards (input shapes and dtypes, module training flags) and raises a
``GuardError`` rather than compute with a stale graph.

``script`` does not compile Python: it traces symbolically (``ember.fx.symbolic_trace``), so
it accepts the modules and functions whose forward has no data-dependent control flow, and
otherwise raises an error that says to use ``jit.trace`` with inputs that take the branch
you need, or ``ember.export``. Its result is a ``GraphModule`` with ``save``: the graph, the
ember layers it calls and their weights are written without pickle
(``ember.jit._script_archive``), and load where the model's source is absent.

Compatibility: ``save``/``load`` write ember's program archive (the format of
``ember.export.save``: a zip holding the graph as versioned JSON and the weights in
PyTorch's checkpoint format), not TorchScript's archive: files from ``torch.jit.save`` cannot
be loaded, and PyTorch cannot load ember's. Loading never runs code from the file and does
not need the model's Python source.
"""

from __future__ import annotations

import contextlib
import typing

from .._tensor import Tensor
from ..export import _capture
from ..export._capture import GuardError
from ..export._pytree import tree_flatten, tree_unflatten

__all__ = ["trace", "trace_module", "script", "save", "load", "freeze", "ignore", "unused",
           "is_scripting", "is_tracing", "Final", "annotate", "ScriptModule", "ScriptFunction",
           "TracingCheckError", "GuardError", "export", "optimize_for_inference",
           "Attribute", "fork", "wait"]

Final = typing.Final
_SCRIPTING = [0]


class TracingCheckError(RuntimeError):
    """``check_trace`` found the traced graph disagreeing with eager execution."""


def annotate(the_type, the_value):
    """TorchScript's type hint for a value: returns ``the_value`` unchanged."""
    return the_value


def Attribute(value, type=None):  # noqa: N802 (PyTorch's name)
    """TorchScript's attribute type hint: returns ``value``."""
    return value


def is_scripting():
    """True while ``jit.script`` traces a function (ember's script is a symbolic trace)."""
    return _SCRIPTING[0] > 0


def is_tracing():
    """True while ``jit.trace`` (or any ember capture) records a program."""
    return bool(_capture._ACTIVE)


def ignore(drop=False, **kwargs):
    """Leave a function as Python (tracing sees through it, so nothing changes); usable as
    ``@ignore`` or ``@ignore(drop=True)``."""
    if callable(drop):
        drop._ember_jit_ignore = True
        return drop

    def deco(fn):
        fn._ember_jit_ignore = True
        return fn
    return deco


def unused(fn):
    """Mark a method as unused by scripted code (it stays callable from Python)."""
    fn._ember_jit_unused = True
    return fn


def export(fn):
    """TorchScript's ``@torch.jit.export``: a no-op marker in ember."""
    return fn


def fork(func, *args, **kwargs):
    """Run ``func`` now and return a future-like object (``wait`` gives its result)."""
    return _Done(func(*args, **kwargs))


def wait(future):
    return future.value


class _Done:
    def __init__(self, value):
        self.value = value

    def wait(self):
        return self.value


# ---------------------------------------------------------------------- ScriptModule
def _module_base():
    from ..nn.modules.module import Module
    return Module


class _ScriptMixin:
    """What traced programs share: ``graph``, ``code``, guarded replay, ``save``."""

    @property
    def graph(self):
        return self._program.graph

    @property
    def code(self):
        from ..fx import GraphModule
        attrs = {n.target: None for n in self._program.graph.nodes if n.op == "get_attr"}
        gm = GraphModule(attrs, self._program.graph) if not attrs else None
        if gm is None:  # code generation only needs names: an empty stand-in per attribute
            return self._program.graph.python_code(root_module="self").src
        return gm.code

    @property
    def inlined_graph(self):
        return self.graph

    def _replay(self, args, kwargs, root):
        p = self._program
        leaves, spec = tree_flatten((tuple(args), dict(kwargs)))
        if spec != p.in_spec:
            raise GuardError(f"{self._name}: called with inputs structured as {spec}, traced "
                             f"with {p.in_spec}")
        p.guards.check(leaves, _capture.module_table(root) if root is not None else None,
                       check_grad_mode=False, check_requires_grad=False)
        attrs = dict(p.constants)
        if root is not None:
            attrs.update(root.named_parameters(remove_duplicate=False))
            attrs.update(root.named_buffers(remove_duplicate=False))
        out = _capture.run_graph(p.graph, leaves, attrs)
        return tree_unflatten(list(out), p.out_spec)

    def save(self, f, _extra_files=None):
        save(self, f, _extra_files=_extra_files)


class _Program:
    """A traced graph with its guards and input/output structure."""

    def __init__(self, graph, guards, in_spec, out_spec, constants):
        self.graph = graph
        self.guards = guards
        self.in_spec = in_spec
        self.out_spec = out_spec
        self.constants = constants


_CLASSES: dict = {}


def _script_module_class():
    if "ScriptModule" not in _CLASSES:
        Module = _module_base()

        class ScriptModule(_ScriptMixin, Module):
            """A traced module: the original's submodules, parameters and buffers, and a
            ``forward`` that replays the traced graph (guards checked on every call)."""

            def __init__(self, original=None, program=None, name="ScriptModule"):
                Module.__init__(self)
                object.__setattr__(self, "_program", program)
                object.__setattr__(self, "_name", name)
                if original is not None:
                    for k, child in original.named_children():
                        self.add_module(k, child)
                    for k, prm in original._parameters.items():
                        self.register_parameter(k, prm)
                    for k, b in original._buffers.items():
                        self.register_buffer(
                            k, b, persistent=k not in original._non_persistent_buffers_set)
                    self.training = original.training

            def forward(self, *args, **kwargs):
                return self._replay(args, kwargs, self)

            def __repr__(self):
                return f"RecursiveScriptModule(original_name={self._name})"

        _CLASSES["ScriptModule"] = ScriptModule
    return _CLASSES["ScriptModule"]


class ScriptFunction(_ScriptMixin):
    """A traced function: call it like the original; ``graph``, ``code``, ``save``."""

    def __init__(self, program, name):
        self._program = program
        self._name = name
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        return self._replay(args, kwargs, None)

    def parameters(self):
        return iter(())

    def state_dict(self):
        return {}


def __getattr__(name):
    if name == "ScriptModule":
        return _script_module_class()
    if name == "RecursiveScriptModule":
        return _script_module_class()
    raise AttributeError(f"module 'ember.jit' has no attribute {name!r}")


# ---------------------------------------------------------------------- trace
def trace(func, example_inputs=None, optimize=None, check_trace=True, check_inputs=None,
          check_tolerance=1e-5, strict=True, _force_outplace=False, _module_class=None,
          _compilation_unit=None, example_kwarg_inputs=None, _store_inputs=True):
    """Record ``func(*example_inputs)`` (a module or a function) as a ``ScriptModule`` or
    ``ScriptFunction`` over ember's core ops (see the module docstring).

    ``check_trace`` replays the trace on the example inputs (and ``check_inputs``) and
    compares with eager execution, with the random generator reset so that dropout draws
    the same masks; a mismatch raises ``TracingCheckError``."""
    from .. import _random
    _capture.check_not_nested()
    Module = _module_base()
    if example_inputs is None and example_kwarg_inputs is None:
        raise RuntimeError("jit.trace: example_inputs is required")
    if isinstance(example_inputs, Tensor):
        example_inputs = (example_inputs,)
    args = tuple(example_inputs or ())
    kwargs = dict(example_kwarg_inputs or {})
    if isinstance(func, _ScriptMixin):
        return func
    is_module = isinstance(func, Module)
    leaves, in_spec = tree_flatten((args, kwargs))
    names = [f"input_{i}" for i in range(len(leaves))]

    def unflatten(flat):
        a, k = tree_unflatten(flat, in_spec)
        return [a, k]
    rng = _random.default_generator.get_state()  # check_trace replays from here
    cap = _capture.capture(func, leaves, names,
                           modules=_capture.module_table(func) if is_module else None,
                           lift_params=False, unflatten=unflatten, flatten_out=tree_flatten)
    constants = {k: v for k, v in cap.attrs.items() if k.startswith("_")}
    program = _Program(cap.graph, cap.guards, in_spec, cap.out_spec, constants)
    name = type(func).__name__ if is_module else getattr(func, "__name__", "fn")
    if is_module:
        traced = _script_module_class()(func, program, name)
    else:
        traced = ScriptFunction(program, name)
    if check_trace:
        _check(func, traced, [args] + list(check_inputs or []), kwargs, rng, check_tolerance,
               is_module)
    return traced


def trace_module(mod, inputs, **kwargs):
    """``trace`` of ``mod.forward`` given ``{"forward": example_inputs}``."""
    if set(inputs) - {"forward"}:
        raise NotImplementedError("jit.trace_module: ember traces forward only")
    return trace(mod, inputs["forward"], **kwargs)


@contextlib.contextmanager
def _preserved_state(func, is_module):
    from .. import _random
    rng = _random.default_generator.get_state()
    bufs = {}
    if is_module:
        bufs = {k: (b, b._data.copy()) for k, b in func.named_buffers()}
    try:
        yield
    finally:
        for b, data in bufs.values():
            b._data[...] = data
        _random.default_generator.set_state(rng)


def _check(func, traced, input_sets, kwargs, rng, tol, is_module):
    import numpy as np

    from .. import _random
    from ..autograd.grad_mode import no_grad
    for i, inputs in enumerate(input_sets):
        if isinstance(inputs, Tensor):
            inputs = (inputs,)
        with _preserved_state(func, is_module), no_grad():
            _random.default_generator.set_state(rng)
            eager = func(*inputs, **kwargs)
            _random.default_generator.set_state(rng)
            replay = traced(*inputs, **kwargs)
        e, _ = tree_flatten(eager)
        r, _ = tree_flatten(replay)
        for a, b in zip(e, r):
            if isinstance(a, Tensor):
                if a.shape != b.shape or not np.allclose(a._data, b._data, rtol=tol, atol=tol,
                                                         equal_nan=True):
                    raise TracingCheckError(
                        f"jit.trace: the traced {traced._name} disagrees with eager execution on "
                        f"check input {i} (the program may depend on values the trace "
                        "specialised on); trace with inputs that take the same path")


# ---------------------------------------------------------------------- script
def script(obj, optimize=None, _frames_up=0, _rcb=None, example_inputs=None):
    """ember's ``script``: a symbolic trace (``ember.fx.symbolic_trace``), so the forward
    must not branch on tensor values. With ``example_inputs`` the result is ``trace``'s."""
    if isinstance(obj, _ScriptMixin) or (isinstance(obj, _module_base()) and
                                         isinstance(obj, _CLASSES.get("Scripted", ()))):
        return obj
    if example_inputs is not None:
        first = example_inputs[0] if isinstance(example_inputs, list) else example_inputs
        return trace(obj, first)
    if isinstance(obj, type):
        raise NotImplementedError("jit.script of a class is not supported by ember (it does "
                                  "not compile Python); script an instance instead")
    try:
        from ..fx import symbolic_trace
    except ImportError:
        raise NotImplementedError("jit.script needs ember.fx.symbolic_trace; use jit.trace with "
                                  "example inputs") from None
    _SCRIPTING[0] += 1
    try:
        traced = symbolic_trace(obj)
        gm = _scripted_class()(traced, traced.graph, type(traced).__name__)
        gm.__dict__["_ember_script_is_function"] = not isinstance(obj, _module_base())
    except Exception as e:  # the tracer's errors name the line; say what to do instead
        raise RuntimeError(
            f"jit.script: ember scripts by tracing symbolically, and this forward cannot be "
            f"traced that way: {e}\nData-dependent control flow cannot be scripted: use "
            "ember.jit.trace with example inputs that take the branch you need, or "
            "ember.export.export") from e
    finally:
        _SCRIPTING[0] -= 1
    return gm


def _scripted_class():
    """``jit.script``'s result type: an ``ember.fx.GraphModule`` (symbolic trace) that can
    be saved (``.save(f)``, ``jit.save``) and loaded without the model's source."""
    if "Scripted" not in _CLASSES:
        from ..fx import GraphModule

        class ScriptedGraphModule(GraphModule):
            """A scripted module or function: a symbolic-trace GraphModule with ``save``."""

            def save(self, f, _extra_files=None):
                save(self, f, _extra_files=_extra_files)

        _CLASSES["Scripted"] = ScriptedGraphModule
    return _CLASSES["Scripted"]


# ---------------------------------------------------------------------- save / load
def save(m, f, _extra_files=None):
    """Write a traced or scripted module or function to ``f`` (ember's program archive, not
    TorchScript's; see the module docstring)."""
    from ..export._serialize import encode_graph, encode_guards, write_archive
    if not isinstance(m, _ScriptMixin):
        from ..fx import GraphModule
        if isinstance(m, GraphModule):  # jit.script's result (or any symbolic trace)
            from ._script_archive import save_scripted
            return save_scripted(m, f, type(m).__name__,
                                 m.__dict__.get("_ember_script_is_function", False),
                                 _extra_files)
        raise TypeError(f"jit.save: expected a module or function from ember.jit.trace or "
                        f"ember.jit.script, got {type(m).__name__}")
    p = m._program
    state, params = {}, []
    if isinstance(m, _script_module_class()):
        used = {n.target for n in p.graph.nodes if n.op == "get_attr"}
        for k, v in m.named_parameters(remove_duplicate=False):
            if k in used:
                state[k] = v
                params.append(["p", k])
        for k, v in m.named_buffers(remove_duplicate=False):
            if k in used:
                state[k] = v
                params.append(["b", k])
    program = {"schema": "ember.program", "version": 1, "kind": "script_module",
               "name": m._name, "is_function": isinstance(m, ScriptFunction),
               "training": getattr(m, "training", False),
               "graph": encode_graph(p.graph), "in_spec": p.in_spec, "out_spec": p.out_spec,
               "guards": encode_guards(p.guards), "params": params}
    write_archive(f, program, state, p.constants, _extra_files)


def load(f, map_location=None, _extra_files=None):
    """Read a program written by ``jit.save``; needs no model source, runs no file code."""
    import io
    import os

    from ..export._serialize import decode_graph, decode_guards, read_archive
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            f = io.BytesIO(fh.read())
    program, state, constants = read_archive(f, _extra_files)
    if program.get("kind") == "scripted_module":
        from ._script_archive import build_scripted
        return build_scripted(program, state)
    if program.get("kind") != "script_module":
        raise RuntimeError(f"jit.load: the file holds a {program.get('kind')}, not a traced "
                           "module (use ember.export.load)")
    p = _Program(decode_graph(program["graph"]), decode_guards(program["guards"]),
                 program["in_spec"], program["out_spec"], constants)
    if program["is_function"]:
        return ScriptFunction(p, program["name"])
    from ..nn.parameter import Parameter
    Module = _module_base()
    m = _script_module_class()(None, p, program["name"])
    for kind, name in program["params"]:
        *path, leaf = name.split(".")
        owner = m
        for atom in path:
            sub = owner._modules.get(atom)
            if sub is None:
                sub = Module()
                owner.add_module(atom, sub)
            owner = sub
        t = state[name]
        if kind == "p":
            owner.register_parameter(leaf, t if isinstance(t, Parameter) else Parameter(t))
        else:
            owner.register_buffer(leaf, t)
    m.train(bool(program["training"]))
    return m


# ---------------------------------------------------------------------- freeze
def freeze(mod, preserved_attrs=None, optimize_numerics=True):
    """A copy of an eval-mode traced module whose parameters and buffers are constants of
    its graph (later changes to the original's weights do not reach it)."""
    if not isinstance(mod, _script_module_class()):
        raise RuntimeError("Freezing expects a ScriptModule as input. Please use "
                           "torch.jit.script or torch.jit.trace to script your 'nn.Module'.")
    if mod.training:
        raise RuntimeError("Freezing is currently only implemented for modules in eval mode. "
                           "Please call .eval() on your module before freezing.")
    p = mod._program
    consts = dict(p.constants)
    for k, v in list(mod.named_parameters()) + list(mod.named_buffers()):
        consts[k] = v.detach().clone()
    frozen = _script_module_class()(None, _Program(p.graph, p.guards, p.in_spec, p.out_spec,
                                                   consts), mod._name)
    frozen.eval()
    return frozen


def optimize_for_inference(mod, other_methods=None):
    """``freeze`` (ember applies no further graph rewrites yet)."""
    return freeze(mod.eval() if not isinstance(mod, _ScriptMixin) else mod)
