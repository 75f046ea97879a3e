"""``ember.ao.nn.quantized.dynamic``: dynamically quantized Linear, LSTM and GRU (issue 20).

Weights are int8 (quantized once); activations are quantized on every call from their own
min/max with ``reduce_range`` (fbgemm's 7-bit activations), multiplied in the exact int8 GEMM,
and scaled back to float32 with the bias added, as ``torch.ao.nn.quantized.dynamic`` does on
the fbgemm/x86 engine. Like PyTorch's, the LSTM/GRU multiply the input projection of the
whole sequence at once (one activation quantization for the sequence) and the hidden
projection once per step.
"""

from __future__ import annotations

import numpy as np

from .... import _dtype as D
from ...._quantized import per_tensor_symmetric, quantize_per_tensor
from ...._tensor import Tensor
from ....nn.modules.module import Module
from ....ops.creation import tensor as _tensor
from ... import _qfast
from . import functional as QF
from .modules import (LinearPackedParams, _as_bias, _hide_packed_params_repr,
                      _load_scale_zp, _observer_dtype, _quantize_weight, _save_scale_zp)

__all__ = ["Linear", "LSTM", "GRU", "LSTMCell", "GRUCell"]


class _SymmetricWeightObserver:
    """PyTorch's ``default_weight_observer`` (MinMaxObserver, qint8, per_tensor_symmetric):
    ``scale = max(-min, max) / 127.5`` in float32, zero point 0. Used by ``from_float`` when
    a module has no qconfig and ember.ao.quantization's observers are not available."""

    dtype = D.qint8
    qscheme = per_tensor_symmetric

    def __call__(self, w):
        a = w.detach()._data
        self.min_val = np.float32(min(float(a.min()), 0.0)) if a.size else np.float32(0)
        self.max_val = np.float32(max(float(a.max()), 0.0)) if a.size else np.float32(0)
        return w

    def calculate_qparams(self):
        m = np.float32(max(-self.min_val, self.max_val))
        scale = max(np.float32(m / np.float32(127.5)), np.finfo(np.float32).eps)
        return _tensor([float(scale)]), _tensor([0])


def _default_dynamic_weight_observer():
    """The weight observer of PyTorch's ``default_dynamic_qconfig`` (per-tensor symmetric
    qint8 min/max) where the module has no qconfig."""
    try:
        from ...quantization import observer  # ember.ao.quantization, when present
        return observer.default_weight_observer()
    except (ImportError, AttributeError):
        return _SymmetricWeightObserver()


def _weight_observer_for(mod):
    qconfig = getattr(mod, "qconfig", None)
    if qconfig is not None and getattr(qconfig, "weight", None) is not None:
        return qconfig.weight()
    return _default_dynamic_weight_observer()


class Linear(Module):
    """Dynamically quantized Linear: float in, float out, int8 weight."""

    _version = 4
    _relu = False

    def __init__(self, in_features, out_features, bias_=True, dtype=D.qint8):
        super().__init__()
        if dtype is not D.qint8:
            raise NotImplementedError(f"dynamic quantized Linear: dtype {dtype} (ember supports "
                                      "ember.qint8 weights)")
        self.in_features, self.out_features = in_features, out_features
        wq = quantize_per_tensor(_tensor(np.zeros((out_features, in_features), np.float32)),
                                 1.0, 0, D.qint8)
        self._packed_params = LinearPackedParams(dtype)
        self._packed_params.set_weight_bias(wq, _tensor(np.zeros(out_features, np.float32))
                                            if bias_ else None)
        self.scale, self.zero_point = 1.0, 0
        self.version = 4

    def __repr__(self):
        return _hide_packed_params_repr(self)

    def forward(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"dynamic quantized Linear: expected a Tensor, got "
                            f"{type(x).__name__}")
        packed = self._modules["_packed_params"]._packed
        plan = packed.fast_plan(self._relu)
        a = x._data
        # the common case in one C call (ember.ao._qfast), with no more Python than this
        if (plan is not None and a.dtype == np.float32 and a.flags.c_contiguous and a.ndim
                and a.shape[-1] == plan.K):
            return _tensor_of(_qfast.linear(plan, a))
        return _tensor_of(QF.linear_dynamic(x, packed, True, self._relu))

    def weight(self):
        return self._packed_params._packed.qweight

    def bias(self):
        return self._packed_params._packed.bias

    def set_weight_bias(self, w, b):
        self._packed_params.set_weight_bias(w, _as_bias(b))

    def _get_name(self):
        return "DynamicQuantizedLinear" if not self._relu else "DynamicQuantizedLinearReLU"

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"dtype={self._packed_params.dtype!r}, qscheme={self.weight().qscheme()!r}")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _load_scale_zp(self, state_dict, prefix, missing_keys, False)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """A dynamic quantized Linear from a float Linear (weight qparams from
        ``mod.qconfig.weight()``, or PyTorch's default dynamic weight observer)."""
        float_mod = mod[0] if type(mod).__name__ == "LinearReLU" else mod
        wobs = _weight_observer_for(mod)
        if _observer_dtype(wobs) is not D.qint8:
            raise NotImplementedError("dynamic quantized Linear: ember supports qint8 weights "
                                      f"(the observer has {_observer_dtype(wobs)})")
        wobs(float_mod.weight)
        q = cls(float_mod.in_features, float_mod.out_features,
                bias_=float_mod.bias is not None)
        q.set_weight_bias(_quantize_weight(float_mod.weight, wobs), float_mod.bias)
        return q

    @classmethod
    def from_reference(cls, ref_qlinear):
        q = cls(ref_qlinear.in_features, ref_qlinear.out_features,
                bias_=ref_qlinear.bias is not None)
        q.set_weight_bias(ref_qlinear.get_quantized_weight(), ref_qlinear.bias)
        return q


def _from_torch_cell_params(value, key):
    """``(w_ih, w_hh, b_ih, b_hh)`` from the pickled state of PyTorch's TorchScript
    ``CellParamsBase`` (``ember.serialization.ScriptObjectState``); other values pass."""
    state = getattr(value, "state", None)
    if not (isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], str)):
        return value
    if not state[1].endswith("rnn.CellParamsBase"):
        raise NotImplementedError(f"{key}: a TorchScript {state[1]} object (ember reads "
                                  "PyTorch's rnn.CellParamsBase)")
    fields = state[0]
    kind = fields[0] if isinstance(fields, tuple) and len(fields) == 5 else None
    if kind != "quantized_dynamic":
        raise NotImplementedError(f"{key}: PyTorch's {kind!r} RNN cell parameters (ember reads "
                                  "int8 'quantized_dynamic' ones; float16 cells are not "
                                  "supported)")
    packed = fields[4]
    parts = [getattr(p, "state", None) for p in packed]
    if len(parts) != 2 or not all(isinstance(p, tuple) and len(p) == 2 and
                                  isinstance(p[0], tuple) and len(p[0]) == 2 for p in parts):
        raise RuntimeError(f"{key}: unexpected layout of PyTorch's packed RNN weights")
    (w_ih, b_ih), (w_hh, b_hh) = (p[0] for p in parts)
    return (w_ih, w_hh, b_ih, b_hh)


def _tensor_of(arr):
    t = object.__new__(Tensor)
    t._data = arr
    return t


def _sigmoid(v):
    e = np.exp(-v)
    e += np.float32(1)
    return np.reciprocal(e, out=e)


# ============================================================================ RNNs
class _RNNBase(Module):
    """Weights per layer and direction: ``(w_ih, w_hh)`` packed int8 with float biases.

    State dict: ember writes ``_all_weight_values.<i>.param`` as ``(w_ih, w_hh, b_ih, b_hh)``
    (quantized/float tensors). PyTorch writes a TorchScript ``CellParamsBase`` object there;
    ``ember.load`` keeps its pickled state as data and this module reads the int8 weights and
    biases from it, so PyTorch's checkpoints load. PyTorch cannot read ember's tuples back
    (that would need TorchScript objects)."""

    _GATES = 4
    _version = 2

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=D.qint8):
        super().__init__()
        if dtype is not D.qint8:
            raise NotImplementedError(f"dynamic quantized {mode}: dtype {dtype} (ember "
                                      "supports ember.qint8)")
        self.mode = mode
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias = num_layers, bias
        self.batch_first, self.dropout = batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.dtype = dtype
        self.version = 2
        self.training = False
        g = self._GATES * hidden_size
        self._cells = []
        for layer in range(num_layers):
            isz = input_size if layer == 0 else hidden_size * (2 if bidirectional else 1)
            for _ in range(2 if bidirectional else 1):
                zero = quantize_per_tensor
                wih = zero(_tensor(np.zeros((g, isz), np.float32)), 1.0, 0, D.qint8)
                whh = zero(_tensor(np.zeros((g, hidden_size), np.float32)), 1.0, 0, D.qint8)
                b = _tensor(np.zeros(g, np.float32)) if bias else None
                self._cells.append(self._pack(wih, whh, b, b))

    @staticmethod
    def _pack(wih, whh, bih, bhh):
        return (QF.PackedLinearWeight(wih, _as_bias(bih)),
                QF.PackedLinearWeight(whh, _as_bias(bhh)))

    def _get_name(self):
        return "DynamicQuantized" + self.mode

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # -------------------------------------------------------------- state dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for i, (ih, hh) in enumerate(self._cells):
            destination[f"{prefix}_all_weight_values.{i}.param"] = (
                ih.qweight, hh.qweight, ih.bias, hh.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for i in range(len(self._cells)):
            key = f"{prefix}_all_weight_values.{i}.param"
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            value = _from_torch_cell_params(state_dict.pop(key), key)
            if not isinstance(value, tuple) or len(value) != 4:
                error_msgs.append(f"{key}: expected (w_ih, w_hh, b_ih, b_hh), got "
                                  f"{type(value).__name__} (PyTorch's TorchScript-packed RNN "
                                  "weights cannot be read by ember: use from_float)")
                continue
            self._cells[i] = self._pack(*value)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)

    def get_weight(self):
        return {f"weight_{k}_l{i // (2 if self.bidirectional else 1)}"
                f"{'_reverse' if self.bidirectional and i % 2 else ''}": p.qweight
                for i, (ih, hh) in enumerate(self._cells) for k, p in (("ih", ih), ("hh", hh))}

    # -------------------------------------------------------------- forward
    def _cell(self, gates_x, h, c, hh):
        raise NotImplementedError

    def _run(self, x, hx):
        """x: [T, B, I] float32; hx: per layer*direction states. Returns output and states.

        Per layer and direction: the input projection of the whole sequence in one dynamic
        linear (one activation scale for the sequence, as PyTorch's CPU kernel; the rows do
        not depend on their order, so the reverse direction reuses the forward order), then
        the recurrence, in one C call where the compiler is available."""
        ndir = 2 if self.bidirectional else 1
        H = self.hidden_size
        mode = 0 if self._GATES == 4 else 1
        states_out = []
        layer_in = x
        for layer in range(self.num_layers):
            T, B = layer_in.shape[:2]
            y = np.empty((T, B, ndir * H), np.float32)
            gin = np.ascontiguousarray(layer_in)
            for d in range(ndir):
                ih, hh = self._cells[layer * ndir + d]
                # private, contiguous float32 copies: the recurrence updates them in place
                state = [np.array(s[layer * ndir + d], dtype=np.float32, order="C")
                         for s in hx]
                gx = QF.linear_dynamic(gin, ih, True)
                plan = hh.fast_plan(False)
                if plan is not None and T:
                    _qfast.rnn_layer(plan, mode, gx, state[0], state[-1], y, d == 1, d * H)
                else:
                    for t in (range(T - 1, -1, -1) if d else range(T)):
                        state = self._cell(gx[t], state, hh)
                        y[t, :, d * H:(d + 1) * H] = state[0]
                states_out.append(state)
            layer_in = y
        return layer_in, states_out

    def _prepare(self, input, hx, n_states):
        x = input._data if isinstance(input, Tensor) else np.asarray(input)
        if x.dtype != np.float32:
            raise RuntimeError(f"dynamic quantized {self.mode}: expected a float32 input, got "
                               f"{x.dtype}")
        batched = x.ndim == 3
        if x.ndim not in (2, 3):
            raise ValueError(f"dynamic quantized {self.mode}: expected a 2-D or 3-D input, "
                             f"got shape {tuple(x.shape)}")
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        ndir = 2 if self.bidirectional else 1
        B = x.shape[1]
        if hx is None:
            zeros = np.zeros((self.num_layers * ndir, B, self.hidden_size), np.float32)
            states = [zeros] * n_states
        else:
            hs = hx if isinstance(hx, (tuple, list)) else (hx,)
            states = []
            for h in hs:
                a = h._data if isinstance(h, Tensor) else np.asarray(h)
                states.append(a if batched else a[:, None, :])
        return x, states, batched

    def _finish(self, y, batched):
        if not batched:
            return y[:, 0, :]
        return y.transpose(1, 0, 2) if self.batch_first else y

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """A dynamic quantized RNN from a float one (weights per-tensor symmetric qint8 from
        ``mod.qconfig.weight()`` or PyTorch's default dynamic weight observer)."""
        q = cls(mod.input_size, mod.hidden_size, mod.num_layers, mod.bias, mod.batch_first,
                mod.dropout, mod.bidirectional)
        ndir = 2 if mod.bidirectional else 1
        cells = []
        for layer in range(mod.num_layers):
            for d in range(ndir):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                ws = []
                for name in ("weight_ih", "weight_hh"):
                    w = getattr(mod, name + sfx)
                    obs = _weight_observer_for(mod)
                    if _observer_dtype(obs) is not D.qint8:
                        raise NotImplementedError("dynamic quantized RNNs: ember supports "
                                                  "qint8 weights")
                    obs(w)
                    ws.append(_quantize_weight(w, obs))
                bih = getattr(mod, "bias_ih" + sfx) if mod.bias else None
                bhh = getattr(mod, "bias_hh" + sfx) if mod.bias else None
                cells.append(cls._pack(ws[0], ws[1], bih, bhh))
        q._cells = cells
        return q


class LSTM(_RNNBase):
    """Dynamically quantized LSTM (``proj_size`` is not supported)."""

    _GATES = 4

    def __init__(self, *args, **kwargs):
        if kwargs.pop("proj_size", 0):
            raise NotImplementedError("dynamic quantized LSTM: proj_size")
        super().__init__("LSTM", *args, **kwargs)

    def _cell(self, gx, state, hh):
        h, c = state
        H = self.hidden_size
        gates = QF.linear_dynamic(h, hh, True)
        gates += gx
        sig = _sigmoid(gates)  # i, f, o from one pass over all four gates
        g = np.tanh(gates[..., 2 * H:3 * H])
        c = sig[..., H:2 * H] * c + sig[..., :H] * g
        h = sig[..., 3 * H:] * np.tanh(c)
        return [h, c]

    def forward(self, input, hx=None):
        x, states, batched = self._prepare(input, hx, 2)
        y, st = self._run(x, states)
        h = np.stack([s[0] for s in st])
        c = np.stack([s[1] for s in st])
        if not batched:
            h, c = h[:, 0, :], c[:, 0, :]
        return _tensor_of(np.ascontiguousarray(self._finish(y, batched))), (
            _tensor_of(h), _tensor_of(c))

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        if getattr(mod, "proj_size", 0):
            raise NotImplementedError("dynamic quantized LSTM: proj_size")
        return super().from_float(mod, use_precomputed_fake_quant)


class GRU(_RNNBase):
    """Dynamically quantized GRU."""

    _GATES = 3

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)

    def _cell(self, gx, state, hh):
        (h,) = state
        gh = QF.linear_dynamic(h, hh, True)
        xr, xz, xn = np.split(gx, 3, axis=-1)
        hr, hz, hn = np.split(gh, 3, axis=-1)
        r = _sigmoid(xr + hr)
        z = _sigmoid(xz + hz)
        n = np.tanh(xn + hn * r)
        return [((h - n) * z + n).astype(np.float32)]  # PyTorch's GRUCell formula

    def forward(self, input, hx=None):
        x, states, batched = self._prepare(input, hx, 1)
        y, st = self._run(x, states)
        h = np.stack([s[0] for s in st])
        if not batched:
            h = h[:, 0, :]
        return _tensor_of(np.ascontiguousarray(self._finish(y, batched))), _tensor_of(h)


class _CellBase(Module):
    def __init__(self, input_size, hidden_size, bias=True, dtype=D.qint8):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self._rnn = self._RNN(input_size, hidden_size, 1, bias, dtype=dtype)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        q = cls(mod.input_size, mod.hidden_size, mod.bias)

        class _AsRNN:  # a cell's weights under an RNN layer's names
            input_size, hidden_size, num_layers = mod.input_size, mod.hidden_size, 1
            bias, batch_first, dropout, bidirectional = mod.bias, False, 0.0, False
            qconfig = getattr(mod, "qconfig", None)
            weight_ih_l0, weight_hh_l0 = mod.weight_ih, mod.weight_hh
            bias_ih_l0 = getattr(mod, "bias_ih", None)
            bias_hh_l0 = getattr(mod, "bias_hh", None)
        q._rnn = cls._RNN.from_float(_AsRNN)
        return q


class LSTMCell(_CellBase):
    """Dynamically quantized LSTMCell."""

    _RNN = LSTM

    def forward(self, input, hx=None):
        x = input._data if isinstance(input, Tensor) else input
        if hx is None:
            z = np.zeros(x.shape[:-1] + (self.hidden_size,), np.float32)
            hx = (z, z)
        h, c = (a._data if isinstance(a, Tensor) else a for a in hx)
        ih, hh = self._rnn._cells[0]
        h, c = self._rnn._cell(QF.linear_dynamic(x, ih, True), [h, c], hh)
        return _tensor_of(h), _tensor_of(c)


class GRUCell(_CellBase):
    """Dynamically quantized GRUCell."""

    _RNN = GRU

    def forward(self, input, hx=None):
        x = input._data if isinstance(input, Tensor) else input
        h = (np.zeros(x.shape[:-1] + (self.hidden_size,), np.float32) if hx is None
             else (hx._data if isinstance(hx, Tensor) else hx))
        ih, hh = self._rnn._cells[0]
        (h,) = self._rnn._cell(QF.linear_dynamic(x, ih, True), [h], hh)
        return _tensor_of(h)

