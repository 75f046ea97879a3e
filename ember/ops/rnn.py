"""Fused recurrent layers: one op runs a whole sequence for one layer and direction.

Running an LSTM step by step through the dispatch path costs ~15 ops per step, forward and
backward; here the input projection for all steps is one GEMM, the time loop runs on
arrays, and backpropagation through time is one op as well. Gate order and formulas are
PyTorch's (LSTM: i, f, g, o; GRU: r, z, n with ``r * (W_hn h + b_hn)``).

Variable lengths (packed sequences) use ``lengths``: rows whose sequence has ended keep
their state, and their outputs are zero. Run in reverse, rows start when ``t < length``,
which is exactly each sequence reversed within its own length.

The backward of each layer op is itself an op (``*LayerGrad``) that computes every
gradient in one pass; differentiating it again raises (no double backward through fused
recurrent layers).
"""

from __future__ import annotations

import numpy as np

from .. import _parallel as _par
from .._meta import MetaArray
from ..autograd.graph import Node
from . import _nn_c
from ._conv_c import _addr


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def _sigmoid_(x):
    """``_sigmoid`` in place (the same operations in the same order: the same bits)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5


# Batch rows of a recurrent layer are independent through time, so the whole time loop runs
# as blocks of rows, one per thread (one hand-off per layer, not per step), each block's
# per-step GEMMs on one BLAS thread. A block's rows are computed exactly as in the full
# batch (no sum runs across rows), so the result is the same at every thread count.
_ROWS_SPLIT_MIN = 1 << 21  # multiply-adds of one step's recurrent GEMM over the batch ...
_ROWS_MIN = 4              # ... and rows per block, from which the loop is split


def _by_rows(loop, n, step_work):
    """``loop(start, stop)`` over the ``n`` batch rows: blocks on every core when one time
    step's work is large enough, else once in this thread."""
    k = min(_par.get_num_threads(), n // _ROWS_MIN)
    if not _par.gemm_split_ok():
        loop(0, n)
    else:  # one block or several, BLAS on one thread (its threaded waits spin: see gemm)
        k = k if k > 1 and step_work >= _ROWS_SPLIT_MIN else 1
        _par.run_split_gemm(loop, _par._bounds(n, k) if n else [(0, 0)])


def _proj(a, w, *biases):
    """``a @ w.T`` plus the ``biases`` that are not None, added in turn (the input
    projection): a large GEMM, split over the threads by ``_parallel.gemm``, each part
    adding the biases to its own block."""
    biases = tuple(b for b in biases if b is not None)
    if biases and all(type(b) is np.ndarray and b.shape == (w.shape[0],) for b in biases):
        return _par.gemm(a, w.T, bias=biases)
    r = _par.gemm(a, w.T)
    for b in biases:
        r += b
    return r


def _grads(products, sums=()):
    """``[a @ b for a, b in products] + [a.sum(0) for a in sums]``: a layer backward's input
    and weight gradients (independent 2-d products) and bias gradients. At several threads
    they run side by side in one hand-off (``_parallel.gemms``: whole products per core
    where they divide evenly, else cut), not each product cut over the cores in turn."""
    if _par.gemms_ok(sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)):
        return _par.gemms(products, [lambda a=a: a.sum(0) for a in sums])
    return [_par.gemm(a, b) for a, b in products] + [a.sum(0) for a in sums]


def _mask(lengths, t, dtype, s, e):
    """Rows ``s:e``: 1 where step ``t`` is inside the row's sequence, else 0 (None: no
    lengths)."""
    return None if lengths is None else (t < lengths[s:e])[:, None].astype(dtype)


def _step_grad(dh, g, m):
    """``(dh_t, keep)``: the gradient reaching a step's output (state gradient ``dh`` plus
    output gradient ``g``), and the part of ``dh`` that rows past their length pass
    through unchanged (None without a mask)."""
    if m is None:
        return dh + g, None
    return (dh + g * m) * m, dh * (1 - m)


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _opt_bias(b):
    return b if b is not None else 0.0


class _NoDoubleBackward(Node):
    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("double backward through ember's fused recurrent layers is not "
                           "supported; compute higher-order gradients with an LSTMCell/GRUCell "
                           "loop instead")


# ================================================================ LSTM
def _contiguous_t(w):
    """``w.T`` as its own C-contiguous array: the recurrent GEMM against a transposed view
    runs 1.5x slower in OpenBLAS (measured 0.185 vs 0.122 ms for (32, 256) @ (256, 1024))."""
    return np.ascontiguousarray(w.T)


class LSTMLayer(Node):
    """x (T, N, I), h0 (N, P), c0 (N, H) -> out (T, N, P), h_n, c_n.  P = proj or H."""

    @staticmethod
    def meta(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
        ctx.saved = (x, w_ih, w_hh, w_hr, b_ih is not None, b_hh is not None)
        return (MetaArray(x.shape[:2] + h0.shape[1:], x.dtype), MetaArray(h0.shape, x.dtype),
                MetaArray(c0.shape, x.dtype))

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
        T, N, _ = x.shape
        H = w_hh.shape[1] if w_hr is None else w_hr.shape[1]
        xw = _proj(x.reshape(T * N, x.shape[2]), w_ih, b_ih, b_hh).reshape(T, N, 4 * H)
        P = h0.shape[1]
        hs = np.empty((T, N, P), dtype=x.dtype)
        gates = np.empty((T, N, 4 * H), dtype=x.dtype)
        cs = np.empty((T, N, H), dtype=x.dtype)
        tcs = np.empty((T, N, H), dtype=x.dtype)
        h_prev = np.empty((T, N, P), dtype=x.dtype)
        c_prev = np.empty((T, N, H), dtype=x.dtype)
        h_n = np.empty(h0.shape, dtype=x.dtype)
        c_n = np.empty(c0.shape, dtype=x.dtype)
        w_hh_t = _contiguous_t(w_hh)

        # sigmoid(x) = 0.5 tanh(0.5 x) + 0.5 on the i, f, o gates and tanh on g, as four
        # passes over the whole (rows, 4H) block: scale by 0.5 (1 on g), tanh, scale again,
        # shift by 0.5 (0 on g): per element the operations of ``_sigmoid`` and ``np.tanh``
        half = np.full(4 * H, 0.5, x.dtype)
        half[2 * H:3 * H] = 1
        shift = np.full(4 * H, 0.5, x.dtype)
        shift[2 * H:3 * H] = 0
        plain = w_hr is None and lengths is None

        def loop(s, e):
            h, c = h0[s:e], c0[s:e]
            for t in _steps(T, reverse):
                h_prev[t, s:e], c_prev[t, s:e] = h, c
                g = gates[t, s:e]
                np.matmul(h, w_hh_t, out=g)
                g += xw[t, s:e]
                if plain:  # results written in place: 13 NumPy calls a step instead of 22
                    g *= half
                    np.tanh(g, out=g)
                    g *= half
                    g += shift
                    c = cs[t, s:e]
                    np.multiply(g[:, H:2 * H], c_prev[t, s:e], out=c)
                    c += g[:, :H] * g[:, 2 * H:3 * H]
                    tc = tcs[t, s:e]
                    np.tanh(c, out=tc)
                    h = hs[t, s:e]
                    np.multiply(g[:, 3 * H:], tc, out=h)
                    continue
                _sigmoid_(g[:, :2 * H])
                np.tanh(g[:, 2 * H:3 * H], out=g[:, 2 * H:3 * H])
                _sigmoid_(g[:, 3 * H:])
                c_new = g[:, H:2 * H] * c + g[:, :H] * g[:, 2 * H:3 * H]
                tc = np.tanh(c_new)
                h_new = g[:, 3 * H:] * tc
                if w_hr is not None:
                    h_new = h_new @ w_hr.T
                m = _mask(lengths, t, x.dtype, s, e)
                if m is not None:
                    h_new = m * h_new + (1 - m) * h
                    c_new = m * c_new + (1 - m) * c
                    hs[t, s:e] = h_new * m
                else:
                    hs[t, s:e] = h_new
                cs[t, s:e], tcs[t, s:e] = c_new, tc
                h, c = h_new, c_new
            h_n[s:e], c_n[s:e] = h, c

        _by_rows(loop, N, N * P * 4 * H)
        ctx.saved = (x, w_ih, w_hh, w_hr, gates, cs, tcs, h_prev, c_prev, lengths, reverse,
                     b_ih is not None, b_hh is not None)
        return hs, h_n, c_n

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn):
        return LSTMLayerGrad.apply(g_out, g_hn, g_cn, ctx.saved, ctx.needs_input_grad[0])


class LSTMLayerGrad(_NoDoubleBackward):
    @staticmethod
    def meta(ctx, g_out, g_hn, g_cn, saved, need_dx=True):
        x, w_ih, w_hh, w_hr, has_bih, has_bhh = saved
        dt = g_out.dtype
        db = MetaArray(w_ih.shape[:1], dt)
        return (MetaArray(x.shape, dt) if need_dx else None, MetaArray(g_hn.shape, dt),
                MetaArray(g_cn.shape, dt), MetaArray(w_ih.shape, dt), MetaArray(w_hh.shape, dt),
                db if has_bih else None, db if has_bhh else None,
                MetaArray(w_hr.shape, dt) if w_hr is not None else None)

    @staticmethod
    def forward(ctx, g_out, g_hn, g_cn, saved, need_dx=True):
        (x, w_ih, w_hh, w_hr, gates, cs, tcs, h_prev, c_prev, lengths, reverse,
         has_bih, has_bhh) = saved
        T, N, _ = x.shape
        H = cs.shape[2]
        dgates = np.empty_like(gates)
        dh_n = g_hn.copy()
        dc_n = g_cn.copy()
        dw_hr = np.zeros_like(w_hr) if w_hr is not None else None

        def loop(s, e):
            dh, dc = dh_n[s:e], dc_n[s:e]
            for t in _steps(T, not reverse):
                m = _mask(lengths, t, x.dtype, s, e)
                dh_t, keep_h = _step_grad(dh, g_out[t, s:e], m)
                if m is not None:  # rows past their length pass the state gradient through
                    keep_c = dc * (1 - m)
                    dc_t = dc * m
                else:
                    dc_t = dc
                g = gates[t, s:e]
                i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
                if w_hr is not None:
                    h_raw = o * tcs[t, s:e]
                    dw_hr[...] += dh_t.T @ h_raw  # a sum over rows: never split (below)
                    dh_raw = dh_t @ w_hr
                else:
                    dh_raw = dh_t
                tc = tcs[t, s:e]
                do = dh_raw * tc
                dc_t = dc_t + dh_raw * o * (1 - tc * tc)
                di = dc_t * gg
                dg = dc_t * i
                df = dc_t * c_prev[t, s:e]
                dgt = dgates[t, s:e]
                dgt[:, :H] = di * i * (1 - i)
                dgt[:, H:2 * H] = df * f * (1 - f)
                dgt[:, 2 * H:3 * H] = dg * (1 - gg * gg)
                dgt[:, 3 * H:] = do * o * (1 - o)
                dh = dgt @ w_hh
                dc = dc_t * f
                if m is not None:
                    dh += keep_h
                    dc += keep_c
            dh_n[s:e], dc_n[s:e] = dh, dc

        fn = _nn_c.lstm_bwd_kernel(x.dtype) if w_hr is None and lengths is None else None
        if fn is not None and T and N:
            # the step's gate arithmetic as one C call (the same roundings as ``loop``'s
            # NumPy passes, in ~2 instead of ~25 calls a step: the rows' threads spend
            # their time outside the GIL), then the recurrent GEMM into dh
            go = np.ascontiguousarray(g_out, dtype=x.dtype)
            sz = x.dtype.itemsize
            a_go, a_g, a_tc, a_cp, a_dg = (_addr(a) for a in (go, gates, tcs, c_prev, dgates))
            a_dh, a_dc = _addr(dh_n), _addr(dc_n)

            def loop(s, e):  # noqa: F811 (the C form of the loop above)
                dh = dh_n[s:e]
                for t in _steps(T, not reverse):
                    o = (t * N + s) * H * sz
                    fn(a_go + o, a_dh + s * H * sz, a_dc + s * H * sz, a_g + 4 * o, a_tc + o,
                       a_cp + o, a_dg + 4 * o, e - s, H)
                    np.matmul(dgates[t, s:e], w_hh, out=dh)

        if w_hr is None:
            _by_rows(loop, N, N * H * 4 * H)
        else:
            loop(0, N)
        dh, dc = dh_n, dc_n
        flat = dgates.reshape(T * N, gates.shape[2])
        # a first layer's input (the data) usually needs no gradient: skip that GEMM
        hp = h_prev.reshape(T * N, h_prev.shape[2])
        weights = [(flat.T, x.reshape(T * N, x.shape[2])), (flat.T, hp)]
        *dx, dw_ih, dw_hh, db = _grads(([(flat, w_ih)] if need_dx else []) + weights, [flat])
        dx = dx[0].reshape(x.shape) if need_dx else None
        return (dx, dh, dc, dw_ih, dw_hh, db if has_bih else None, db if has_bhh else None,
                dw_hr)


# ================================================================ GRU
class GRULayer(Node):
    """x (T, N, I), h0 (N, H) -> out (T, N, H), h_n."""

    @staticmethod
    def meta(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
        ctx.saved = (x, w_ih, w_hh, b_ih is not None, b_hh is not None)
        return MetaArray(x.shape[:2] + h0.shape[1:], x.dtype), MetaArray(h0.shape, x.dtype)

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
        T, N, _ = x.shape
        H = w_hh.shape[1]
        xw = _proj(x.reshape(T * N, x.shape[2]), w_ih, b_ih).reshape(T, N, 3 * H)
        hs = np.empty((T, N, H), dtype=x.dtype)
        rz = np.empty((T, N, 2 * H), dtype=x.dtype)
        ns = np.empty((T, N, H), dtype=x.dtype)
        hn_lin = np.empty((T, N, H), dtype=x.dtype)  # W_hn h + b_hn
        h_prev = np.empty((T, N, H), dtype=x.dtype)
        h_n = np.empty(h0.shape, dtype=x.dtype)
        w_hh_t = _contiguous_t(w_hh)
        bhh = _opt_bias(b_hh)

        def loop(s, e):
            h = h0[s:e]
            for t in _steps(T, reverse):
                h_prev[t, s:e] = h
                hw = h @ w_hh_t + bhh
                a = _sigmoid(xw[t, s:e, :2 * H] + hw[:, :2 * H])
                r, z = a[:, :H], a[:, H:]
                n = np.tanh(xw[t, s:e, 2 * H:] + r * hw[:, 2 * H:])
                h_new = (1 - z) * n + z * h
                m = _mask(lengths, t, x.dtype, s, e)
                if m is not None:
                    h_new = m * h_new + (1 - m) * h
                    hs[t, s:e] = h_new * m
                else:
                    hs[t, s:e] = h_new
                rz[t, s:e], ns[t, s:e], hn_lin[t, s:e] = a, n, hw[:, 2 * H:]
                h = h_new
            h_n[s:e] = h

        _by_rows(loop, N, N * H * 3 * H)
        ctx.saved = (x, w_ih, w_hh, rz, ns, hn_lin, h_prev, lengths, reverse,
                     b_ih is not None, b_hh is not None)
        return hs, h_n

    @staticmethod
    def backward(ctx, g_out, g_hn):
        return GRULayerGrad.apply(g_out, g_hn, ctx.saved, ctx.needs_input_grad[0])


class GRULayerGrad(_NoDoubleBackward):
    @staticmethod
    def meta(ctx, g_out, g_hn, saved, need_dx=True):
        x, w_ih, w_hh, has_bih, has_bhh = saved
        dt = g_out.dtype
        db = MetaArray(w_ih.shape[:1], dt)
        return (MetaArray(x.shape, dt) if need_dx else None, MetaArray(g_hn.shape, dt),
                MetaArray(w_ih.shape, dt), MetaArray(w_hh.shape, dt),
                db if has_bih else None, db if has_bhh else None)

    @staticmethod
    def forward(ctx, g_out, g_hn, saved, need_dx=True):
        x, w_ih, w_hh, rz, ns, hn_lin, h_prev, lengths, reverse, has_bih, has_bhh = saved
        T, N, _ = x.shape
        H = ns.shape[2]
        dxw = np.empty((T, N, 3 * H), dtype=x.dtype)  # grads of the input projection
        dhw = np.empty((T, N, 3 * H), dtype=x.dtype)  # grads of W_hh h + b_hh
        dh_n = g_hn.copy()

        def loop(s, e):
            dh = dh_n[s:e]
            for t in _steps(T, not reverse):
                m = _mask(lengths, t, x.dtype, s, e)
                dh_t, keep = _step_grad(dh, g_out[t, s:e], m)
                r, z, n = rz[t, s:e, :H], rz[t, s:e, H:], ns[t, s:e]
                dn = dh_t * (1 - z)
                dz = dh_t * (h_prev[t, s:e] - n)
                dn_pre = dn * (1 - n * n)
                dr = dn_pre * hn_lin[t, s:e]
                dx_t, dh_w = dxw[t, s:e], dhw[t, s:e]
                dx_t[:, :H] = dr * r * (1 - r)
                dx_t[:, H:2 * H] = dz * z * (1 - z)
                dx_t[:, 2 * H:] = dn_pre
                dh_w[:, :2 * H] = dx_t[:, :2 * H]
                dh_w[:, 2 * H:] = dn_pre * r
                dh = dh_t * z + dh_w @ w_hh
                if m is not None:
                    dh += keep
            dh_n[s:e] = dh

        _by_rows(loop, N, N * H * 3 * H)
        dh = dh_n
        fx = dxw.reshape(T * N, dxw.shape[2])
        fh = dhw.reshape(T * N, dhw.shape[2])
        weights = [(fx.T, x.reshape(T * N, x.shape[2])),
                   (fh.T, h_prev.reshape(T * N, h_prev.shape[2]))]
        *dx, dw_ih, dw_hh, db_ih, db_hh = _grads(([(fx, w_ih)] if need_dx else []) + weights,
                                                 [fx, fh])
        dx = dx[0].reshape(x.shape) if need_dx else None
        return (dx, dh, dw_ih, dw_hh, db_ih if has_bih else None, db_hh if has_bhh else None)


# ================================================================ Elman RNN
class RNNLayer(Node):
    """x (T, N, I), h0 (N, H) -> out (T, N, H), h_n; ``relu`` or tanh nonlinearity."""

    @staticmethod
    def meta(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu):
        ctx.saved = (x, w_ih, w_hh, b_ih is not None, b_hh is not None)
        return MetaArray(x.shape[:2] + h0.shape[1:], x.dtype), MetaArray(h0.shape, x.dtype)

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu):
        T, N, _ = x.shape
        H = w_hh.shape[1]
        xw = _proj(x.reshape(T * N, x.shape[2]), w_ih, b_ih, b_hh).reshape(T, N, H)
        hs = np.empty((T, N, H), dtype=x.dtype)
        acts = np.empty((T, N, H), dtype=x.dtype)
        h_prev = np.empty((T, N, H), dtype=x.dtype)
        h_n = np.empty(h0.shape, dtype=x.dtype)
        w_hh_t = _contiguous_t(w_hh)

        def loop(s, e):
            h = h0[s:e]
            for t in _steps(T, reverse):
                h_prev[t, s:e] = h
                pre = xw[t, s:e] + h @ w_hh_t
                a = np.maximum(pre, 0) if relu else np.tanh(pre)
                m = _mask(lengths, t, x.dtype, s, e)
                h_new = a if m is None else m * a + (1 - m) * h
                hs[t, s:e] = h_new if m is None else h_new * m
                acts[t, s:e] = a
                h = h_new
            h_n[s:e] = h

        _by_rows(loop, N, N * H * H)
        ctx.saved = (x, w_ih, w_hh, acts, h_prev, lengths, reverse, relu,
                     b_ih is not None, b_hh is not None)
        return hs, h_n

    @staticmethod
    def backward(ctx, g_out, g_hn):
        return RNNLayerGrad.apply(g_out, g_hn, ctx.saved, ctx.needs_input_grad[0])


class RNNLayerGrad(_NoDoubleBackward):
    @staticmethod
    def meta(ctx, g_out, g_hn, saved, need_dx=True):
        return GRULayerGrad.meta(ctx, g_out, g_hn, saved, need_dx)

    @staticmethod
    def forward(ctx, g_out, g_hn, saved, need_dx=True):
        x, w_ih, w_hh, acts, h_prev, lengths, reverse, relu, has_bih, has_bhh = saved
        T, N, _ = x.shape
        dpre = np.empty_like(acts)
        dh_n = g_hn.copy()

        def loop(s, e):
            dh = dh_n[s:e]
            for t in _steps(T, not reverse):
                m = _mask(lengths, t, x.dtype, s, e)
                dh_t, keep = _step_grad(dh, g_out[t, s:e], m)
                a = acts[t, s:e]
                dp = dpre[t, s:e]
                dp[...] = dh_t * ((a > 0) if relu else (1 - a * a))
                dh = dp @ w_hh
                if m is not None:
                    dh += keep
            dh_n[s:e] = dh

        _by_rows(loop, N, N * w_hh.size)
        dh = dh_n
        flat = dpre.reshape(T * N, dpre.shape[2])
        # a first layer's input (the data) usually needs no gradient: skip that GEMM
        weights = [(flat.T, x.reshape(T * N, x.shape[2])),
                   (flat.T, h_prev.reshape(T * N, h_prev.shape[2]))]
        *dx, dw_ih, dw_hh, db = _grads(([(flat, w_ih)] if need_dx else []) + weights, [flat])
        dx = dx[0].reshape(x.shape) if need_dx else None
        return dx, dh, dw_ih, dw_hh, db if has_bih else None, db if has_bhh else None
