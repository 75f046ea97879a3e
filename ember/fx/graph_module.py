"""``ember.fx.GraphModule``: a Module whose ``forward`` is generated from a ``Graph``.

It holds the graph and the submodules, parameters and buffers that the graph's ``get_attr``
and ``call_module`` nodes name (copied from the root module at the same dotted paths), and
regenerates readable Python (``code``) from the graph on ``recompile()``. Each GraphModule
gets a class of its own, so that setting the generated ``forward`` on the class leaves
other GraphModules alone (Python looks special methods up on the class).
"""

from __future__ import annotations

import copy
import itertools
import linecache

from ..nn import Module
from ..nn.parameter import Parameter
from .._tensor import Tensor
from .graph import Graph

__all__ = ["GraphModule"]

_source_ids = itertools.count()


def _copy_attr(from_module, to_module, target):
    """Copy ``from_module.<target>`` (dotted) to the same path under ``to_module``; the
    modules on the way become plain Modules holding only what the graph uses."""
    *prefix, field = target.split(".")
    for item in prefix:
        f = getattr(from_module, item)
        t = getattr(to_module, item, None)
        if t is f:
            return  # a parent is installed already, and with it everything below it
        if t is None:
            t = Module()
            setattr(to_module, item, t)
        from_module, to_module = f, t
    _set_leaf(to_module, field, getattr(from_module, field))


def _assign_attr(obj, to_module, target):
    *prefix, field = target.split(".")
    for item in prefix:
        t = getattr(to_module, item, None)
        if t is None:
            t = Module()
            setattr(to_module, item, t)
        to_module = t
    _set_leaf(to_module, field, obj)


def _set_leaf(module, field, value):
    # every tensor that is not a parameter becomes a buffer (tensor constants of a trace
    # included, as torch.fx does), so that ``.to()``/``.double()`` and state_dict see it
    if isinstance(value, Tensor) and not isinstance(value, Parameter):
        module.register_buffer(field, value)
    else:
        setattr(module, field, value)


class GraphModule(Module):
    """A Module generated from a ``Graph``: ``GraphModule(root, graph, class_name)``.

    ``root`` is the Module the graph was traced from (or a dict from dotted names to the
    objects ``get_attr``/``call_module`` nodes read)."""

    def __new__(cls, *args, **kwargs):
        # one class per instance: ``recompile`` sets ``forward`` on it
        base = cls
        while base.__dict__.get("_is_per_instance_class", False):
            base = base.__bases__[0]
        impl = type(base.__name__, (base,), {"_is_per_instance_class": True,
                                             "__module__": base.__module__})
        return super().__new__(impl)

    def __init__(self, root, graph, class_name="GraphModule"):
        super().__init__()
        type(self).__name__ = class_name
        type(self).__qualname__ = class_name
        if isinstance(root, Module):
            if hasattr(root, "training"):
                self.training = root.training
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    _copy_attr(root, self, node.target)
        elif isinstance(root, dict):
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    if node.target not in root:
                        raise RuntimeError(f"Node {node.name} referenced target {node.target} "
                                           "but that target was not provided in ``root``!")
                    _assign_attr(root[node.target], self, node.target)
        else:
            raise RuntimeError(f"Unsupported type {type(root).__name__} passed for root: "
                               "expected a Module or a dict")
        self.__dict__["meta"] = {}
        self.graph = graph

    # ------------------------------------------------------------------ graph and code
    @property
    def graph(self):
        """The graph; assigning a new one recompiles ``forward``."""
        return self.__dict__["_graph"]

    @graph.setter
    def graph(self, g):
        if not isinstance(g, Graph):
            raise TypeError(f"GraphModule.graph must be an ember.fx.Graph, got "
                            f"{type(g).__name__}")
        self.__dict__["_graph"] = g
        g.owning_module = self
        self.recompile()

    @property
    def code(self):
        """The Python source of ``forward``, generated from the graph."""
        if "_code" not in self.__dict__:
            raise RuntimeError("Code has not been generated! Please report a bug to ember")
        return self.__dict__["_code"]

    def recompile(self):
        """Regenerate ``code`` and ``forward`` from the (possibly edited) graph."""
        python_code = self.graph.python_code(root_module="self")
        src = python_code.src
        self.__dict__["_code"] = src
        # a file name of its own, with the source in linecache, so tracebacks through the
        # generated forward show its lines
        filename = f"<eval_with_key>.{next(_source_ids)}"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        globs = dict(python_code.globals)
        exec(compile(src, filename, "exec"), globs)
        type(self).forward = globs["forward"]
        return python_code

    def print_readable(self, print_output=True, include_stride=False, include_device=False,
                       colored=False):
        """The generated module as a class definition, values annotated with their shapes
        and dtypes where ``ShapeProp`` recorded them; printed unless ``print_output=False``."""
        name = type(self).__name__
        src = self.graph.python_code(verbose=True, include_stride=include_stride).src
        body = src.strip("\n").splitlines()
        out = f"class {name}(ember.nn.Module):\n" + "".join(f"    {ln}\n" for ln in body)
        for sub_name, sub in self.named_children():
            if isinstance(sub, GraphModule):
                inner = sub.print_readable(print_output=False)
                out += "\n" + "".join(f"    {ln}\n" for ln in inner.splitlines())
                out = out.replace(f"class {type(sub).__name__}(",
                                  f"class {sub_name}(", 1)
        if print_output:
            print(out)
        return out

    def __str__(self):
        return super().__repr__() + "\n\n\n" + self.code

    # ------------------------------------------------------------------ submodules
    def add_submodule(self, target, m):
        """Install module ``m`` at dotted path ``target``, creating plain Modules on the way;
        returns False when a name on the way is taken by something else."""
        *prefix, field = target.split(".")
        mod = self
        for item in prefix:
            sub = getattr(mod, item, None)
            if sub is None:
                sub = Module()
                mod.add_module(item, sub)
            if not isinstance(sub, Module):
                return False
            mod = sub
        mod.add_module(field, m)
        return True

    def delete_submodule(self, target):
        """Remove the submodule at dotted path ``target``; returns whether it existed."""
        *prefix, field = target.split(".")
        mod = self
        for item in prefix:
            mod = getattr(mod, item, None)
            if not isinstance(mod, Module):
                return False
        if field not in mod._modules:
            return False
        delattr(mod, field)
        return True

    def delete_all_unused_submodules(self):
        """Remove every submodule no ``call_module``/``get_attr`` node uses."""
        used = set()
        for node in self.graph.nodes:
            if node.op in ("call_module", "get_attr"):
                atoms = node.target.split(".")
                for i in range(1, len(atoms) + 1):
                    used.add(".".join(atoms[:i]))
                if node.op == "call_module":
                    sub = self.get_submodule(node.target)
                    used.update(f"{node.target}.{n}" for n, _ in sub.named_modules() if n)
        for name, _ in list(self.named_modules()):
            if name and name not in used:
                self.delete_submodule(name)

    # ------------------------------------------------------------------ copies
    def __reduce__(self):
        # the class is made per instance, so pickle the state and the graph, and rebuild
        state = {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_code")}
        return _rebuild_graph_module, (state, self.graph, type(self).__name__)

    def __deepcopy__(self, memo):
        holder = Module()
        state = {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_code")}
        holder.__dict__.update(copy.deepcopy(state, memo))
        res = GraphModule(holder, copy.deepcopy(self.graph, memo), type(self).__name__)
        memo[id(self)] = res
        res.training = self.training
        res.__dict__["meta"] = copy.deepcopy(self.__dict__.get("meta", {}), memo)
        return res

    def __copy__(self):
        res = GraphModule(self, self.graph, type(self).__name__)
        res.__dict__["meta"] = dict(self.__dict__.get("meta", {}))
        return res


def _rebuild_graph_module(state, graph, class_name):
    holder = Module()
    holder.__dict__.update(state)
    gm = GraphModule(holder, graph, class_name)
    gm.__dict__.update(state)
    return gm
