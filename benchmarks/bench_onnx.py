"""ONNX export: ember's graphs vs PyTorch's exporter on the same models and weights.

    python benchmarks/bench_onnx.py [--repeat R] [--batch B]

Builds a ResNet-18 and a GPT block once for each library (``bench_fx.define``), copies
ember's weights into the PyTorch model, exports both (PyTorch's TorchScript exporter,
``dynamo=False``: its dynamo exporter needs onnxscript), and prints node counts and the
onnxruntime latency of each export under the same session options (one intra-op thread,
all graph optimisations), alternating the two sessions per round.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from benchmarks._timing import print_table, side_by_side, torch_or_none  # noqa: E402
from benchmarks.bench_fx import define  # noqa: E402


def _session(data):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    import onnx

    import ember
    torch = torch_or_none()
    if torch is None:
        print("PyTorch is not installed: nothing to compare with")
        return
    rows, pairs = [], {}
    shapes = {"GPT block": (args.batch, 8, 32), "ResNet-18": (args.batch, 3, 224, 224)}
    for (label, shape), e_cls, t_cls in zip(shapes.items(), define(ember), define(torch)):
        e_mod, t_mod = e_cls().eval(), t_cls().eval()
        sd = {k: torch.from_numpy(v.detach().numpy().copy())
              for k, v in e_mod.state_dict().items()}
        t_mod.load_state_dict(sd)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        e_buf, t_buf = io.BytesIO(), io.BytesIO()
        ember.onnx.export(e_mod, (ember.from_numpy(x),), e_buf, input_names=["x"])
        torch.onnx.export(t_mod, (torch.from_numpy(x),), t_buf, input_names=["x"],
                          dynamo=False)
        e_s, t_s = _session(e_buf.getvalue()), _session(t_buf.getvalue())
        e_out, t_out = e_s.run(None, {"x": x})[0], t_s.run(None, {"x": x})[0]
        n_e = len(onnx.load_from_string(e_buf.getvalue()).graph.node)
        n_t = len(onnx.load_from_string(t_buf.getvalue()).graph.node)
        rows.append((label, n_e, n_t, float(np.abs(e_out - t_out).max())))
        pairs[f"onnxruntime {label} batch {args.batch}"] = (
            lambda s=e_s, x=x: s.run(None, {"x": x}), lambda s=t_s, x=x: s.run(None, {"x": x}))
    print("node counts (ember vs PyTorch's exporter), max |difference| of outputs")
    for label, n_e, n_t, d in rows:
        print(f"  {label:10s} ember {n_e:4d}  torch {n_t:4d}  max diff {d:.2e}")
    print_table(side_by_side(pairs, 5, args.repeat),
                "onnxruntime latency of each export (median per run)")


if __name__ == "__main__":
    main()
