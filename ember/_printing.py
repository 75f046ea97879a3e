"""``repr``/``str`` of tensors in PyTorch's layout.

The rules (PyTorch's ``_tensor_str``): one formatter per tensor decides, from its nonzero
finite values, between integer mode (``1.``), fixed point with ``precision`` decimals and
scientific notation (used when max/min > 1000, max > 1e8 or min < 1e-4); every element is
right-aligned to the widest of those values. Tensors with more than ``threshold`` elements
print only ``edgeitems`` rows/columns at each end, around ``...``. Rows wrap at ``linewidth``.
"""

from __future__ import annotations

import math

import numpy as np


class _Options:
    precision = 4
    threshold = 1000
    edgeitems = 3
    linewidth = 80
    sci_mode = None


_PROFILES = {"default": (4, 1000, 3, 80), "short": (2, 1000, 2, 80),
             "full": (4, math.inf, 3, 80)}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None):
    """Set how tensors print (``ember.set_printoptions``); ``sci_mode=None`` means automatic."""
    if profile is not None:
        (_Options.precision, _Options.threshold, _Options.edgeitems,
         _Options.linewidth) = _PROFILES[profile]
    if precision is not None:
        _Options.precision = precision
    if threshold is not None:
        _Options.threshold = threshold
    if edgeitems is not None:
        _Options.edgeitems = edgeitems
    if linewidth is not None:
        _Options.linewidth = linewidth
    _Options.sci_mode = sci_mode


def get_printoptions() -> dict:
    """The current print options, as keyword arguments for ``set_printoptions``."""
    return {"precision": _Options.precision, "threshold": _Options.threshold,
            "edgeitems": _Options.edgeitems, "linewidth": _Options.linewidth,
            "sci_mode": _Options.sci_mode}


class _Formatter:
    """Formats the elements of one (real) array with a common width."""

    def __init__(self, values):
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not self.floating:
            if flat.size:
                # the widest integer is the largest or the most negative one
                self.max_width = max(len(str(flat.max().item())), len(str(flat.min().item())))
            return
        vals = flat[np.isfinite(flat) & (flat != 0)]
        if vals.size == 0:
            return
        mags = np.abs(vals).astype(np.float64)
        lo, hi = mags.min(), mags.max()
        self.int_mode = bool((np.ceil(vals) == vals).all())
        if _Options.sci_mode is None:
            self.sci_mode = bool(hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4)
        else:
            self.sci_mode = _Options.sci_mode
        p = _Options.precision
        if self.sci_mode:
            widths = (len(f"{v:.{p}e}") for v in vals.tolist())
        elif self.int_mode:
            widths = (len(f"{v:.0f}") + 1 for v in vals.tolist())
        else:
            widths = (len(f"{v:.{p}f}") for v in vals.tolist())
        self.max_width = max(widths)

    def format(self, value):
        if self.floating:
            p = _Options.precision
            if self.sci_mode:
                s = f"{value:{self.max_width}.{p}e}"
            elif self.int_mode:
                s = f"{value:.0f}"
                if math.isfinite(value):
                    s += "."
            else:
                s = f"{value:.{p}f}"
        else:
            s = f"{value}"
        return " " * (self.max_width - len(s)) + s


def _element(value, f_real, f_imag):
    if f_imag is None:
        return f_real.format(value)
    re = f_real.format(value.real)
    im = (f_imag.format(value.imag) + "j").lstrip()
    return re + im if im[0] in "+-" else re + "+" + im


def _vector(a, indent, summarize, f_real, f_imag):
    edge = _Options.edgeitems
    width = f_real.max_width + 2
    if f_imag is not None:
        width += f_imag.max_width + 1
    per_line = max(1, math.floor((_Options.linewidth - indent) / width))
    if summarize and not edge:
        items = ["..."]
    elif summarize and a.shape[0] > 2 * edge:
        items = ([_element(v, f_real, f_imag) for v in a[:edge].tolist()] + [" ..."]
                 + [_element(v, f_real, f_imag) for v in a[-edge:].tolist()])
    else:
        items = [_element(v, f_real, f_imag) for v in a.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(a, indent, summarize, f_real, f_imag):
    if a.ndim == 0:
        return _element(a.item(), f_real, f_imag)
    if a.ndim == 1:
        return _vector(a, indent, summarize, f_real, f_imag)
    edge, n = _Options.edgeitems, a.shape[0]
    if summarize and n > 2 * edge:
        rows = list(range(edge)) + [None] + list(range(n - edge, n))
    else:
        rows = range(n)
    parts = ["..." if i is None else _nested(a[i], indent + 1, summarize, f_real, f_imag)
             for i in rows]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def _summarized(a):
    """The elements a summarised print shows (they alone decide the format)."""
    edge = _Options.edgeitems
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        return np.concatenate([a[:edge], a[-edge:]]) if a.shape[0] > 2 * edge else a
    if not edge:
        return a[(slice(0, 0),) * a.ndim]
    rows = list(range(edge)) + list(range(a.shape[0] - edge, a.shape[0])) \
        if a.shape[0] > 2 * edge else range(a.shape[0])
    return np.stack([_summarized(a[i]) for i in rows])


def _body(a, indent):
    if a.size == 0:
        return "[]"
    summarize = a.size > _Options.threshold
    sample = _summarized(a) if summarize else a
    if a.dtype.kind == "c":
        return _nested(a, indent, summarize, _Formatter(sample.real), _Formatter(sample.imag))
    return _nested(a, indent, summarize, _Formatter(sample), None)


def _with_suffixes(text, suffixes, indent):
    out = [text]
    last = len(text) - text.rfind("\n") + 1
    for s in suffixes:
        if last + len(s) + 2 > _Options.linewidth:
            out.append(",\n" + " " * indent + s)
            last = indent + len(s)
        else:
            out.append(", " + s)
            last += len(s) + 2
    out.append(")")
    return "".join(out)


def tensor_repr(t, prefix=None):
    """PyTorch's ``repr`` of a tensor (with ``ember.`` dtypes)."""
    from . import _dtype as D
    if prefix is None:
        name = type(t).__name__
        prefix = "tensor(" if name in ("Tensor", "Parameter") else name + "("
    arr = t._data
    if not isinstance(arr, np.ndarray):  # a meta tensor: PyTorch prints its metadata only
        suffixes = [f"size={tuple(arr.shape)}"]
        if D._BY_NP[arr.dtype] is not D.get_default_dtype():
            suffixes.append(f"dtype={D._BY_NP[arr.dtype]!r}")
        if t.grad_fn is not None:
            suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
        elif t._rg:
            suffixes.append("requires_grad=True")
        return prefix + "..., device='meta', " + ", ".join(suffixes) + ")"
    if arr.dtype == D._BF16 or arr.dtype == np.float16:
        shown = arr.astype(np.float32)  # exact: both widen to float32 without rounding
    elif arr.dtype == D._C32:  # complex32 is stored as float16 pairs: show as complex64
        shown = D.cast_array(arr, np.dtype(np.complex64))
    else:
        shown = arr
    indent = len(prefix)
    dt = D._BY_NP[arr.dtype]
    default = D.get_default_dtype()
    suffixes = []
    if arr.size == 0:
        if arr.ndim != 1:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dt is not default:
            suffixes.append(f"dtype={dt!r}")
    else:
        if not _Options.edgeitems:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dt not in (default, D._default_complex(), D.int64, D.bool_):
            suffixes.append(f"dtype={dt!r}")
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t._rg:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + _body(shown, indent), suffixes, indent)
