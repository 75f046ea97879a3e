"""``repr``/``str`` of tensors in PyTorch's layout: aligned columns, 4 significant decimals,
scientific notation when the range calls for it, and summarisation of large tensors."""

from __future__ import annotations

import math

import numpy as np


class _Options:
    precision = 4
    threshold = 1000
    edgeitems = 3
    linewidth = 80
    sci_mode = None


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None):
    """Set how tensors print (``ember.set_printoptions``), as PyTorch's."""
    if profile == "default":
        _Options.precision, _Options.threshold, _Options.edgeitems, _Options.linewidth = \
            4, 1000, 3, 80
    elif profile == "short":
        _Options.precision, _Options.threshold, _Options.edgeitems, _Options.linewidth = \
            2, 1000, 2, 80
    elif profile == "full":
        _Options.precision, _Options.threshold, _Options.edgeitems, _Options.linewidth = \
            4, math.inf, 3, 80
    if precision is not None:
        _Options.precision = precision
    if threshold is not None:
        _Options.threshold = threshold
    if edgeitems is not None:
        _Options.edgeitems = edgeitems
    if linewidth is not None:
        _Options.linewidth = linewidth
    _Options.sci_mode = sci_mode


class _Formatter:
    def __init__(self, values):
        self.kind = values.dtype.kind
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        p = _Options.precision
        if self.kind == "b":
            self.max_width = 5 if values.size and not values.all() else 4
            return
        if self.kind in "iu":
            for v in values.reshape(-1)[:1000000]:
                self.max_width = max(self.max_width, len(str(v)))
            return
        finite = values[np.isfinite(values)].astype(np.float64)
        if finite.size == 0:
            self.max_width = max((len(self._nonfinite(v)) for v in values.reshape(-1)),
                                 default=1)
            return
        absf = np.abs(finite)
        nz = absf[absf != 0]
        self.int_mode = bool((np.ceil(finite) == finite).all())
        if self.int_mode:
            if nz.size and nz.max() > 1e8:
                self.sci_mode = True
        elif nz.size:
            mx, mn = nz.max(), nz.min()
            if mx / mn > 1000.0 or mx > 1e8 or mn < 1e-4:
                self.sci_mode = True
        if _Options.sci_mode is not None:
            self.sci_mode = _Options.sci_mode
        widths = [len(self._fmt(v)) for v in finite[:100000]]
        widths += [len(self._nonfinite(v)) for v in values[~np.isfinite(values)][:10]]
        self.max_width = max(widths)
        del p

    @staticmethod
    def _nonfinite(v):
        if np.isnan(v):
            return "nan"
        return "inf" if v > 0 else "-inf"

    def _fmt(self, v):
        p = _Options.precision
        if self.sci_mode:
            return f"{v:.{p}e}"
        if self.int_mode:
            return f"{v:.0f}."
        return f"{v:.{p}f}"

    def format(self, v):
        if self.kind == "b":
            s = "True" if v else "False"
        elif self.kind in "iu":
            s = str(v)
        elif not np.isfinite(v):
            s = self._nonfinite(v)
        else:
            s = self._fmt(float(v))
        return " " * (self.max_width - len(s)) + s


def _summarize(a, edge):
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * edge:
        a = np.concatenate([a[:edge], a[-edge:]])
    return np.stack([_summarize(x, edge) for x in a]) if a.ndim > 1 else a


def _format_array(a, fmt, indent, summarize):
    edge = _Options.edgeitems
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        items = [fmt.format(x) for x in _items(a, edge, summarize)]
        per_line = max(1, (_Options.linewidth - indent) // (fmt.max_width + 2))
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    rows = []
    n = a.shape[0]
    idxs = list(range(n))
    if summarize and n > 2 * edge:
        idxs = list(range(edge)) + [None] + list(range(n - edge, n))
    for i in idxs:
        rows.append("..." if i is None else _format_array(a[i], fmt, indent + 1, summarize))
    sep = "," + "\n" * (a.ndim - 1) + " " * (indent + 1)
    return "[" + sep.join(rows) + "]"


def _items(a, edge, summarize):
    if summarize and a.shape[0] > 2 * edge:
        return list(a[:edge]) + ["..."] + list(a[-edge:])
    return list(a)


class _EllipsisFormatter:
    pass


def _format_values(arr, indent):
    summarize = arr.size > _Options.threshold
    sample = _summarize(arr, _Options.edgeitems) if summarize else arr
    if arr.dtype.kind == "c":
        real = _Formatter(sample.real)
        imag = _Formatter(sample.imag)
        cf = _ComplexFormatter(real, imag)
        return _format_array(arr, cf, indent, summarize)
    fmt = _Formatter(sample)
    return _format_array(arr, _SafeFmt(fmt), indent, summarize)


class _SafeFmt:
    def __init__(self, f):
        self.f = f
        self.max_width = f.max_width

    def format(self, v):
        if isinstance(v, str):
            return v
        return self.f.format(v)


class _ComplexFormatter:
    def __init__(self, real, imag):
        self.real, self.imag = real, imag
        self.max_width = real.max_width + imag.max_width + 2

    def format(self, v):
        if isinstance(v, str):
            return v
        r = self.real.format(v.real)
        i = self.imag.format(abs(v.imag)).lstrip()
        sign = "-" if v.imag < 0 or (v.imag == 0 and math.copysign(1, v.imag) < 0) else "+"
        return f"{r}{sign}{i}j"


_DEFAULT_INT = "int64"


def tensor_repr(t, prefix="tensor("):
    from . import _dtype as D
    arr = t._data
    if arr.dtype == D._BF16 or arr.dtype == np.float16:
        shown = arr.astype(np.float32)
    else:
        shown = arr
    indent = len(prefix)
    suffixes = []
    if arr.size == 0:
        body = "[]"
        if arr.ndim != 1:
            suffixes.append(f"size={tuple(arr.shape)}")
    else:
        body = _format_values(shown, indent)
    dt = D._BY_NP[arr.dtype]
    default_float = D.get_default_dtype()
    show_dtype = not (dt is default_float or dt is D.int64 or dt is D.bool_ or
                      (dt is D._default_complex()))
    if show_dtype:
        suffixes.append(f"dtype={dt!r}")
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t._rg:
        suffixes.append("requires_grad=True")
    out = prefix + body
    for s in suffixes:
        out += ", " + s
    return out + ")"
