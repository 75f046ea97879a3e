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

from .._meta import MetaArray
from ..autograd.graph import Node


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def _mask(lengths, t, dtype):
    return None if lengths is None else (t < lengths)[:, None].astype(dtype)


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
        xw = x.reshape(T * N, -1) @ w_ih.T
        if b_ih is not None:
            xw += b_ih
        if b_hh is not None:
            xw += b_hh
        xw = xw.reshape(T, N, 4 * H)
        P = h0.shape[1]
        hs = np.empty((T, N, P), dtype=x.dtype)
        gates = np.empty((T, N, 4 * H), dtype=x.dtype)
        cs = np.empty((T, N, H), dtype=x.dtype)
        tcs = np.empty((T, N, H), dtype=x.dtype)
        h, c = h0, c0
        h_prev = np.empty((T, N, P), dtype=x.dtype)
        c_prev = np.empty((T, N, H), dtype=x.dtype)
        w_hh_t = _contiguous_t(w_hh)
        for t in _steps(T, reverse):
            h_prev[t], c_prev[t] = h, c
            g = xw[t] + h @ w_hh_t
            g[:, :2 * H] = _sigmoid(g[:, :2 * H])
            g[:, 2 * H:3 * H] = np.tanh(g[:, 2 * H:3 * H])
            g[:, 3 * H:] = _sigmoid(g[:, 3 * H:])
            gates[t] = g
            c_new = g[:, H:2 * H] * c + g[:, :H] * g[:, 2 * H:3 * H]
            tc = np.tanh(c_new)
            h_new = g[:, 3 * H:] * tc
            if w_hr is not None:
                h_new = h_new @ w_hr.T
            m = _mask(lengths, t, x.dtype)
            if m is not None:
                h_new = m * h_new + (1 - m) * h
                c_new = m * c_new + (1 - m) * c
                hs[t] = h_new * m
            else:
                hs[t] = h_new
            cs[t], tcs[t] = c_new, tc
            h, c = h_new, c_new
        ctx.saved = (x, w_ih, w_hh, w_hr, gates, cs, tcs, h_prev, c_prev, lengths, reverse,
                     b_ih is not None, b_hh is not None)
        return hs, h, c

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
        dh = g_hn.copy()
        dc = g_cn.copy()
        dw_hr = np.zeros_like(w_hr) if w_hr is not None else None
        for t in _steps(T, not reverse):
            m = _mask(lengths, t, x.dtype)
            dh_t = dh + (g_out[t] * m if m is not None else g_out[t])
            if m is not None:  # rows past their length pass the state gradient through
                keep_h, keep_c = dh * (1 - m), dc * (1 - m)
                dh_t = dh_t * m
                dc_t = dc * m
            else:
                dc_t = dc
            g = gates[t]
            i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
            if w_hr is not None:
                h_raw = o * tcs[t]
                dw_hr += dh_t.T @ h_raw
                dh_raw = dh_t @ w_hr
            else:
                dh_raw = dh_t
            tc = tcs[t]
            do = dh_raw * tc
            dc_t = dc_t + dh_raw * o * (1 - tc * tc)
            di = dc_t * gg
            dg = dc_t * i
            df = dc_t * c_prev[t]
            dgt = dgates[t]
            dgt[:, :H] = di * i * (1 - i)
            dgt[:, H:2 * H] = df * f * (1 - f)
            dgt[:, 2 * H:3 * H] = dg * (1 - gg * gg)
            dgt[:, 3 * H:] = do * o * (1 - o)
            dh = dgt @ w_hh
            dc = dc_t * f
            if m is not None:
                dh += keep_h
                dc += keep_c
        flat = dgates.reshape(T * N, -1)
        # a first layer's input (the data) usually needs no gradient: skip that GEMM
        dx = (flat @ w_ih).reshape(x.shape) if need_dx else None
        dw_ih = flat.T @ x.reshape(T * N, -1)
        hp = h_prev.reshape(T * N, -1)
        dw_hh = flat.T @ hp
        db = flat.sum(0)
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
        xw = x.reshape(T * N, -1) @ w_ih.T
        if b_ih is not None:
            xw += b_ih
        xw = xw.reshape(T, N, 3 * H)
        hs = np.empty((T, N, H), dtype=x.dtype)
        rz = np.empty((T, N, 2 * H), dtype=x.dtype)
        ns = np.empty((T, N, H), dtype=x.dtype)
        hn_lin = np.empty((T, N, H), dtype=x.dtype)  # W_hn h + b_hn
        h_prev = np.empty((T, N, H), dtype=x.dtype)
        h = h0
        w_hh_t = _contiguous_t(w_hh)
        bhh = _opt_bias(b_hh)
        for t in _steps(T, reverse):
            h_prev[t] = h
            hw = h @ w_hh_t + bhh
            a = _sigmoid(xw[t, :, :2 * H] + hw[:, :2 * H])
            r, z = a[:, :H], a[:, H:]
            n = np.tanh(xw[t, :, 2 * H:] + r * hw[:, 2 * H:])
            h_new = (1 - z) * n + z * h
            m = _mask(lengths, t, x.dtype)
            if m is not None:
                h_new = m * h_new + (1 - m) * h
                hs[t] = h_new * m
            else:
                hs[t] = h_new
            rz[t], ns[t], hn_lin[t] = a, n, hw[:, 2 * H:]
            h = h_new
        ctx.saved = (x, w_ih, w_hh, rz, ns, hn_lin, h_prev, lengths, reverse,
                     b_ih is not None, b_hh is not None)
        return hs, h

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
        dh = g_hn.copy()
        for t in _steps(T, not reverse):
            m = _mask(lengths, t, x.dtype)
            dh_t = dh + (g_out[t] * m if m is not None else g_out[t])
            if m is not None:
                keep = dh * (1 - m)
                dh_t = dh_t * m
            r, z, n = rz[t, :, :H], rz[t, :, H:], ns[t]
            dn = dh_t * (1 - z)
            dz = dh_t * (h_prev[t] - n)
            dn_pre = dn * (1 - n * n)
            dr = dn_pre * hn_lin[t]
            dxw[t, :, :H] = dr * r * (1 - r)
            dxw[t, :, H:2 * H] = dz * z * (1 - z)
            dxw[t, :, 2 * H:] = dn_pre
            dhw[t, :, :2 * H] = dxw[t, :, :2 * H]
            dhw[t, :, 2 * H:] = dn_pre * r
            dh = dh_t * z + dhw[t] @ w_hh
            if m is not None:
                dh += keep
        fx = dxw.reshape(T * N, -1)
        fh = dhw.reshape(T * N, -1)
        dx = (fx @ w_ih).reshape(x.shape) if need_dx else None
        dw_ih = fx.T @ x.reshape(T * N, -1)
        dw_hh = fh.T @ h_prev.reshape(T * N, -1)
        return (dx, dh, dw_ih, dw_hh, fx.sum(0) if has_bih else None,
                fh.sum(0) if has_bhh else None)


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
        xw = x.reshape(T * N, -1) @ w_ih.T
        if b_ih is not None:
            xw += b_ih
        if b_hh is not None:
            xw += b_hh
        xw = xw.reshape(T, N, H)
        hs = np.empty((T, N, H), dtype=x.dtype)
        acts = np.empty((T, N, H), dtype=x.dtype)
        h_prev = np.empty((T, N, H), dtype=x.dtype)
        h = h0
        w_hh_t = _contiguous_t(w_hh)
        for t in _steps(T, reverse):
            h_prev[t] = h
            pre = xw[t] + h @ w_hh_t
            a = np.maximum(pre, 0) if relu else np.tanh(pre)
            m = _mask(lengths, t, x.dtype)
            h_new = a if m is None else m * a + (1 - m) * h
            hs[t] = h_new if m is None else h_new * m
            acts[t] = a
            h = h_new
        ctx.saved = (x, w_ih, w_hh, acts, h_prev, lengths, reverse, relu,
                     b_ih is not None, b_hh is not None)
        return hs, h

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
        dh = g_hn.copy()
        for t in _steps(T, not reverse):
            m = _mask(lengths, t, x.dtype)
            dh_t = dh + (g_out[t] * m if m is not None else g_out[t])
            if m is not None:
                keep = dh * (1 - m)
                dh_t = dh_t * m
            a = acts[t]
            dpre[t] = dh_t * ((a > 0) if relu else (1 - a * a))
            dh = dpre[t] @ w_hh
            if m is not None:
                dh += keep
        flat = dpre.reshape(T * N, -1)
        # a first layer's input (the data) usually needs no gradient: skip that GEMM
        dx = (flat @ w_ih).reshape(x.shape) if need_dx else None
        dw_ih = flat.T @ x.reshape(T * N, -1)
        dw_hh = flat.T @ h_prev.reshape(T * N, -1)
        db = flat.sum(0)
        return dx, dh, dw_ih, dw_hh, db if has_bih else None, db if has_bhh else None
