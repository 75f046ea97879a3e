"""Finite-difference gradient checks (``gradcheck``, ``gradgradcheck``), in float64."""

from __future__ import annotations

import numpy as np

from .._tensor import Tensor


class GradcheckError(RuntimeError):
    pass


def _as_tuple(x):
    return (x,) if isinstance(x, Tensor) else tuple(x)


def _flat_outputs(fn, inputs):
    out = fn(*inputs)
    return [o for o in _as_tuple(out) if isinstance(o, Tensor)]


def _numerical_jacobian(fn, inputs, i, eps):
    """d(outputs)/d(inputs[i]) by central differences, one column per input element."""
    x = inputs[i]
    data = x._data
    if any(st == 0 and n > 1 for st, n in zip(data.strides, data.shape)):
        raise GradcheckError("gradcheck cannot perturb an input whose elements share memory "
                             "(an expanded tensor); pass a contiguous copy")
    # element k in C order of the logical shape (strided inputs, e.g. channels-last, too)
    flat = data.reshape(-1) if data.flags.c_contiguous else None
    index = range(data.size) if flat is not None else list(np.ndindex(data.shape))
    flat = flat if flat is not None else data
    outs0 = _flat_outputs(fn, inputs)
    cols = [np.zeros((o._data.size, data.size), dtype=o._data.dtype) for o in outs0]
    for k, at in enumerate(index):
        orig = flat[at]
        flat[at] = orig + eps
        plus = [o._data.copy() for o in _flat_outputs(fn, inputs)]
        flat[at] = orig - eps
        minus = [o._data.copy() for o in _flat_outputs(fn, inputs)]
        flat[at] = orig
        for c, p, m in zip(cols, plus, minus):
            c[:, k] = ((p - m) / (2 * eps)).reshape(-1)
    return cols


def _analytical_jacobian(fn, inputs, i):
    from .engine import grad
    outs = _flat_outputs(fn, inputs)
    x = inputs[i]
    cols = []
    for o in outs:
        jac = np.zeros((o._data.size, x._data.size), dtype=o._data.dtype)
        if not o._rg:
            cols.append(jac)
            continue
        for r in range(o._data.size):
            go = np.zeros(o._data.shape, dtype=o._data.dtype)
            go.reshape(-1)[r] = 1
            from .._tensor import _make
            g, = grad(o, x, _make(go), retain_graph=True, allow_unused=True)
            if g is not None:
                jac[r] = g._data.reshape(-1)
        cols.append(jac)
    return cols


def _forward_jacobian(fn, inputs, i):
    """d(outputs)/d(inputs[i]) from forward-mode AD, one jvp per input element."""
    from . import forward_ad as fwAD
    from .._tensor import _make
    x = inputs[i]
    cols = None
    for k in range(x._data.size):
        e = np.zeros(x._data.shape, dtype=x._data.dtype)
        e.reshape(-1)[k] = 1
        with fwAD.dual_level():
            ins = list(inputs)
            ins[i] = fwAD.make_dual(x, _make(e))
            outs = _flat_outputs(fn, ins)
            if cols is None:
                cols = [np.zeros((o._data.size, x._data.size), dtype=o._data.dtype)
                        for o in outs]
            for c, o in zip(cols, outs):
                t = fwAD.unpack_dual(o).tangent
                if t is not None:
                    c[:, k] = t._data.reshape(-1)
    return cols or []


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, fast_mode=False,
              check_forward_ad=False, check_backward_ad=True, **kwargs):
    """Compare analytical gradients with central finite differences (use float64 inputs).

    ``check_forward_ad=True`` also checks forward-mode AD (the Jacobian from jvps);
    ``check_backward_ad=False`` skips the reverse-mode check."""
    inputs = _as_tuple(inputs)
    if check_forward_ad:
        for i, x in enumerate(inputs):
            if not isinstance(x, Tensor) or not x._rg:
                continue
            num = _numerical_jacobian(func, inputs, i, eps)
            fwd = _forward_jacobian(func, inputs, i)
            for j, (n, a) in enumerate(zip(num, fwd)):
                if not np.allclose(a, n, rtol=rtol, atol=atol):
                    msg = (f"Jacobian computed with forward mode mismatch for output {j} with "
                           f"respect to input {i},\nnumerical:{n}\nanalytical:{a}\n")
                    if raise_exception:
                        raise GradcheckError(msg)
                    return False
    if not check_backward_ad:
        return True
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x._rg:
            continue
        if x._data.dtype not in (np.float64, np.complex128):
            import warnings
            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating "
                          "point. This check will likely fail if all the inputs are not of "
                          "double precision floating point.", stacklevel=2)
        num = _numerical_jacobian(func, inputs, i, eps)
        ana = _analytical_jacobian(func, inputs, i)
        for j, (n, a) in enumerate(zip(num, ana)):
            if not np.allclose(a, n, rtol=rtol, atol=atol):
                msg = (f"Jacobian mismatch for output {j} with respect to input {i},\n"
                       f"numerical:{n}\nanalytical:{a}\n")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, **kwargs):
    """``gradcheck`` applied to the first derivative (checks double backward)."""
    from .engine import grad
    from .. import randn
    inputs = _as_tuple(inputs)
    outs = _as_tuple(func(*inputs))
    if grad_outputs is None:
        grad_outputs = tuple(randn(o.shape, dtype=o.dtype, requires_grad=True) for o in outs)
    grad_outputs = _as_tuple(grad_outputs)
    diff_in = [x for x in inputs if isinstance(x, Tensor) and x._rg]
    n_in = len(inputs)

    def first_derivative(*args):
        ins, gos = args[:n_in], args[n_in:]
        o = _as_tuple(func(*ins))
        dins = [x for x in ins if isinstance(x, Tensor) and x._rg]
        gs = grad(o, dins, gos, create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    del diff_in
    # check_fwd_over_rev: the forward-mode Jacobian of the first derivative (forward over
    # reverse: tangents flow through the recorded backward ops)
    return gradcheck(first_derivative, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception,
                     check_forward_ad=bool(kwargs.get("check_fwd_over_rev", False)),
                     check_backward_ad=bool(kwargs.get("check_rev_over_rev", True)))


# ---------------------------------------------------------------- PyTorch's older helpers
# Jacobians as PyTorch lays them out: one (input numel, output numel) matrix per pair.

def _t_jac(cols):
    from .._tensor import _make
    return _make(np.ascontiguousarray(cols.T))


def _perturbing(fn_no_args, x, eps):
    """Central differences of ``fn_no_args()``'s tensor outputs with ``x`` perturbed in
    place (``x`` may be captured by the function rather than passed to it)."""
    return _numerical_jacobian(lambda *_: fn_no_args(), [x], 0, eps)


def get_numerical_jacobian(fn, inputs, target=None, eps=1e-3, grad_out=1.0):
    """Deprecated in PyTorch: the finite-difference Jacobians of ``fn(inputs)``'s first output
    with respect to each tensor of ``target`` (default: the inputs that require grad)."""
    if grad_out != 1.0:
        raise ValueError("Expected grad_out to be 1.0. get_numerical_jacobian no longer "
                         "supports values of grad_out != 1.0.")
    inputs = _as_tuple(inputs)
    targets = [t for t in _as_tuple(inputs if target is None else target)
               if isinstance(t, Tensor) and t.requires_grad]
    return tuple(_t_jac(_perturbing(lambda: fn(inputs), t, eps)[0]) for t in targets)


def get_numerical_jacobian_wrt_specific_input(fn, input_idx, inputs, outputs, eps, input=None,
                                              is_forward_ad=False):
    """The finite-difference Jacobians of every output of ``fn(*inputs)`` with respect to
    ``inputs[input_idx]`` (or ``input``), one per output."""
    x = inputs[input_idx] if input is None else input
    if not x.requires_grad:
        raise AssertionError("Expected input to have requires_grad=True")
    return tuple(_t_jac(c) for c in _perturbing(lambda: fn(*inputs), x, eps))


def get_analytical_jacobian(inputs, output, nondet_tol=0.0, grad_out=1.0):
    """Deprecated in PyTorch: the backward-mode Jacobians of ``output`` with respect to each
    input that requires grad, and whether a second evaluation agreed (within
    ``nondet_tol``), the sizes matched and the dtypes matched:
    ``(jacobians, reentrant, sizes_ok, types_ok)``."""
    from .engine import grad
    from .._tensor import _make
    if grad_out != 1.0:
        raise ValueError("Expected grad_out to be 1.0. get_analytical_jacobian no longer "
                         "supports values of grad_out != 1.0.")
    if output.is_complex():
        raise ValueError("Expected output to be non-complex. get_analytical_jacobian no longer "
                         "supports functions that return complex outputs.")
    diff = [t for t in _as_tuple(inputs) if isinstance(t, Tensor) and t.requires_grad]
    n_out = output.numel()

    def rows():
        jacs = [np.zeros((t.numel(), n_out), dtype=t._data.dtype) for t in diff]
        sizes_ok = types_ok = True
        for r in range(n_out):
            go = np.zeros(tuple(output.shape), dtype=output._data.dtype)
            go.reshape(-1)[r] = 1
            gs = grad(output, diff, _make(go), retain_graph=True, allow_unused=True)
            for j, (t, g) in enumerate(zip(diff, gs)):
                if g is None:
                    continue
                sizes_ok &= tuple(g.shape) == tuple(t.shape)
                types_ok &= g.dtype == t.dtype
                jacs[j][:, r] = g._data.reshape(-1)
        return jacs, sizes_ok, types_ok

    first, sizes_ok, types_ok = rows()
    second, _, _ = rows()
    reentrant = all(a.shape == b.shape and (np.abs(a - b) <= nondet_tol).all()
                    for a, b in zip(first, second))
    return tuple(_make(j) for j in first), reentrant, sizes_ok, types_ok
