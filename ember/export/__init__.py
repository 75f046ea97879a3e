"""``ember.export``: capture a module's forward as one graph, PyTorch's ``torch.export`` API.

``export(mod, args, kwargs=None, dynamic_shapes=None, strict=False)`` runs ``mod`` once under
the dispatch-level capture (``ember.export._capture``) and returns an ``ExportedProgram``:
the forward as an ``ember.fx`` graph over ember's core ops, with parameters and buffers lifted
to inputs (``graph_signature`` says which input is which), the ``state_dict`` it uses, and
``range_constraints`` of the dynamic dimensions. ``ep.module()`` is a callable ``nn.Module``.

How it specialises: Python control flow, shapes and Python numbers are fixed at export time
and checked (guards) on every call: a call with another shape raises a ``GuardError`` naming
the input and the dimension. Dimensions marked dynamic with ``Dim`` may vary within their
range: export captures the program at two sizes of each dynamic dimension, expresses the
integers that differ (reshape sizes, slice bounds) as functions of the dimension, and checks
that expression on a third capture; a program whose ops change with the size, or whose sizes
are not affine (or products) in the dimensions, is refused with a clear error. Reading a value
of a tensor into Python (``.item()``, ``if tensor:``) raises ``DataDependentError`` naming the
line. The module's state is left as it was (buffers and the random generator are restored).

``save(ep, f)`` / ``load(f)`` write and read one zip file (see ``ember.export._serialize``).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from enum import Enum

from .._tensor import Tensor
from . import _capture
from ._capture import DataDependentError, GuardError, core_ops
from ._pytree import tree_flatten, tree_map_spec, tree_unflatten

__all__ = ["export", "ExportedProgram", "ExportGraphSignature", "InputSpec", "OutputSpec",
           "InputKind", "OutputKind", "TensorArgument", "ConstantArgument", "Dim", "save",
           "load", "GuardError", "DataDependentError", "core_ops", "UserError", "aot_compile",
           "aot_load"]

INT_OO = math.inf


class UserError(RuntimeError):
    """An export that cannot be done as asked (PyTorch's ``torch._dynamo.exc.UserError``)."""


# ---------------------------------------------------------------------- Dim
class Dim:
    """A dynamic dimension: ``Dim("batch", min=2, max=64)``; inputs sharing a ``Dim`` must
    agree on its size. As in PyTorch, sizes 0 and 1 are not dynamic (the default min is 2)."""

    def __init__(self, name, *, min=None, max=None):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Dim: name must be an identifier, got {name!r}")
        self.__name__ = name
        self.min = 2 if min is None else int(min)
        self.max = INT_OO if max is None else int(max)
        if self.min < 0 or self.max < self.min:
            raise ValueError(f"Dim {name}: invalid range [{self.min}, {self.max}]")

    @property
    def name(self):
        return self.__name__

    def __repr__(self):
        return f"Dim({self.__name__!r}, min={self.min}, max={self.max})"


# ---------------------------------------------------------------------- signature
class InputKind(Enum):
    USER_INPUT = 1
    PARAMETER = 2
    BUFFER = 3
    CONSTANT_TENSOR = 4


class OutputKind(Enum):
    USER_OUTPUT = 1
    BUFFER_MUTATION = 2


@dataclass
class TensorArgument:
    name: str


@dataclass
class ConstantArgument:
    name: str
    value: object = None


@dataclass
class InputSpec:
    kind: InputKind
    arg: object
    target: str | None = None
    persistent: bool | None = None


@dataclass
class OutputSpec:
    kind: OutputKind
    arg: object
    target: str | None = None


@dataclass
class ExportGraphSignature:
    """Which graph inputs are user inputs, parameters or buffers; which outputs are users'.

    Buffers mutated by the program (BatchNorm's running statistics) are written in place by
    the graph's in-place nodes; as in PyTorch, each one's final value is also a
    BUFFER_MUTATION output (before the user outputs), listed in ``buffers_to_mutate``."""

    input_specs: list = field(default_factory=list)
    output_specs: list = field(default_factory=list)
    buffers_to_mutate: dict = field(default_factory=dict)

    def _names(self, kind):
        return [s.arg.name for s in self.input_specs if s.kind is kind]

    @property
    def user_inputs(self):
        return [s.arg.name if isinstance(s.arg, TensorArgument) else s.arg.value
                for s in self.input_specs if s.kind is InputKind.USER_INPUT]

    @property
    def parameters(self):
        return [s.target for s in self.input_specs if s.kind is InputKind.PARAMETER]

    @property
    def buffers(self):
        return [s.target for s in self.input_specs if s.kind is InputKind.BUFFER]

    @property
    def inputs_to_parameters(self):
        return {s.arg.name: s.target for s in self.input_specs if s.kind is InputKind.PARAMETER}

    @property
    def inputs_to_buffers(self):
        return {s.arg.name: s.target for s in self.input_specs if s.kind is InputKind.BUFFER}

    @property
    def user_outputs(self):
        return [s.arg.name if isinstance(s.arg, TensorArgument) else s.arg.value
                for s in self.output_specs if s.kind is OutputKind.USER_OUTPUT]

    def __str__(self):
        lines = ["# inputs"]
        lines += [f"{s.arg.name}: {s.kind.name}" + (f" target='{s.target}'" if s.target else "")
                  for s in self.input_specs]
        lines += ["", "# outputs"]
        lines += [f"{s.arg.name}: {s.kind.name}" for s in self.output_specs]
        return "\n".join(lines)


# ---------------------------------------------------------------------- the program
class ExportedProgram:
    """An exported program: ``graph_module``/``graph`` (lifted parameters and buffers come
    first among the placeholders), ``graph_signature``, ``state_dict``, ``constants``,
    ``range_constraints`` and ``module()``. Calling it directly raises, as PyTorch's does."""

    def __init__(self, graph, signature, state_dict, constants, range_constraints, guards,
                 in_spec, out_spec, dynamic=None):
        self._graph = graph
        self.graph_signature = signature
        self.state_dict = state_dict
        self.constants = constants
        self.range_constraints = range_constraints
        self._guards = guards
        self._in_spec = in_spec
        self._out_spec = out_spec
        self._dynamic = dynamic or {}
        self._gm = None

    @property
    def graph(self):
        return self._graph

    @property
    def graph_module(self):
        """An ``ember.fx.GraphModule`` over the graph (its ``code`` is readable Python)."""
        if self._gm is None:
            from ..fx import GraphModule
            self._gm = GraphModule(dict(self.constants), self._graph)
        return self._gm

    @property
    def example_inputs(self):
        return None

    def module(self):
        """A callable ``nn.Module`` running the program on this program's state (parameters
        and buffers by their original dotted names); every call checks the guards."""
        return _exported_module(self)

    def run_decompositions(self, decomp_table=None):
        """The program over the core op set, in PyTorch's functional form: capture already
        records only core ops, and buffers the program writes (BatchNorm's running
        statistics) become BUFFER_MUTATION outputs ahead of the user outputs."""
        return _with_buffer_mutation_outputs(self)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Unable to call ExportedProgram directly. You should use "
                           "`exported_program.module()` instead.")

    def _flat_inputs(self, args, kwargs):
        leaves, spec = tree_flatten((tuple(args), dict(kwargs)))
        if spec != self._in_spec:
            raise GuardError(f"exported program: the inputs' structure {_spec_str(spec)} differs "
                             f"from the exported one {_spec_str(self._in_spec)}")
        return leaves

    def _run(self, state, args, kwargs):
        leaves = self._flat_inputs(args, kwargs)
        self._guards.check(leaves, None, check_grad_mode=False)
        lifted = [state[s.target] for s in self.graph_signature.input_specs
                  if s.kind in (InputKind.PARAMETER, InputKind.BUFFER)]
        user = [v for v in leaves if isinstance(v, Tensor)]
        out = _capture.run_graph(self._graph, lifted + user, self.constants)
        n_mut = sum(s.kind is OutputKind.BUFFER_MUTATION for s in self.graph_signature.output_specs)
        return tree_unflatten(list(out)[n_mut:], self._out_spec)

    def __str__(self):
        return (f"ExportedProgram:\n{self.graph_module.print_readable(print_output=False)}\n"
                f"Graph signature:\n{self.graph_signature}\n"
                f"Range constraints: {self.range_constraints}\n")


def _spec_str(spec):
    return str(spec).replace("'leaf'", "*")


_MODULE_CLASS: list = []


def _exported_module(ep):
    """``ExportedProgram.module()``: the class is made on first use (nn loads lazily)."""
    if not _MODULE_CLASS:
        _MODULE_CLASS.append(_make_module_class())
    return _MODULE_CLASS[0](ep)


def _make_module_class():
    from ..nn.modules.module import Module
    from ..nn.parameter import Parameter

    class ExportedModule(Module):
        """An exported program as an nn.Module over its own parameters and buffers."""

        def __init__(self, ep):
            super().__init__()
            object.__setattr__(self, "_ep", ep)
            for spec in ep.graph_signature.input_specs:
                if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER):
                    continue
                *path, leaf = spec.target.split(".")
                owner = self
                for atom in path:
                    sub = owner._modules.get(atom)
                    if sub is None:
                        sub = Module()
                        owner.add_module(atom, sub)
                    owner = sub
                t = ep.state_dict[spec.target]
                if spec.kind is InputKind.PARAMETER:
                    if not isinstance(t, Parameter):
                        t = Parameter(t, requires_grad=t.requires_grad)
                    owner.register_parameter(leaf, t)
                else:
                    owner.register_buffer(leaf, t, persistent=spec.persistent is not False)

        def forward(self, *args, **kwargs):
            state = dict(self.named_parameters(remove_duplicate=False))
            state.update(self.named_buffers(remove_duplicate=False))
            return self._ep._run(state, args, kwargs)

    return ExportedModule


# ---------------------------------------------------------------------- export
def export(mod, args, kwargs=None, *, dynamic_shapes=None, strict=False,
           preserve_module_call_signature=()):
    """Capture ``mod(*args, **kwargs)`` as an ``ExportedProgram`` (see the module docstring).

    ``args`` is a tuple; inputs may be nested tuples, lists and dicts of Tensors and Python
    constants (constants are specialised: later calls must pass the same values).
    ``dynamic_shapes``: per input (a dict by argument name, or a tuple in argument order), a
    dict ``{dim index: Dim}`` or a tuple with a ``Dim`` or None per dimension."""
    from ..nn.modules.module import Module
    _capture.check_not_nested()
    if not isinstance(args, tuple):
        raise ValueError(f"Expecting `args` to be a tuple of example positional inputs, got "
                         f"{type(args).__name__}")
    kwargs = dict(kwargs or {})
    if not isinstance(mod, Module):
        raise ValueError(f"Expected `mod` to be an instance of `ember.nn.Module`, got "
                         f"{type(mod).__name__}.")
    leaves, in_spec = tree_flatten((args, kwargs))
    dyn = _dynamic_dims(mod, args, kwargs, dynamic_shapes, leaves)
    names = _input_names(mod, args, kwargs, leaves)

    from .. import _random
    buffers = dict(mod.named_buffers(remove_duplicate=False))
    snapshot = {k: b._data.copy() for k, b in buffers.items()}
    versions = {k: b._vc[0] if getattr(b, "_vc", None) else None for k, b in buffers.items()}
    rng = _random.default_generator.get_state()
    _capture._RECORD_LINES = True  # op nodes keep the user's source line (for exporters)
    try:
        # tensor factories are recorded as ``creation_op`` nodes: with dynamic dimensions their
        # sizes are fitted; either way the ones not written in place or returned fold back to
        # constants (a constant written in place would carry one call's writes into the next)
        base = _capture_once(mod, leaves, names, in_spec, record_creation=True)
        if dyn:
            base = _generalise(mod, base, leaves, names, in_spec, dyn)
        else:
            _fold_fixed_creations(base, _call_nodes(base.graph), ())
    finally:
        _capture._RECORD_LINES = False
        for k, b in buffers.items():  # export leaves the module as it found it
            b._data[...] = snapshot[k]
            if versions[k] is not None:
                b._vc[0] = versions[k]
        _random.default_generator.set_state(rng)
    return _program(mod, base, dyn, in_spec)


def _capture_once(mod, leaves, names, in_spec, record_creation=False):
    def unflatten(flat):
        a, k = tree_unflatten(flat, in_spec)
        return [a, k]
    return _capture.capture(mod, leaves, names, modules=_capture.module_table(mod),
                            lift_params=True, unflatten=unflatten, flatten_out=tree_flatten,
                            record_creation=record_creation)


def _input_names(mod, args, kwargs, leaves):
    """Placeholder names: the forward's parameter names (``x``, ``x_0`` for nested)."""
    try:
        params = list(inspect.signature(mod.forward).parameters)
    except (TypeError, ValueError):
        params = []
    names = []
    per_arg = []
    for i, a in enumerate(args):
        per_arg.append((params[i] if i < len(params) else f"arg{i}", a))
    per_arg += list(kwargs.items())
    for base, a in per_arg:
        sub, _ = tree_flatten(a)
        if len(sub) == 1 and not isinstance(a, (tuple, list, dict)):
            names.append(base)
        else:
            names += [f"{base}_{j}" for j in range(len(sub))]
    assert len(names) == len(leaves)
    return names


def _dynamic_dims(mod, args, kwargs, dynamic_shapes, leaves):
    """``{(flat input index, dim): Dim}`` from the user's ``dynamic_shapes``."""
    if dynamic_shapes is None:
        return {}
    if isinstance(dynamic_shapes, dict):
        try:
            bound = inspect.signature(mod.forward).bind(*args, **kwargs)
        except TypeError as e:
            raise UserError(f"dynamic_shapes: cannot match the inputs to forward: {e}") from None
        order = list(bound.arguments)
        unknown = set(dynamic_shapes) - set(order)
        if unknown:
            raise UserError(f"dynamic_shapes names {sorted(unknown)}, which are not arguments of "
                            f"forward ({order})")
        pos_names = order[:len(args)]
        spec_args = tuple(dynamic_shapes.get(n) for n in pos_names)
        spec_kwargs = {k: dynamic_shapes.get(k) for k in kwargs}
    else:
        spec_args = tuple(dynamic_shapes)[:len(args)]
        rest = tuple(dynamic_shapes)[len(args):]
        spec_kwargs = dict(zip(kwargs, rest))
    ids = {id(v): i for i, v in enumerate(leaves)}
    out = {}

    def one(value, spec, path):
        if spec is None:
            return
        if not isinstance(value, Tensor):
            raise UserError(f"dynamic_shapes: {path} is not a Tensor but has spec {spec!r}")
        items = spec.items() if isinstance(spec, dict) else enumerate(spec)
        for d, dim in items:
            if dim is None:
                continue
            if not isinstance(dim, Dim):
                raise UserError(f"dynamic_shapes: {path} dim {d}: expected a Dim, got {dim!r}")
            if not -value.ndim <= d < value.ndim:
                raise UserError(f"dynamic_shapes: {path} has {value.ndim} dims, no dim {d}")
            d %= value.ndim
            size = value.shape[d]
            if not dim.min <= size <= dim.max:
                raise UserError(f"dynamic_shapes: {path} dim {d} is {size}, outside the range "
                                f"[{dim.min}, {dim.max}] of {dim.name}")
            out[(ids[id(value)], d)] = dim
    tree_map_spec(tuple(args), spec_args, one, "args")
    tree_map_spec(kwargs, spec_kwargs, one, "kwargs")
    sizes = {}
    for (i, d), dim in out.items():
        s = leaves[i].shape[d]
        if sizes.setdefault(dim.name, s) != s:
            raise UserError(f"dynamic_shapes: inputs sharing {dim.name} have sizes "
                            f"{sizes[dim.name]} and {s}")
    return out


# -- dynamic dimensions: capture at other sizes and fit the integers that change
def _resized(leaves, dyn, sizes):
    """The example inputs with each dynamic dimension set to ``sizes[name]`` (existing values
    repeated cyclically, so that indices stay valid)."""
    import numpy as np

    from .._tensor import _make
    out = list(leaves)
    for (i, d), dim in dyn.items():
        t = out[i]
        n = sizes[dim.name]
        arr = np.take(t._data, np.arange(n) % t.shape[d], axis=d)
        nt = _make(np.ascontiguousarray(arr))
        if t.requires_grad:
            nt.requires_grad_(True)
        out[i] = nt
    return out


def _generalise(mod, base, leaves, names, in_spec, dyn, recapture=None):
    """Make ``base`` (captured at the example sizes) valid for every size of the dynamic
    dimensions ``dyn``. ``recapture(leaves)``: a capture at other sizes (default: of
    ``mod``; ``ember.compile(dynamic=True)`` passes its own)."""
    if recapture is None:
        def recapture(lv):
            return _capture_once(mod, lv, names, in_spec, record_creation=True)
    dims = {}
    for dim in dyn.values():
        dims[dim.name] = dim
    size0 = {name: leaves[i].shape[d] for (i, d), dim in dyn.items() for name in [dim.name]}

    def other(name, step):
        dim = dims[name]
        for cand in (size0[name] + step, size0[name] - step, size0[name] + 2 * step + 1):
            if dim.min <= cand <= dim.max and cand >= 2 and cand != size0[name]:
                return cand
        raise UserError(f"export: the range [{dim.min}, {dim.max}] of {name} is too narrow "
                        "to capture the program at a second size")

    base_nodes = _call_nodes(base.graph)
    variations = {}
    resized = set()  # indices of nodes whose output shape follows the dimensions
    for name in dims:
        sizes = dict(size0)
        sizes[name] = other(name, 1)
        g = recapture(_resized(leaves, dyn, sizes))
        variations[name] = (sizes[name], _diff(base_nodes, _call_nodes(g.graph), name))
        resized |= _shape_changes(base_nodes, _call_nodes(g.graph))
    # fit each differing integer
    sites = {}
    for name, (_, diffs) in variations.items():
        for key, (v0, v1) in diffs.items():
            sites.setdefault(key, {"v0": v0})[name] = v1
    formulas = {}
    for key, vals in sites.items():
        formulas[key] = _fit(vals, size0, {n: v[0] for n, v in variations.items()}, key,
                             base_nodes)
    # check on a third capture with every dimension changed at once
    sizes3 = {name: other(name, 2) for name in dims}
    g3 = recapture(_resized(leaves, dyn, sizes3))
    nodes3 = _call_nodes(g3.graph)
    if len(nodes3) != len(base_nodes):
        raise UserError(_structure_msg(list(dims)))
    for key, f in formulas.items():
        got = _get_at(nodes3[key[0]], key[1])
        want = _eval(f, sizes3)
        if want != got and not (isinstance(got, float) and math.isclose(want, got,
                                                                          rel_tol=1e-12)):
            raise UserError(f"export: an integer argument of {_where(base_nodes[key[0]])} "
                            f"depends on the dynamic dimensions {sorted(dims)} in a way ember "
                            "cannot express (affine in one dimension or a product of them)")
    for n3, n0 in zip(nodes3, base_nodes):
        _same_structure(n0, n3, list(dims), allow=formulas, index=base_nodes.index(n0))
    _same_constants(base, g3, base_nodes, nodes3, list(dims))
    resized |= _shape_changes(base_nodes, nodes3)
    _fold_fixed_creations(base, base_nodes, {key[0] for key in formulas} | resized)
    _substitute(base, base_nodes, formulas, dyn)
    base.guards.dynamic = {k: (dim.name, dim.min, dim.max) for k, dim in dyn.items()}
    return base


def _same_constants(cap0, cap1, nodes0, nodes1, dims):
    """Raise where a tensor constant made in forward (a resampling matrix, an index table)
    differs between captures at different sizes: frozen at the example's value it would be
    wrong, or fail, at every other size. Constants of one repeated value are left to the
    consumers that rebuild them at run time (ONNX's fills)."""
    import numpy as np
    for a, b in zip(nodes0, nodes1):
        if a.op != "get_attr" or not str(a.target).startswith("_tensor_constant"):
            continue
        x, y = cap0.attrs.get(a.target), cap1.attrs.get(b.target)
        x, y = getattr(x, "_data", None), getattr(y, "_data", None)
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            continue
        if x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            continue
        flat = x.reshape(-1)
        if flat.size and np.all(flat == flat[0]):
            continue
        users = ", ".join(_where(u) for u in a.users) or "no node"
        raise UserError(f"export: a constant made in forward (shape {x.shape}, used by "
                        f"{users}) changes with the dynamic dimensions {dims} (shape "
                        f"{y.shape} at other sizes); ember cannot compute it at run time: "
                        "export with static shapes for those dimensions")


def _call_nodes(graph):
    return [n for n in graph.nodes if n.op != "output"]


def _shape_changes(nodes0, nodes1):
    """Indices of the nodes whose output shape differs between two captures; each such node
    of ``nodes0`` records the dims that differ in ``meta["dynamic_dims"]`` (for consumers
    that need to know which sizes are known only at run time)."""
    out = set()
    for i, (a, b) in enumerate(zip(nodes0, nodes1)):
        ma, mb = a.meta.get("tensor_meta"), b.meta.get("tensor_meta")
        if ma and mb and ma[0] != mb[0]:
            out.add(i)
            if len(ma[0]) == len(mb[0]):
                a.meta.setdefault("dynamic_dims", set()).update(
                    d for d, (x, y) in enumerate(zip(ma[0], mb[0])) if x != y)
    return out


def _fold_fixed_creations(cap, nodes, varying):
    """Tensor factories (``creation_op`` nodes) whose arguments and output shape did not
    change with the dynamic dimensions become constants again, as in a static capture; the
    others stay nodes and are made with the sizes of each call. A factory whose tensor is
    written in place (directly or through a view) or returned stays a node too: a constant
    would carry one call's writes into the next, or hand the caller the graph's own constant."""
    if not cap.created:
        return
    graph = cap.graph
    from ..compiler._passes import mutated_aliases
    from ..fx import Node, map_arg
    kept = mutated_aliases(graph)
    map_arg(graph.output_node().args, lambda a: kept.add(a) if isinstance(a, Node) else None)
    varying = set(varying) | {i for i, n in enumerate(nodes) if n in kept}
    taken = {k for k in cap.attrs if k.startswith("_tensor_constant")}
    count = len(taken)
    for i, node in enumerate(nodes):
        if node.target is not _capture.creation_op or i in varying:
            continue
        # constants sit with the inputs, before the first op
        first = next(n for n in graph.nodes if n.op not in ("placeholder", "get_attr"))
        while f"_tensor_constant{count}" in taken:
            count += 1
        name = f"_tensor_constant{count}"
        taken.add(name)
        cap.attrs[name] = cap.created.pop(node)
        with graph.inserting_before(first):
            const = graph.get_attr(name)
        const.meta.update(node.meta)
        node.replace_all_uses_with(const)
        graph.erase_node(node)
        nodes[i] = const


def _where(node):
    from ._capture import target_name
    return f"node {node.name} ({target_name(node.target)})" if node.op == "call_function" \
        else f"node {node.name}"


def _structure_msg(dims):
    return (f"export: the program's ops change with the size of the dynamic dimensions {dims} "
            "(Python control flow or a specialisation depends on the size); export it with "
            "static shapes, or make the branch independent of the size")


def _paths(a, path=()):
    """(path, int) of every int leaf of an argument structure."""
    from ..fx import Node
    if isinstance(a, (tuple, list)):
        for i, x in enumerate(a):
            yield from _paths(x, path + (i,))
    elif isinstance(a, dict):
        for k, x in a.items():
            yield from _paths(x, path + (k,))
    elif isinstance(a, slice):
        for i, x in enumerate((a.start, a.stop, a.step)):
            yield from _paths(x, path + (("slice", i),))
    elif isinstance(a, Node):
        return
    else:
        yield path, a


def _get_at(node, path):
    a = (node.args, node.kwargs)
    for p in path:
        if isinstance(p, tuple) and p and p[0] == "slice":
            a = (a.start, a.stop, a.step)[p[1]]
        else:
            a = a[p]
    return a


def _diff(nodes0, nodes1, name):
    if len(nodes0) != len(nodes1):
        raise UserError(_structure_msg([name]))
    out = {}
    for i, (a, b) in enumerate(zip(nodes0, nodes1)):
        _same_structure(a, b, [name], allow=None, index=i)
        pa = list(_paths((a.args, a.kwargs)))
        pb = list(_paths((b.args, b.kwargs)))
        for (path, va), (_, vb) in zip(pa, pb):
            if va != vb and isinstance(va, (int, float)) and not isinstance(va, bool):
                out[(i, path)] = (va, vb)
    return out


def _same_structure(a, b, dims, allow, index):
    if a.op != b.op or a.target != b.target:
        raise UserError(_structure_msg(dims))
    pa = list(_paths((a.args, a.kwargs)))
    pb = list(_paths((b.args, b.kwargs)))
    if [p for p, _ in pa] != [p for p, _ in pb]:
        raise UserError(_structure_msg(dims))
    for (path, va), (_, vb) in zip(pa, pb):
        if va == vb or (isinstance(va, float) and va != va and vb != vb):
            continue
        if isinstance(va, (int, float)) and not isinstance(va, bool) and \
                (allow is None or (index, path) in allow):
            continue
        raise UserError(f"export: the argument {va!r} of {_where(a)} changes with the dynamic "
                        f"dimensions {dims} (it became {vb!r}) and is not an integer ember can "
                        "express in them; export with static shapes")
    if a.op == "get_attr":
        return
    ma, mb = a.meta.get("tensor_meta"), b.meta.get("tensor_meta")
    if ma and mb and ma[1] != mb[1]:
        raise UserError(_structure_msg(dims))


def _fit(vals, size0, size1, key, nodes):
    """A formula for an integer seen as ``vals['v0']`` at ``size0`` and ``vals[name]`` when
    only ``name`` changed to ``size1[name]``: ``("affine", name, a, b)`` for a*d + b, or
    ``("product", names, c)`` for c * prod(d)."""
    v0 = vals["v0"]
    changed = [n for n in vals if n != "v0"]
    if isinstance(v0, float):
        return _fit_float(v0, vals, changed, size0, size1, key, nodes)
    if len(changed) == 1:
        n = changed[0]
        num, den = vals[n] - v0, size1[n] - size0[n]
        if num % den == 0:
            a = num // den
            return ("affine", n, a, v0 - a * size0[n])
    prod0 = math.prod(size0[n] for n in changed)
    if v0 % prod0 == 0:
        c = v0 // prod0
        if all(vals[n] == c * prod0 // size0[n] * size1[n] for n in changed):
            return ("product", tuple(changed), c)
    raise UserError(f"export: an integer argument of {_where(nodes[key[0]])} ({v0}) depends on "
                    f"the dynamic dimensions {changed} in a way ember cannot express (affine in "
                    "one dimension or a product of them)")


# Python floats computed from one size: c * d (a size as a float), c * d / (d - 1) (an
# unbiased variance's factor) or c * d ** e for e in -1, -0.5 (means, scales)
_FLOAT_FORMS = {"lin": float, "ratio": lambda d: d / (d - 1), "inv": lambda d: 1.0 / d,
                "rsqrt": lambda d: 1.0 / math.sqrt(d)}


def _fit_float(v0, vals, changed, size0, size1, key, nodes):
    if len(changed) == 1:
        n = changed[0]
        for form, fn in _FLOAT_FORMS.items():
            c = v0 / fn(size0[n])
            if math.isclose(c, round(c), rel_tol=1e-12):
                c = float(round(c))  # an exact factor, so replays round as eager does
            if math.isclose(c * fn(size1[n]), vals[n], rel_tol=1e-12):
                return ("float", form, n, c)
    raise UserError(f"export: a float argument of {_where(nodes[key[0]])} ({v0}) depends on the "
                    f"dynamic dimensions {changed} in a way ember cannot express; export with "
                    "static shapes")


def _eval(f, sizes):
    if f[0] == "affine":
        return f[2] * sizes[f[1]] + f[3]
    if f[0] == "float":
        return f[3] * _FLOAT_FORMS[f[1]](sizes[f[2]])
    return f[2] * math.prod(sizes[n] for n in f[1])


def _substitute(cap, nodes, formulas, dyn):
    """Rewrite ``cap.graph``: each fitted integer becomes a node computing it from the
    inputs' sizes (``sym_size`` nodes, then ``operator`` arithmetic)."""
    import operator
    graph = cap.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    user = placeholders[len(cap.param_names):]
    where = {}
    for (i, d), dim in dyn.items():
        where.setdefault(dim.name, (user[i], d))
    size_nodes = {}
    anchor = [placeholders[-1]]

    def size(name):  # one sym_size node per dimension used, right after the inputs
        if name not in size_nodes:
            with graph.inserting_after(anchor[0]):
                size_nodes[name] = graph.call_function(_capture.sym_size, where[name])
            anchor[0] = size_nodes[name]
        return size_nodes[name]

    def build(f):
        if f[0] == "float":
            _, form, n, c = f
            d = size(n)
            if form == "lin":
                e = graph.call_function(operator.mul, (d, 1.0))
            elif form == "ratio":
                e = graph.call_function(operator.truediv,
                                        (d, graph.call_function(operator.sub, (d, 1))))
            elif form == "inv":
                e = graph.call_function(operator.truediv, (1.0, d))
            else:
                e = graph.call_function(operator.pow, (d, -0.5))
            return graph.call_function(operator.mul, (e, c)) if c != 1.0 else e
        if f[0] == "affine":
            _, n, a, b = f
            e = size(n)
            if a != 1:
                e = graph.call_function(operator.mul, (e, a))
            if b:
                e = graph.call_function(operator.add, (e, b))
            return e
        _, names, c = f
        e = size(names[0])
        for n in names[1:]:
            e = graph.call_function(operator.mul, (e, size(n)))
        if c != 1:
            e = graph.call_function(operator.mul, (e, c))
        return e

    by_node = {}
    for (idx, path), f in formulas.items():
        by_node.setdefault(idx, []).append((path, f))
    for idx, items in by_node.items():
        node = nodes[idx]
        args, kwargs = node.args, node.kwargs
        with graph.inserting_before(node):
            for path, f in items:
                args, kwargs = _set_at((args, kwargs), path, build(f))
        node.args, node.kwargs = args, kwargs


def _set_at(a, path, value):
    if not path:
        return value
    p, rest = path[0], path[1:]
    if isinstance(p, tuple) and p and p[0] == "slice":
        parts = [a.start, a.stop, a.step]
        parts[p[1]] = _set_at(parts[p[1]], rest, value)
        return slice(*parts)
    if isinstance(a, dict):
        out = dict(a)
        out[p] = _set_at(a[p], rest, value)
        return out
    out = list(a)
    out[p] = _set_at(a[p], rest, value)
    return tuple(out) if isinstance(a, tuple) else out


def _program(mod, cap, dyn, in_spec):
    params = dict(mod.named_parameters(remove_duplicate=False))
    buffers = dict(mod.named_buffers(remove_duplicate=False))
    non_persistent = set()
    for path, m in mod.named_modules():
        for b in getattr(m, "_non_persistent_buffers_set", ()):
            non_persistent.add(f"{path}.{b}" if path else b)
    specs = []
    state = {}
    for kind, name, node_name in cap.param_names:
        if kind == "p":
            specs.append(InputSpec(InputKind.PARAMETER, TensorArgument(node_name), name))
            state[name] = params[name]
        else:
            specs.append(InputSpec(InputKind.BUFFER, TensorArgument(node_name), name,
                                   persistent=name not in non_persistent))
            state[name] = buffers[name]
    placeholders = [n for n in cap.graph.nodes if n.op == "placeholder"]
    user_nodes = iter(placeholders[len(cap.param_names):])
    for v, name in zip(cap.guards.inputs, cap.input_names):
        if v[1] == "const":
            specs.append(InputSpec(InputKind.USER_INPUT, ConstantArgument(name, v[2])))
        else:
            specs.append(InputSpec(InputKind.USER_INPUT, TensorArgument(next(user_nodes).name)))
    _drop_constant_placeholders(cap)
    out_node = cap.graph.output_node()
    outs = []
    for i, o in enumerate(out_node.args[0]):
        if hasattr(o, "op"):
            outs.append(OutputSpec(OutputKind.USER_OUTPUT, TensorArgument(o.name)))
        else:
            outs.append(OutputSpec(OutputKind.USER_OUTPUT, ConstantArgument(f"out{i}", o)))
    mutated = {n.name: name for n, name in _buffer_writes(cap.graph).items()}
    sig = ExportGraphSignature(specs, outs, mutated)
    ranges = {}
    for (i, d), dim in dyn.items():
        ranges[dim.name] = (dim.min, dim.max)
    constants = {k: v for k, v in cap.attrs.items() if k.startswith("_tensor_constant")}
    return ExportedProgram(cap.graph, sig, state, constants, ranges, cap.guards, in_spec,
                           cap.out_spec, dyn)


def _buffer_writes(graph):
    """In-place nodes writing a lifted buffer (directly or through an earlier such node):
    ``{node: buffer name}``, in graph order."""
    writes = {}
    for n in graph.nodes:
        if n.op != "call_function" or getattr(n.target, "op", None) is None or not n.args \
                or not hasattr(n.args[0], "meta"):
            continue
        target = n.args[0]
        name = target.meta["spec"][1] if target.meta.get("spec", ("",))[0] == "b" else \
            writes.get(target)
        if name is not None:
            writes[n] = name
    return writes


def _with_buffer_mutation_outputs(ep):
    """``ep`` with each mutated buffer's final value as a BUFFER_MUTATION output ahead of the
    user outputs, in the buffers' order (PyTorch's core ATen IR from ``run_decompositions``).
    The in-place nodes still write the buffers; the outputs report what they wrote."""
    import copy
    sig = ep.graph_signature
    graph = copy.deepcopy(ep.graph)
    if any(s.kind is OutputKind.BUFFER_MUTATION for s in sig.output_specs):
        return ExportedProgram(graph, sig, ep.state_dict, ep.constants, ep.range_constraints,
                               ep._guards, ep._in_spec, ep._out_spec, ep._dynamic)
    last = {}
    for n, name in _buffer_writes(graph).items():
        last[name] = n
    order = [s.target for s in sig.input_specs if s.kind is InputKind.BUFFER]
    names = [b for b in order if b in last]
    out_node = graph.output_node()
    out_node.args = (tuple(last[b] for b in names) + tuple(out_node.args[0]),)
    outs = [OutputSpec(OutputKind.BUFFER_MUTATION, TensorArgument(last[b].name), b)
            for b in names] + list(sig.output_specs)
    new_sig = ExportGraphSignature(list(sig.input_specs), outs,
                                   {last[b].name: b for b in names})
    return ExportedProgram(graph, new_sig, ep.state_dict, ep.constants, ep.range_constraints,
                           ep._guards, ep._in_spec, ep._out_spec, ep._dynamic)


# the fill value of a uniform tensor factory, from its node's arguments
_FILLS = {"zeros": lambda a: 0, "ones": lambda a: 1, "empty": lambda a: 0,
          "zeros_like": lambda a: 0, "ones_like": lambda a: 1, "empty_like": lambda a: 0,
          "new_zeros": lambda a: 0, "new_ones": lambda a: 1, "new_empty": lambda a: 0,
          "full": lambda a: a[1], "full_like": lambda a: a[1], "new_full": lambda a: a[2]}


def lower_creations(ep):
    """A copy of ``ep`` whose tensor factories that fill one value (``zeros``, ``ones``,
    ``full``, ``empty``, their ``_like`` and ``new_`` forms: ``creation_op`` nodes left by a
    dynamic export) are written in core ops: a one-element constant ``Expand``-ed to the
    sizes the graph computes, then made ``Contiguous`` (so in-place writes stay valid).
    Consumers with no notion of ``creation_op`` (ONNX, the C library) take this form; other
    factories (``arange``, ``eye``, ...) stay nodes and such consumers refuse them."""
    import copy

    import numpy as np

    from .._tensor import _make
    from ..ops.shape import Contiguous, Expand
    if not any(n.target is _capture.creation_op for n in ep.graph.nodes):
        return ep
    graph = copy.deepcopy(ep.graph)
    constants = dict(ep.constants)
    count = len(constants)
    for node in list(graph.nodes):
        if node.target is not _capture.creation_op or node.args[0] not in _FILLS:
            continue
        name, args = node.args[0], node.args[1:]
        value = node.kwargs.get("fill_value")
        if value is None and len(args) > (2 if name == "new_full" else 1 if "full" in name
                                          else -1):
            value = _FILLS[name](args)
        shape, dtype = node.meta["tensor_meta"][:2]
        if name.endswith("_like"):
            sizes = None
        elif name.startswith("new_"):
            sizes = args[1:2] if name == "new_full" else args[1:]
        else:
            sizes = args[:1] if name == "full" else args
        if sizes is not None and len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if value is None or hasattr(value, "op") or "size" in node.kwargs:
            continue  # a fill computed in the graph, or sizes given by keyword
        while f"_tensor_constant{count}" in constants:
            count += 1
        const_name = f"_tensor_constant{count}"
        constants[const_name] = _make(np.full((1,) * len(shape), value, dtype=dtype.np))
        with graph.inserting_before(node):
            if sizes is None:  # the source tensor's sizes, read at run time
                sizes = tuple(graph.call_function(_capture.sym_size, (args[0], d))
                              for d in range(len(shape)))
            const = graph.get_attr(const_name)
            made = graph.call_function(Contiguous.apply, (
                graph.call_function(Expand.apply, (const, tuple(sizes))),))
        made.meta.update(node.meta)
        node.replace_all_uses_with(made)
        graph.erase_node(node)
    return ExportedProgram(graph, ep.graph_signature, ep.state_dict, constants,
                           ep.range_constraints, ep._guards, ep._in_spec, ep._out_spec,
                           ep._dynamic)


def _drop_constant_placeholders(cap):
    """Non-tensor inputs were specialised: their placeholders feed nothing and are removed."""
    placeholders = [n for n in cap.graph.nodes if n.op == "placeholder"]
    user = placeholders[len(cap.param_names):]
    for node, g in zip(user, cap.guards.inputs):
        if g[1] == "const" and not node.users:
            cap.graph.erase_node(node)


def save(ep, f, *, extra_files=None, opset_version=None, pickle_protocol=2):
    """Write ``ep`` to ``f`` (a path or a binary file); see ``ember.export._serialize``."""
    from ._serialize import save_program
    return save_program(ep, f, extra_files=extra_files)


def load(f, *, extra_files=None, expected_opset_version=None):
    """Read an ``ExportedProgram`` written by ``save``; never runs code from the file."""
    from ._serialize import load_program
    return load_program(f, extra_files=extra_files)


def aot_compile(exported_program, out_dir, *, blas=None, march_native=False):
    """Compile ``exported_program`` into a self-contained C library in ``out_dir`` (C source,
    ``ember_model.h``, a weights file, ``libember_model.so``); see ``ember.export._aot``."""
    from ._aot import aot_compile as _compile
    return _compile(exported_program, out_dir, blas=blas, march_native=march_native)


def aot_load(out_dir):
    """The library built by ``aot_compile`` in ``out_dir`` as a Python callable (ctypes)."""
    from ._aot import aot_load as _load
    return _load(out_dir)
