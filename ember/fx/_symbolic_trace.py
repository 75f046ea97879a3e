"""Symbolic tracing: ``Tracer``, ``symbolic_trace``, ``wrap`` and the ``PH`` placeholder.

``Tracer.trace(root)`` calls ``root.forward`` with a ``Proxy`` for each input and records
what happens to them. For the duration of one trace it diverts, and afterwards restores
(also on error):

* ``Module.__call__``: a submodule call becomes a ``call_module`` node when the module is a
  leaf (``is_leaf_module``: ember's own ``ember.nn`` layers, not ``Sequential``), and is
  traced through otherwise;
* ``Module.__getattr__``: reading a parameter gives a ``get_attr`` proxy;
* the public functions of ``ember``, ``ember.nn.functional``, ``ember.special``,
  ``ember.linalg``, ``ember.fft`` and ``math`` (and the same functions bound to other names
  in the traced forwards' globals): called with a Proxy among their arguments they record a
  ``call_function`` node; called on real values they just run;
* a mode on the dispatch path (``ember.autograd.graph._MODES``) that records any op reached
  with a Proxy argument (``tensor + proxy``) as a ``call_function`` of the op's ``apply``.

Nothing is patched outside a trace, so eager code pays nothing for tracing's existence.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import types
import warnings

from .graph import Graph
from .graph_module import GraphModule
from .node import has_side_effect
from .proxy import Proxy, TracerBase

__all__ = ["Tracer", "symbolic_trace", "wrap", "PH", "PHBase", "is_fx_tracing"]

_is_fx_tracing_flag = False

# Namespaces whose public functions a Proxy argument diverts during a trace.
_NAMESPACES = ("ember", "ember.nn.functional", "ember.special", "ember.linalg", "ember.fft")
# Functions that inspect rather than compute: wrapping them would turn a question about the
# program into a node.
_NEVER_WRAP = frozenset({
    "is_tensor", "is_storage", "is_grad_enabled", "is_inference_mode_enabled",
    "get_default_dtype", "set_default_dtype", "get_default_device", "set_default_device",
    "manual_seed", "seed", "initial_seed", "set_grad_enabled", "compile", "set_printoptions",
    "is_anomaly_enabled", "set_anomaly_enabled", "use_deterministic_algorithms",
    "are_deterministic_algorithms_enabled", "get_num_threads", "set_num_threads",
    "get_rng_state", "set_rng_state", "typename", "from_numpy",
})

# (globals dict, name) pairs registered by ``wrap``
_wrapped_fns_to_patch: dict = {}
_wrappers: dict = {}  # id(original) -> (original, wrapper)


def is_fx_tracing():
    """Whether a symbolic trace is running."""
    return _is_fx_tracing_flag


@has_side_effect
def _assert(condition, message=""):
    """The runtime check that a specialised ``concrete_args`` value still holds."""
    if not condition:
        raise AssertionError(message)


@has_side_effect
def _assert_is_none(value, msg):
    if value is not None:
        raise AssertionError(msg)


class PHBase:
    """The type of ``PH``: a ``concrete_args`` entry that stays an input (a placeholder)."""

    def __repr__(self):
        return "PH"


PH = PHBase()


def _find_proxy_in(a):
    if isinstance(a, Proxy):
        return a
    if isinstance(a, (list, tuple)):
        for b in a:
            p = _find_proxy_in(b)
            if p is not None:
                return p
    elif isinstance(a, dict):
        return _find_proxy_in(tuple(a.values()))
    elif isinstance(a, slice):
        return _find_proxy_in((a.start, a.stop, a.step))
    return None


def _find_proxy(args, kwargs):
    """The first Proxy in ``args``/``kwargs`` (nested in lists, tuples, dicts, slices)."""
    p = _find_proxy_in(args)
    return p if p is not None or not kwargs else _find_proxy_in(tuple(kwargs.values()))


def _diverting_wrapper(orig):
    """``orig``, but recording a ``call_function`` node when given a Proxy."""
    if hasattr(orig, "__fx_original__"):
        return orig  # already diverting (a trace inside a trace): never wrap twice
    hit = _wrappers.get(id(orig))
    if hit is not None and hit[0] is orig:
        return hit[1]

    @functools.wraps(orig)
    def wrapped(*args, **kwargs):
        p = _find_proxy(args, kwargs)
        if p is None:
            return orig(*args, **kwargs)
        return p.tracer.create_proxy("call_function", orig, args, kwargs)
    wrapped.__fx_original__ = orig
    _wrappers[id(orig)] = (orig, wrapped)
    return wrapped


_ABSENT = object()


class _Patcher:
    """Attribute and dict patches undone in reverse order on ``restore``."""

    def __init__(self):
        self._undo = []

    def setattr(self, obj, name, value):
        if isinstance(obj, type):
            # a class: keep the raw entry (a ``staticmethod`` stays one), or none at all
            own = obj.__dict__
            self._undo.append((obj, name, own[name] if name in own else _ABSENT))
        else:
            self._undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def setitem(self, d, name, value):
        missing = name not in d
        self._undo.append((d, name, None if missing else d[name], missing))
        d[name] = value

    def restore(self):
        while self._undo:
            entry = self._undo.pop()
            if len(entry) == 3:
                obj, name, value = entry
                if value is _ABSENT:
                    delattr(obj, name)
                else:
                    setattr(obj, name, value)
            else:
                d, name, value, missing = entry
                if missing:
                    d.pop(name, None)
                else:
                    d[name] = value


class _ProxyMode:
    """A dispatch mode that records an op reached with a Proxy argument (``tensor + proxy``,
    or an ember function the tracer did not divert) instead of running it."""

    def on_op(self, cls, args, kwargs, run):
        p = _find_proxy(args, kwargs)
        if p is None:
            return run()
        return p.tracer.create_proxy("call_function", cls.apply, args, kwargs)


class Tracer(TracerBase):
    """Turns a Module or function into a ``Graph`` by running it on Proxies.

    Override ``is_leaf_module`` to choose which submodules stay whole ``call_module`` nodes;
    ``autowrap_modules``' functions and ``autowrap_functions`` are recorded as
    ``call_function`` nodes when given a Proxy."""

    def __init__(self, autowrap_modules=(math,), autowrap_functions=(),
                 param_shapes_constant=False):
        super().__init__()
        self._autowrap_modules = tuple(autowrap_modules)
        self._autowrap_functions = tuple(autowrap_functions)
        self.param_shapes_constant = param_shapes_constant
        self.submodule_paths = None
        self.root = None
        self.graph = None
        self.module_stack = {}   # path -> (path, type) of the submodules being called
        self._tensor_names = {}  # id(tensor) -> the root attribute it is read from
        self._keep_alive = []    # tensor constants, so their ids stay theirs during a trace

    # ------------------------------------------------------------------ overridables
    def is_leaf_module(self, m, module_qualified_name):
        """PyTorch's rule: ember's own layers are leaves, containers and user modules are
        traced through."""
        from ..nn import Sequential
        return type(m).__module__.startswith("ember.nn") and not isinstance(m, Sequential)

    def path_of_module(self, mod):
        """The dotted name of ``mod`` inside the root module."""
        if self.submodule_paths is None:
            self.submodule_paths = {}
            for name, m in self.root.named_modules():
                self.submodule_paths.setdefault(id(m), name)
        path = self.submodule_paths.get(id(mod))
        if path is None:
            raise NameError(f"module {type(mod).__name__} is not installed as a submodule")
        return path

    def call_module(self, m, forward, args, kwargs):
        """A submodule call: a ``call_module`` node for a leaf, else traced through."""
        name = self.path_of_module(m)
        # every node made inside records the modules it sits in (``nn_module_stack``)
        stack = self.module_stack
        pushed = name not in stack
        if pushed:
            stack[name] = (name, type(m))
        try:
            if not self.is_leaf_module(m, name):
                return forward(*args, **kwargs)
            return self.create_proxy("call_module", name, args, kwargs)
        finally:
            if pushed:
                del stack[name]

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        """A module attribute read during tracing: parameters of the root become
        ``get_attr`` proxies (one per parameter), anything else is returned as is."""
        from ..nn.parameter import Parameter
        if isinstance(attr_val, Parameter):
            for name, p in self.root.named_parameters():
                if attr_val is p:
                    if name not in parameter_proxy_cache:
                        factory = None
                        if self.param_shapes_constant:
                            from .proxy import ParameterProxy

                            def factory(node, name=name, p=p):
                                return ParameterProxy(self, node, name, p)
                        parameter_proxy_cache[name] = self.create_proxy(
                            "get_attr", name, (), {}, proxy_factory_fn=factory)
                    return parameter_proxy_cache[name]
        return attr_val

    def create_arg(self, a):
        """Like ``TracerBase.create_arg``; tensors become ``get_attr`` nodes: parameters and
        buffers of the root by their names, other tensors as ``_tensor_constant<i>``
        attributes added to the root."""
        from .._tensor import Tensor
        from ..nn import Module
        if isinstance(a, Tensor):
            name = self._tensor_names.get(id(a))
            if name is None:
                i = 0
                while hasattr(self.root, f"_tensor_constant{i}"):
                    i += 1
                name = f"_tensor_constant{i}"
                # a plain attribute, as torch.fx does: the GraphModule copies it as a buffer
                self.root.__dict__[name] = a
                self._tensor_names[id(a)] = name
                self._keep_alive.append(a)
            return self.create_node("get_attr", name, (), {})
        if isinstance(a, Module):
            try:
                return self.create_node("get_attr", self.path_of_module(a), (), {})
            except NameError:
                raise NotImplementedError(f"ember.fx: cannot use module {type(a).__name__} "
                                          "as an argument: it is not a submodule of the "
                                          "traced root") from None
        return super().create_arg(a)

    # ------------------------------------------------------------------ tracing
    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        """Placeholders for the root's signature (``self`` skipped), specialising
        ``concrete_args`` (whose ``PH`` entries stay placeholders)."""
        fn = inspect.unwrap(root_fn)
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if is_module:
            params = params[1:]
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if isinstance(concrete_args, tuple):
            if len(names) != len(concrete_args):
                raise RuntimeError(f"Tracing expected {len(names)} arguments but got "
                                   f"{len(concrete_args)} concrete arguments")
            concrete_args = dict(zip(names, concrete_args))
        concrete_args = dict(concrete_args or {})
        unknown = set(concrete_args) - {p.name for p in params}
        if unknown:
            raise TypeError(f"symbolic_trace: concrete_args names {sorted(unknown)} that are "
                            f"not arguments of {getattr(fn, '__qualname__', fn)}")
        args, kwargs = [], {}
        varargs = star = dstar = None
        for p in params:
            if p.kind is p.VAR_POSITIONAL:
                # in signature order, so that the generated ``forward(self, x, *rest, k=1)``
                # keeps ``k`` keyword-only
                varargs = p
                if p.name in concrete_args:
                    raise NotImplementedError("symbolic_trace: concrete_args for *args")
                star = self.create_proxy("placeholder", "*" + p.name, (), {})
                continue
            if p.kind is p.VAR_KEYWORD:
                # one placeholder whose Proxy the function receives as the dict itself
                # (``kw["y"]`` is a getitem node), as torch.fx does
                if p.name in concrete_args:
                    raise NotImplementedError("symbolic_trace: concrete_args for **kwargs")
                dstar = self.create_proxy("placeholder", "**" + p.name, (), {})
                continue
            value = self._proxy_placeholder(p, concrete_args)
            if p.kind is p.KEYWORD_ONLY:
                kwargs[p.name] = value
            else:
                args.append(value)
        if varargs is None and dstar is None:
            return root_fn, args, kwargs
        # ``*rest`` (``**kw``) becomes one placeholder whose Proxy the function receives as
        # ``rest`` (``kw``) itself (``rest[0]`` is a getitem node), through a copy of the
        # function whose code takes every argument positionally: the code object lists
        # positional, then keyword-only, then the ``*`` name, then the ``**`` name, so that
        # is the order to pass them in
        if fn is not root_fn:
            raise NotImplementedError("symbolic_trace: a decorated forward taking *args or "
                                      "**kwargs")
        co = fn.__code__
        extra = [v for v in (star, dstar) if v is not None]
        code = co.replace(co_argcount=co.co_argcount + co.co_kwonlyargcount + len(extra),
                          co_kwonlyargcount=0,
                          co_flags=co.co_flags & ~(inspect.CO_VARARGS | inspect.CO_VARKEYWORDS))
        positional = types.FunctionType(code, fn.__globals__, fn.__name__, None,
                                        fn.__closure__)
        return positional, args + list(kwargs.values()) + extra, {}

    def _proxy_placeholder(self, p, concrete_args):
        default = () if p.default is inspect.Parameter.empty else (p.default,)
        if p.name not in concrete_args:
            return self.create_proxy("placeholder", p.name, default, {},
                                     type_expr=p.annotation if p.annotation
                                     is not inspect.Parameter.empty else None)
        counter = [0]

        def specialise(x):
            counter[0] += 1
            out = self.create_proxy("placeholder", f"{p.name}_{counter[0]}", default, {})
            if isinstance(x, PHBase):
                return out
            if x is None:
                self.create_proxy("call_function", _assert_is_none,
                                  (out, f"{p.name} has been specialized to have value None "
                                   "but got another value"), {})
            elif type(x) in (bool, int, float, str):
                self.create_proxy("call_function", _assert,
                                  (out == x, f"{p.name} has been specialized to have value "
                                   f"{x} but got another value"), {})
            else:
                warnings.warn(f"Was not able to add assertion to guarantee correct input "
                              f"{p.name} to specialized function. It is up to the user to "
                              "make sure that your inputs match the inputs you specialized "
                              "the function with.", stacklevel=4)
            return x

        from .node import map_aggregate
        return map_aggregate(concrete_args[p.name], specialise)

    def trace(self, root, concrete_args=None):
        """Trace ``root`` (a Module or a function) and return its ``Graph``."""
        global _is_fx_tracing_flag
        from ..nn import Module
        if isinstance(root, Module):
            self.root = root
            fn = type(root).forward
            is_module = True
        elif callable(root):
            self.root = Module()
            fn = root
            is_module = False
        else:
            raise TypeError(f"symbolic_trace: expected a Module or a function, got "
                            f"{type(root).__name__}")
        self.graph = Graph(tracer_cls=type(self))
        self.submodule_paths = None
        self._tensor_names = {}
        self._keep_alive = []
        for name, t in list(self.root.named_parameters()) + list(self.root.named_buffers()):
            self._tensor_names.setdefault(id(t), name)

        patcher = _Patcher()
        was_tracing = _is_fx_tracing_flag
        _is_fx_tracing_flag = True
        mode = _ProxyMode()
        from ..autograd.graph import _MODES
        try:
            call, args, kwargs = self.create_args_for_root(fn, is_module, concrete_args)
            self._patch(patcher, fn)
            _MODES.append(mode)
            result = call(self.root, *args, **kwargs) if is_module else call(*args, **kwargs)
            self.create_node("output", "output", (self.create_arg(result),), {},
                             type_expr=getattr(fn, "__annotations__", {}).get("return"))
        finally:
            if mode in _MODES:
                _MODES.remove(mode)
            patcher.restore()
            _is_fx_tracing_flag = was_tracing
        self.submodule_paths = None
        return self.graph

    def _patch(self, patcher, root_fn):
        from .. import nn
        module_cls = nn.Module
        tracer = self
        orig_call = module_cls.__call__
        orig_getattr = module_cls.__getattr__
        cache: dict = {}

        def module_call(mod, *args, **kwargs):
            def forward(*a, **k):
                return orig_call(mod, *a, **k)
            return tracer.call_module(mod, forward, args, kwargs)

        def module_getattr(mod, name):
            return tracer.getattr(name, orig_getattr(mod, name), cache)

        patcher.setattr(module_cls, "__call__", module_call)
        patcher.setattr(module_cls, "__getattr__", module_getattr)

        wrapped_ids = {}
        modules = [sys.modules.get(ns) for ns in _NAMESPACES] + list(self._autowrap_modules)
        for mod in modules:
            if mod is None:
                continue
            for name, val in list(vars(mod).items()):
                if name.startswith("_") or name in _NEVER_WRAP:
                    continue
                if not isinstance(val, (types.FunctionType, types.BuiltinFunctionType)):
                    continue
                owner = getattr(val, "__module__", None) or ""
                if mod is not math and mod not in self._autowrap_modules and \
                        not owner.startswith("ember"):
                    continue
                w = _diverting_wrapper(val)
                wrapped_ids[id(val)] = w
                patcher.setattr(mod, name, w)
        for fn in self._autowrap_functions:
            wrapped_ids[id(fn)] = _diverting_wrapper(fn)
        self._patch_layer_internals(patcher, wrapped_ids)

        # the same functions imported under other names (``from ember import relu``) in the
        # globals and closures of the forwards this trace may run
        fns = [root_fn] + [type(m).forward for m in self.root.modules()]
        globs = {}
        for f in fns:
            g = getattr(f, "__globals__", None)
            if g is not None:
                globs[id(g)] = g
            for cell in getattr(f, "__closure__", None) or ():
                try:
                    w = wrapped_ids.get(id(cell.cell_contents))
                except ValueError:  # an empty cell
                    continue
                if w is not None:
                    patcher.setattr(cell, "cell_contents", w)
        for g in globs.values():
            for name, val in list(g.items()):
                w = wrapped_ids.get(id(val))
                if w is not None:
                    patcher.setitem(g, name, w)
        for (_, name), g in _wrapped_fns_to_patch.items():
            orig = g.get(name)
            if orig is None:
                import builtins
                orig = getattr(builtins, name, None)
            if orig is None:
                continue
            patcher.setitem(g, name, _diverting_wrapper(orig))


    @staticmethod
    def _patch_layer_internals(patcher, wrapped_ids):
        """ember's layers reach their kernels as ``K.conv2d`` (an ``ember.ops`` module) or
        as a class attribute (``_fn = staticmethod(F.silu)``): divert those too, so that
        tracing into a layer (a layer as the root, or a tracer with other leaves) records
        the functional call as torch.fx does."""
        for modname, mod in list(sys.modules.items()):
            if mod is None or not modname.startswith("ember.ops."):
                continue
            for name, val in list(vars(mod).items()):
                if name.startswith("_") or not isinstance(val, types.FunctionType) or \
                        not (val.__module__ or "").startswith("ember"):
                    continue
                w = wrapped_ids.get(id(val))
                if w is None:
                    w = wrapped_ids[id(val)] = _diverting_wrapper(val)
                patcher.setattr(mod, name, w)
        layers = sys.modules.get("ember.nn.modules")
        if layers is None:
            return
        classes = {id(c): c for c in vars(layers).values() if isinstance(c, type)}
        for cls in classes.values():
            for name, val in list(vars(cls).items()):
                if isinstance(val, staticmethod) and id(val.__func__) in wrapped_ids:
                    patcher.setattr(cls, name, staticmethod(wrapped_ids[id(val.__func__)]))


def symbolic_trace(root, concrete_args=None):
    """Trace ``root`` (a Module or a function) into a ``GraphModule``.

    ``concrete_args`` maps argument names to fixed values: the graph is specialised on them
    (with a runtime assertion for plain values); entries equal to ``PH`` stay inputs."""
    tracer = Tracer()
    graph = tracer.trace(root, concrete_args)
    from ..nn import Module
    name = type(root).__name__ if isinstance(root, Module) else root.__name__
    return GraphModule(tracer.root, graph, name)


def wrap(fn_or_name):
    """Record calls to a module-level function as ``call_function`` nodes instead of
    tracing through it. Call at module scope: ``ember.fx.wrap("my_fn")`` or as a decorator."""
    if callable(fn_or_name):
        name = fn_or_name.__name__
    elif isinstance(fn_or_name, str):
        name = fn_or_name
    else:
        raise TypeError(f"ember.fx.wrap: expected a function or its name, got "
                        f"{type(fn_or_name).__name__}")
    frame = inspect.currentframe().f_back
    if frame.f_code.co_name != "<module>":
        raise NotImplementedError("ember.fx.wrap must be called at the top level of a module")
    g = frame.f_globals
    _wrapped_fns_to_patch[(id(g), name)] = g
    return fn_or_name
