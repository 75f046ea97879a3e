"""Run ember and onnxruntime on the same inputs and compare (``verify``)."""

from __future__ import annotations

import io

import numpy as np


class VerificationResult(dict):
    """``max_abs_error``, ``max_rel_error`` (over all outputs) and per-output ``errors``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _session(proto_or_bytes):
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ember.onnx.verification needs onnxruntime: "
                          "pip install 'ember[onnx]'") from e
    data = proto_or_bytes if isinstance(proto_or_bytes, bytes) else \
        proto_or_bytes.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run_onnxruntime(model_proto, inputs):
    """Outputs (NumPy arrays) of ``model_proto`` run by onnxruntime on ``inputs`` (ember
    tensors or arrays, in the graph's input order)."""
    sess = _session(model_proto)
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        raise ValueError(f"run_onnxruntime: the model takes {len(names)} inputs {names}, "
                         f"got {len(inputs)}")
    feed = {n: (x.numpy() if hasattr(x, "numpy") else np.asarray(x)) for n, x in
            zip(names, inputs)}
    return sess.run(None, feed)


def _tensors(tree):
    """The tensors of nested tuples, lists and dicts, in order (the ONNX inputs' order)."""
    if isinstance(tree, (tuple, list)):
        return [t for x in tree for t in _tensors(x)]
    if isinstance(tree, dict):
        return [t for x in tree.values() for t in _tensors(x)]
    return [tree] if hasattr(tree, "numpy") else []


def verify(model, args, *, test_args=(), rtol=1e-5, atol=1e-6, raise_on_mismatch=True,
           **export_kwargs):
    """Export ``model`` on ``args``, then run ember (eager, no grad, eval mode) and
    onnxruntime on ``args`` and on each tuple in ``test_args`` (other sizes, when exported
    with ``dynamic_axes``), compare every output and return a ``VerificationResult``.
    Raises ``AssertionError`` on a mismatch beyond ``atol + rtol * |ember|`` unless
    ``raise_on_mismatch=False``."""
    import ember
    from . import export
    args = args if isinstance(args, tuple) else (args,)
    buf = io.BytesIO()
    proto = export(model, args, buf, **export_kwargs)
    sess_proto = buf.getvalue()
    was = model.training
    model.eval()
    errors, worst_abs, worst_rel = [], 0.0, 0.0
    try:
        for a in (args,) + tuple(test_args):
            with ember.no_grad():
                ref = model(*a)
            refs = [r.numpy() for r in _tensors(ref)]
            outs = run_onnxruntime(sess_proto, _tensors(a))
            for r, o in zip(refs, outs):
                if r.shape != o.shape:
                    raise AssertionError(f"verify: output shape {o.shape} from onnxruntime, "
                                         f"{r.shape} from ember")
                d = np.atleast_1d(np.abs(o.astype(np.float64) - r.astype(np.float64)))
                d[np.atleast_1d(np.isnan(o) & np.isnan(r))] = 0.0  # NaN in both: masked rows
                scale = np.abs(r).reshape(d.shape)
                ab = float(d.max()) if d.size else 0.0
                rel = float((d / np.maximum(scale, 1e-30)).max()) if d.size else 0.0
                errors.append((ab, rel))
                worst_abs, worst_rel = max(worst_abs, ab), max(worst_rel, rel)
                if raise_on_mismatch and not np.all(d <= atol + rtol * scale):
                    raise AssertionError(f"verify: onnxruntime and ember differ by {ab:.3g} "
                                         f"(abs), beyond atol={atol} rtol={rtol}")
    finally:
        model.train(was)
    return VerificationResult(max_abs_error=worst_abs, max_rel_error=worst_rel,
                              errors=errors, model=proto)
