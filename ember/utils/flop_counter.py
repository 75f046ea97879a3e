"""``torch.utils.flop_counter``: count the floating-point operations of the matrix products and
convolutions a block of code runs, in total and per module.

``FlopCounterMode`` is a mode on ember's one dispatch path (``autograd.graph._MODES``): it sees
every op, forward and the backward ops the engine runs, and counts the ones PyTorch counts
(matmul family, linear, convolution and its two gradients) with PyTorch's formulas: a product
of an ``(m, k)`` and a ``(k, n)`` matrix is ``2 m k n`` flops. Module attribution uses global
module hooks: a module's count includes its submodules', keyed ``"Model.block.linear"``.

Limitation: the engine runs some backward formulas (linear's and matmul's) as array kernels
that do not pass through dispatch, so their backward flops are not counted; forward counts
and convolution gradients are PyTorch's."""

from __future__ import annotations

import math
from collections import defaultdict

__all__ = ["FlopCounterMode", "register_flop_formula"]

_FORMULAS: dict = {}


def register_flop_formula(targets, get_raw=False):
    """Register ``formula(*shapes_or_args) -> flops`` for op classes (decorator)."""
    def reg(fn):
        for t in (targets if isinstance(targets, (list, tuple)) else [targets]):
            _FORMULAS[t] = fn
        return fn
    return reg


def _shape(x):
    return tuple(getattr(x, "shape", ()))


def _matmul_flops(args, out):
    # out has the broadcast batch and (m, n); k is the contracted size of the first input
    a = _shape(args[0])
    k = a[-1] if a else 1
    return 2 * math.prod(_shape(out)) * k


def _linear_flops(args, out):
    return 2 * math.prod(_shape(out)) * _shape(args[0])[-1]


def _conv_flops(args, out):
    # every output element is a dot product over (in_channels / groups) * kernel elements
    w = _shape(args[1])
    return 2 * math.prod(_shape(out)) * math.prod(w[1:])


def _conv_input_grad_flops(args, out):
    g, w = _shape(args[0]), _shape(args[1])
    return 2 * math.prod(g) * math.prod(w[1:])


def _conv_weight_grad_flops(args, out):
    g = _shape(args[1])
    return 2 * math.prod(g) * math.prod(_shape(out)[1:])


def _install_builtin():
    from ..ops import conv, linalg, nn
    _FORMULAS.setdefault(linalg.Matmul, _matmul_flops)
    _FORMULAS.setdefault(nn.Linear, _linear_flops)
    _FORMULAS.setdefault(conv.ConvNd, _conv_flops)
    _FORMULAS.setdefault(conv.ConvInputGrad, _conv_input_grad_flops)
    _FORMULAS.setdefault(conv.ConvWeightGrad, _conv_weight_grad_flops)


_OP_NAMES = {"Matmul": "aten.mm", "Linear": "aten.addmm", "ConvNd": "aten.convolution",
             "ConvInputGrad": "aten.convolution_backward",
             "ConvWeightGrad": "aten.convolution_backward"}


class FlopCounterMode:
    """``with FlopCounterMode(display=False) as m: model(x).sum().backward()`` then
    ``m.get_total_flops()`` and ``m.get_flop_counts()`` (``{"Global": {op: n}, "Model.fc":
    {...}}``). ``mods`` is accepted for PyTorch's older signature and ignored."""

    def __init__(self, mods=None, depth=2, display=True, custom_mapping=None):
        self.depth = depth
        self.display = display
        self.flop_counts = defaultdict(lambda: defaultdict(int))
        self._stack = []
        self._names = {}
        self._handles = []
        for target, fn in (custom_mapping or {}).items():
            _FORMULAS[target] = fn

    # ---------------------------------------------------------------- module tracking
    def _name_of(self, module):
        name = self._names.get(id(module))
        if name is None:
            parent = self._stack[-1][0] if self._stack else None
            name = type(module).__name__
            if parent is not None:
                for child_name, child in parent.named_children():
                    if child is module:
                        name = self._names[id(parent)] + "." + child_name
                        break
            self._names[id(module)] = name
        return name

    def _pre(self, module, args):
        self._stack.append((module, self._name_of(module)))

    def _post(self, module, args, output):
        if self._stack and self._stack[-1][0] is module:
            self._stack.pop()

    # ---------------------------------------------------------------- the mode
    def on_op(self, cls, args, kwargs, run):
        out = run()
        fn = _FORMULAS.get(cls)
        if fn is not None:
            first = out[0] if isinstance(out, (tuple, list)) else out
            flops = int(fn(args, first))
            op = _OP_NAMES.get(cls.__name__, cls.__name__)
            self.flop_counts["Global"][op] += flops
            for _, name in self._stack:
                if name.count(".") < self.depth:
                    self.flop_counts[name][op] += flops
        return out

    def __enter__(self):
        from ..autograd import graph as _graph
        from ..nn.modules import module as _module
        _install_builtin()
        self.flop_counts.clear()
        self._handles = [_module.register_module_forward_pre_hook(self._pre),
                         _module.register_module_forward_hook(self._post)]
        _graph._MODES.append(self)
        return self

    def __exit__(self, *exc):
        from ..autograd import graph as _graph
        if self in _graph._MODES:
            _graph._MODES.remove(self)
        for h in self._handles:
            h.remove()
        self._handles = []
        self._stack.clear()
        if self.display:
            print(self.get_table(self.depth))
        return False

    # ---------------------------------------------------------------- results
    def get_total_flops(self):
        """All counted flops."""
        return sum(self.flop_counts["Global"].values())

    def get_flop_counts(self):
        """``{module name: {op: flops}}``, with ``"Global"`` for the total."""
        return {k: dict(v) for k, v in self.flop_counts.items()}

    def get_table(self, depth=None):
        """A text table of the counts per module and op."""
        lines = [f"{'Module':<40} {'FLOP':>16}"]
        for name, ops in self.flop_counts.items():
            if depth is not None and name != "Global" and name.count(".") >= depth:
                continue
            lines.append(f"{name:<40} {sum(ops.values()):>16,}")
            for op, n in ops.items():
                lines.append(f"  {op:<38} {n:>16,}")
        return "\n".join(lines)
