"""Code generation for captured graphs: fused elementwise regions as C (or NumPy) kernels.

``fuse(graph, ...)`` finds regions of elementwise nodes (add/sub/mul/div/neg/exp/log/tanh/
sigmoid/relu/pow, comparisons, where) whose values all have one shape (their inputs may
broadcast along rows or columns: a bias, a per-row mean, a scalar), whose intermediate
values are used only inside the region (or only by other elementwise ops: the region then
recomputes the value) and that need no autograd record, and replaces each
region by one ``call_function`` node whose target is a ``FusedKernel``: one loop over the
elements, emitted as C, compiled with the system C compiler and loaded through ctypes (or, when
no compiler exists, straight-line NumPy code). Everything else keeps its eager op.

Compiled libraries are cached on disk by ``ember._cc`` (``load_kernel``, re-exported here):
named by a hash of the source and the compiler flags, never fatal when the cache is
read-only or corrupt.
"""

from __future__ import annotations

import ctypes
import math
import subprocess
import sys

import numpy as np

from .. import _threads as _threads_mod
# the C compile-and-load helpers live in ember._cc (they also serve ember.ops and ember.ao);
# re-exported here, where the compiler and older importers find them
from .._cc import (  # noqa: F401
    _LOADED,
    _PRIVATE_DIR,
    CFLAGS,
    STATS,
    _build,
    _cdll,
    _key,
    _omp_env,
    _private_dir,
    c_compiler,
    cache_dir,
    cache_path,
    load_kernel,
    prebuild,
)
from .._tensor import Tensor, _make

__all__ = ["fuse", "FusedKernel", "c_compiler", "cache_dir", "CFLAGS"]

# A kernel runs on several threads only when its work (elements x estimated cost per element,
# see FusedKernel._cost) is at least this: waking a sleeping thread costs about 5-20 us, a
# simple binary op over 64K floats takes about 25 us on one core, and a parallel region for
# less work than this makes every step slower. Threads wait passively (see _omp_env).
PARALLEL_WORK = 1 << 19

# op class name -> (arity, C template, NumPy template); {f} is the float suffix of libm
_BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
_COMPARE = {"Gt": ">", "Lt": "<", "Ge": ">=", "Le": "<=", "Eq": "==", "Ne": "!="}
_UNARY_C = {"Neg": "(-{a})", "Exp": "{e}exp{f}({a})", "Log": "log{f}({a})",
            "Tanh": "{e}tanh{f}({a})", "Sigmoid": "(({t})1 / (({t})1 + {e}exp{f}(-{a})))",
            "Relu": "({a} < 0 ? ({t})0 : {a})", "Erf": "{e}erf{f}({a})"}
# GELU as eager's Gelu.forward computes it (same operations, same order); {t}: the C type
_GELU_C = {"none": "({a} * (({t})0.5 * (({t})1 + {e}erf{f}({a} * ({t}){h!r}))))",
           "tanh": "(({t})0.5 * {a} * (({t})1 + {e}tanh{f}(({t}){k!r} * ({a} + ({t})0.044715 "
                   "* {a} * {a} * {a}))))"}
_GELU_NP = {"none": "({a} * (0.5 * (1 + _erf({a} * {h!r}))))",
            "tanh": "(0.5 * {a} * (1 + _np.tanh({k!r} * ({a} + 0.044715 * {a} * {a} * {a}))))"}
_SQRT_HALF, _GELU_K = 1.0 / math.sqrt(2.0), math.sqrt(2.0 / math.pi)
# ops that eager runs slowly enough (a scalar special function) that one alone is a region
_ALONE = {"Erf", "Gelu"}

# float32 exp and tanh written branch-free so that the loop vectorises (libm's expf/tanhf
# are scalar calls, about 10x slower than NumPy's SIMD loops): Cody-Waite range reduction,
# a degree-6 polynomial (within 2 ulp), the power of two split in two factors so that
# subnormal results come out right; tanh from exp with a Taylor series near 0.
_PRELUDE_F32 = """
static inline float ember_expf(float x) {
    float c = x < -103.9f ? -103.9f : (x > 88.72f ? 88.72f : x);
    float n = floorf(c * 1.44269504088896341f + 0.5f);
    float r = c - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n1 = (int32_t)n / 2, n2 = (int32_t)n - (int32_t)n / 2;
    int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float y = p * s1 * s2;
    y = x > 88.72f ? INFINITY : y;
    y = x < -103.9f ? 0.0f : y;
    return x != x ? x : y;
}

static inline float ember_tanhf(float x) {
    float a = fabsf(x);
    float e = ember_expf(2.0f * (a < 20.0f ? a : 20.0f));
    float big = 1.0f - 2.0f / (e + 1.0f);
    float x2 = a * a;
    float small = a + a * x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f)));
    float t = a < 0.0625f ? small : big;
    t = copysignf(t, x);
    return x != x ? x : t;
}

/* erf: below 1 its Taylor series (erf(x)/x in x^2, 11 terms, under 1e-8 relative); above,
   Abramowitz & Stegun 7.1.26 (1.5e-7 absolute, erf >= 0.84 there): within 4 ulp, branch
   free so that the loop vectorises (libm's erff is a scalar call). */
static inline float ember_erff(float x) {
    float a = fabsf(x);
    float z = a * a;
    float s = 1.4807192816e-08f;
    s = s * z + -1.6365844691e-07f;
    s = s * z + 1.6462114366e-06f;
    s = s * z + -1.4925650358e-05f;
    s = s * z + 1.2055332982e-04f;
    s = s * z + -8.5483270235e-04f;
    s = s * z + 5.2239776254e-03f;
    s = s * z + -2.6866170645e-02f;
    s = s * z + 1.1283791671e-01f;
    s = s * z + -3.7612638903e-01f;
    s = s * z + 1.1283791671e+00f;
    s = s * a;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float q = 1.061405429f;
    q = q * t + -1.453152027f;
    q = q * t + 1.421413741f;
    q = q * t + -0.284496736f;
    q = q * t + 0.254829592f;
    float big = 1.0f - q * t * ember_expf(-(a < 10.0f ? z : 100.0f));
    float r = a < 1.0f ? s : big;
    r = copysignf(r, x);
    return x != x ? x : r;
}
"""
_UNARY_NP = {"Neg": "-{a}", "Exp": "_np.exp({a})", "Log": "_np.log({a})",
             "Tanh": "_np.tanh({a})", "Sigmoid": "1 / (1 + _np.exp(-{a}))",
             "Relu": "_np.maximum({a}, 0)", "Erf": "_erf({a})"}
_FLOATS = {"float32": ("float", "f"), "float64": ("double", "")}
_CTYPE = {"float32": "float", "float64": "double", "bool": "unsigned char"}


def _threads():
    """Threads a kernel may use: ``ember.get_num_threads()`` (``set_num_threads``,
    ``OMP_NUM_THREADS``, else all cores)."""
    return _threads_mod.get_num_threads()


# ---------------------------------------------------------------------- regions
def _op_name(n):
    cls = getattr(n.target, "__self__", None)
    if n.op != "call_function" or not isinstance(cls, type) or \
            getattr(n.target, "__name__", "") != "apply":
        return None
    name = cls.__name__
    if cls.__module__ == "ember.ops.nn" and name == "Gelu" and len(n.args) == 2 and \
            n.args[1] in _GELU_C:
        return name
    if not cls.__module__.startswith("ember.ops.elementwise"):
        return None
    if name in _BINARY or name in _COMPARE or name in _UNARY_C or name in ("Pow", "Where"):
        return name
    return None


def _meta(n):
    m = n.meta.get("tensor_meta") if hasattr(n, "meta") else None
    return m


def _is_contig(shape, stride):
    want = 1
    for s, st in zip(reversed(shape), reversed(stride)):
        if s != 1 and st != want:
            return False
        want *= s
    return True


def _scalar_ok(a):
    return type(a) in (int, float, bool) and (type(a) is not float or math.isfinite(a))


def _bcast_kind(leaf, shape):
    """How a leaf of shape ``leaf`` is read in a region of shape ``shape``, the region seen
    as rows of its last dimension: "full" (one value per element), "row" (one per column:
    a bias or a layer norm's weight), "col" (one per row: a per-row mean or scale, its last
    dimension 1), "scalar" (one value); None for another broadcast (not fused)."""
    if leaf == shape:
        return "full"
    if len(leaf) > len(shape):
        return None
    if all(d == 1 for d in leaf):
        return "scalar"
    trimmed = leaf
    while trimmed and trimmed[0] == 1:
        trimmed = trimmed[1:]
    if shape and trimmed == shape[-1:]:
        return "row"
    if len(leaf) == len(shape) and leaf[:-1] == shape[:-1] and leaf[-1] == 1:
        return "col"
    return None


def requires_grad_map(graph, placeholder_rg, attrs, grad_enabled):
    """Per node: whether its value would carry an autograd record at replay."""
    from ..export import _capture
    rg, mode, it = {}, grad_enabled, iter(placeholder_rg)
    for n in graph.nodes:
        if n.op == "placeholder":
            rg[n] = bool(next(it, False))
        elif n.op == "get_attr":
            v = attrs.get(n.target)
            rg[n] = bool(isinstance(v, Tensor) and v.requires_grad)
        elif n.op == "call_function":
            if n.target is _capture.set_grad_enabled:
                mode = bool(n.args[0])
                rg[n] = False
                continue
            # conservative: any input with a record, under grad mode, gives one
            rg[n] = mode and any(rg.get(a, True) for a in n.all_input_nodes)
    return rg


def fuse(graph, rg, backend="c", load=True):
    """Replace fusible elementwise regions of ``graph`` by ``FusedKernel`` calls (in place).
    ``rg``: ``requires_grad_map``; ``load=False``: the caller loads the kernels (after
    ``prebuild``). Returns the list of kernels made."""
    from ..fx import Node
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    impure = [0]
    for n in nodes:
        t = n.target if n.op == "call_function" else None
        bad = t is not None and _op_name(n) is None and getattr(t, "_fx_impure", False)
        impure.append(impure[-1] + bad)

    def eligible(n, shape):
        name = _op_name(n)
        m = _meta(n)
        if name is None or n.kwargs or m is None or rg.get(n, True):
            return False
        if tuple(m[0]) != shape or str(m[1]).replace("ember.", "") not in (
                "float32", "float64", "bool"):
            return False
        for a in n.args[:1] if name == "Gelu" else n.args:  # Gelu's 2nd: its approximation
            if isinstance(a, Node):
                am = _meta(a)
                # a value of another shape is read as a broadcast leaf (see _bcast_kind)
                if am is None or _bcast_kind(tuple(am[0]), shape) is None or \
                        str(am[1]).replace("ember.", "") not in ("float32", "float64", "bool"):
                    return False
            elif not _scalar_ok(a):
                return False
        return True

    assigned, kernels = set(), []
    for root in reversed(nodes):
        m = _meta(root)
        if root in assigned or m is None or str(m[1]).replace("ember.", "") not in _FLOATS:
            continue
        shape = tuple(m[0])
        if not eligible(root, shape):
            continue
        dtype = str(m[1]).replace("ember.", "")
        region, frontier = {root}, [root]
        while frontier:
            cur = frontier.pop()
            for a in cur.args:
                if not isinstance(a, Node) or a in region or a in assigned:
                    continue
                # a value used outside the region is still fused when every other user is
                # elementwise too: the region recomputes it (cheaper than reading it back)
                if not eligible(a, shape) or any(u not in region and not eligible(u, shape)
                                                 for u in a.users):
                    continue
                ad = str(_meta(a)[1]).replace("ember.", "")
                if ad not in (dtype, "bool"):
                    continue
                # an in-place write between the producer and the root would be reordered
                if impure[pos[root]] - impure[pos[a] + 1] > 0:
                    continue
                region.add(a)
                frontier.append(a)
        if len(region) < 2 and _op_name(root) not in _ALONE:
            continue
        order = sorted(region, key=pos.__getitem__)
        kernel = FusedKernel(order, root, shape, dtype, backend, load)
        with graph.inserting_before(root):
            new = graph.call_function(kernel, tuple(kernel.leaves))
        new.meta.update(root.meta)
        root.replace_all_uses_with(new)
        for n in reversed(order):
            if not n.users:  # a recomputed value other nodes still read stays
                graph.erase_node(n)
                assigned.add(n)
        kernels.append(kernel)
    return kernels


class FusedKernel:
    """One fused elementwise region: ``kernel(*leaf_tensors)`` returns the region's value."""

    def __init__(self, order, root, shape, dtype, backend, load=True):
        from ..fx import Node
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.numel = int(np.prod(shape)) if shape else 1
        self.leaves, names, self.ops = [], {}, []
        region = set(order)
        for n in order:
            for a in n.args:
                if isinstance(a, Node) and a not in region and a not in names:
                    names[a] = f"in{len(self.leaves)}"
                    self.leaves.append(a)
        self.leaf_dtypes = [np.dtype(str(_meta(a)[1]).replace("ember.", ""))
                            for a in self.leaves]
        self.leaf_shapes = [tuple(_meta(a)[0]) for a in self.leaves]
        self.leaf_kinds = [_bcast_kind(ls, self.shape) for ls in self.leaf_shapes]
        # a region that reads a broadcast leaf loops over rows and columns (see _emit_c)
        self.broadcast = any(k != "full" for k in self.leaf_kinds)
        self.full_leaf = next((i for i, k in enumerate(self.leaf_kinds) if k == "full"), None)
        for i, n in enumerate(order):
            names[n] = f"v{i}"
        self._names, self._order, self._root = names, order, root
        self.parallel_min = max(1, PARALLEL_WORK // self._cost())
        self.c_source = self._emit_c()
        self.py_source = self._emit_numpy()
        self.__name__ = f"fused_{'_'.join(_op_name(n).lower() for n in order)}"[:80]
        self._c = None
        self.backend = backend
        if load:
            self.load()
        self._py_fn = None

    @property
    def _py(self):
        """The NumPy kernel, compiled from ``py_source`` on first use (a step whose C
        kernels load never needs it: 27 Python compiles were ~15 ms of a GPT block's
        first call)."""
        if self._py_fn is None:
            from ..ops._special import erf
            ns = {"_np": np, "_erf": erf}
            exec(compile(self.py_source, f"<ember fused {self.__name__}>", "exec"), ns)
            self._py_fn = ns["kernel"]
        return self._py_fn

    def load(self):
        """Load the compiled C kernel (compiling it on a cold cache); NumPy where that fails."""
        if self.backend != "c" or self._c is not None:
            return
        try:
            self._c = load_kernel(self.c_source)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"ember.compile: C kernel unavailable ({e}); using NumPy", file=sys.stderr)
            self.backend = "numpy"

    def _cost(self):
        """Estimated work per element, in units of one simple arithmetic op: libm-like
        functions (exp, log, tanh, sigmoid, a general pow, a division) cost about ten."""
        heavy = {"Exp", "Log", "Tanh", "Sigmoid", "Div", "Erf", "Gelu"}
        cost = len(self.leaves) + 1  # the loads and the store
        for n in self._order:
            name = _op_name(n)
            general_pow = name == "Pow" and n.args[1] not in (1, 2, 3)
            cost += 10 if name in heavy or general_pow else 1
        return cost

    # -- emission: one statement per node, forward order
    def _expr(self, n, lang):
        from ..fx import Node
        t, f = _FLOATS[str(self.dtype)]

        def ref(a):
            if isinstance(a, Node):
                return self._names[a] if lang == "py" or a in self._order else \
                    f"l{self._names[a][2:]}"
            if lang == "py":
                return repr(a)
            return f"(({t}){float(a)!r})"
        name = _op_name(n)
        if name == "Gelu":
            x = ref(n.args[0])
            tmpl = _GELU_C[n.args[1]] if lang == "c" else _GELU_NP[n.args[1]]
            return tmpl.format(a=x, f=f, t=t, e="ember_" if t == "float" else "",
                               h=_SQRT_HALF, k=_GELU_K)
        args = [ref(a) for a in n.args]
        if name in _BINARY:
            return f"({args[0]} {_BINARY[name]} {args[1]})"
        if name in _COMPARE:
            return f"({args[0]} {_COMPARE[name]} {args[1]})"
        if name == "Where":
            if lang == "py":
                return f"_np.where({args[0]}, {args[1]}, {args[2]})"
            return f"({args[0]} ? {args[1]} : {args[2]})"
        if name == "Pow":
            if lang == "py":
                return f"({args[0]} ** {args[1]})"
            e = n.args[1]
            if not isinstance(e, Node) and isinstance(n.args[0], Node):
                if e == 2:
                    return f"({args[0]} * {args[0]})"
                if e == 3:
                    return f"({args[0]} * {args[0]} * {args[0]})"
                if e == 1:
                    return args[0]
            return f"pow{f}({args[0]}, {args[1]})"
        tmpl = _UNARY_C[name] if lang == "c" else _UNARY_NP[name]
        return tmpl.format(a=args[0], f=f, t=t, e="ember_" if t == "float" else "")

    # -- C emission: one file with one ``kernel`` function; the two loop shapes below share
    # its signature, the leaves' loads and the statements
    def _c_file(self, lead_params, loop):
        t, _ = _FLOATS[str(self.dtype)]
        params = lead_params + [f"const {_CTYPE[str(d)]} *restrict in{i}"
                                for i, d in enumerate(self.leaf_dtypes)] + [f"{t} *restrict out"]
        return "\n".join(["#include <math.h>", "#include <stdint.h>", "#include <string.h>",
                          _PRELUDE_F32 if t == "float" else "",
                          f"void kernel({', '.join(params)}) {{", *loop, "}", ""])

    def _c_body(self, pad, loads):
        """The loop body at indent ``pad``: loads of the leaves ``loads`` (index, C index
        expression), one statement per node, the store."""
        body = [f"{pad}{_CTYPE[str(self.leaf_dtypes[i])]} l{i} = in{i}[{at}];"
                for i, at in loads]
        for n in self._order:
            nd = str(_meta(n)[1]).replace("ember.", "")
            body.append(f"{pad}{_CTYPE[nd]} {self._names[n]} = {self._expr(n, 'c')};")
        body.append(f"{pad}out[i] = {self._names[self._root]};")
        return body

    def _emit_c(self):
        if self.broadcast:
            return self._emit_c_rows()
        body = self._c_body(" " * 8, [(i, "i") for i in range(len(self.leaves))])
        return self._c_file(["int64_t n", "int nthreads"], [
            # "if(parallel: ...)": a bare if() would switch off the simd part too (OpenMP 5),
            # leaving a scalar loop about 8x slower whenever the loop runs on one thread
            f"    #pragma omp parallel for simd schedule(static) num_threads(nthreads) "
            f"if(parallel: nthreads > 1 && n >= {self.parallel_min})",
            "    for (int64_t i = 0; i < n; i++) {", *body, "    }"])

    def _emit_c_rows(self):
        """A region with broadcast leaves: a loop over rows (threads split them) around a
        SIMD loop over the last dimension; a per-row leaf is read once per row."""
        index = {"full": "i", "row": "c", "col": "r", "scalar": "0"}
        kinds = list(enumerate(self.leaf_kinds))
        per_row = [f"        const {_CTYPE[str(self.leaf_dtypes[i])]} l{i} = in{i}[{index[k]}];"
                   for i, k in kinds if k in ("col", "scalar")]
        body = ["            const int64_t i = r * cols + c;"] + self._c_body(
            " " * 12, [(i, index[k]) for i, k in kinds if k in ("full", "row")])
        return self._c_file(["int64_t rows", "int64_t cols", "int nthreads"], [
            f"    #pragma omp parallel for schedule(static) num_threads(nthreads) "
            f"if(nthreads > 1 && rows > 1 && rows * cols >= {self.parallel_min})",
            "    for (int64_t r = 0; r < rows; r++) {", *per_row,
            "        #pragma omp simd",
            "        for (int64_t c = 0; c < cols; c++) {", *body, "        }", "    }"])

    def _leaf_shapes_at(self, shape):
        """The leaf shapes a call with region shape ``shape`` must pass (a symbolic batch
        changes the full and per-row leaves; columns and scalars keep theirs)."""
        if shape == self.shape:
            return self.leaf_shapes
        return [shape if k == "full" else shape[:-1] + (1,) if k == "col" else ls
                for k, ls in zip(self.leaf_kinds, self.leaf_shapes)]

    def _run_rows(self, out, arrays):
        """``run_arrays`` for a region with broadcast leaves."""
        if self.full_leaf is not None:
            shape = arrays[self.full_leaf].shape
        else:
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
        if self._c is None or len(shape) != len(self.shape) or any(
                a.shape != ls or a.dtype != d for a, ls, d in
                zip(arrays, self._leaf_shapes_at(shape), self.leaf_dtypes)):
            res = np.ascontiguousarray(self._py(*arrays), dtype=self.dtype)
            if out is None or out.shape != res.shape:
                return res
            np.copyto(out, res)
            return out
        arrays = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        if out is None or out.shape != shape:
            out = np.empty(shape, dtype=self.dtype)
        cols = shape[-1] if shape else 1
        rows = out.size // cols if cols else 0
        self._c(ctypes.c_int64(rows), ctypes.c_int64(cols), _threads(),
                *[ctypes.c_void_p(a.ctypes.data) for a in arrays],
                ctypes.c_void_p(out.ctypes.data))
        return out

    def _emit_numpy(self):
        lines = [f"def kernel({', '.join(f'in{i}' for i in range(len(self.leaves)))}):",
                 "    with _np.errstate(all='ignore'):"]
        for n in self._order:
            lines.append(f"        {self._names[n]} = {self._expr(n, 'py')}")
        lines.append(f"    return _np.asarray({self._names[self._root]}, "
                     f"dtype=_np.{self.dtype})")
        return "\n".join(lines) + "\n"

    @property
    def source(self):
        return self.c_source if self.backend == "c" else self.py_source

    def __call__(self, *tensors):
        arrays = [t._data if isinstance(t, Tensor) else np.asarray(t) for t in tensors]
        if self.broadcast:
            return _make(self._run_rows(None, arrays))
        if self._c is None or any(a.shape != self.shape or a.dtype != d
                                  for a, d in zip(arrays, self.leaf_dtypes)):
            return _make(np.ascontiguousarray(self._py(*arrays)))
        arrays = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        out = np.empty(self.shape, dtype=self.dtype)
        self._c(ctypes.c_int64(self.numel), _threads(),
                *[ctypes.c_void_p(a.ctypes.data) for a in arrays], ctypes.c_void_p(out.ctypes.data))
        return _make(out)

    def run_arrays(self, out, *arrays):
        """The region's value from its leaves' arrays, written into ``out`` (a C-contiguous
        array of the result's shape and dtype) when given, else into a new array."""
        if self.broadcast:
            return self._run_rows(out, arrays)
        # the leaves share one shape (a symbolic batch may change it between calls)
        shape = arrays[0].shape if arrays else self.shape
        if self._c is None or len(shape) != len(self.shape) or \
                any(a.shape != shape or a.dtype != d for a, d in zip(arrays, self.leaf_dtypes)):
            res = np.ascontiguousarray(self._py(*arrays))
            if out is None:
                return res
            np.copyto(out, res)
            return out
        arrays = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        if out is None or out.shape != shape:
            out = np.empty(shape, dtype=self.dtype)
        n = 1
        for s in shape:
            n *= s
        self._c(ctypes.c_int64(n), _threads(), *[ctypes.c_void_p(a.ctypes.data) for a in arrays],
                ctypes.c_void_p(out.ctypes.data))
        return out

    def __repr__(self):
        return f"<FusedKernel {self.__name__} ({self.backend})>"
