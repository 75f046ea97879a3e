"""Summary protos for TensorBoard, built from NumPy arrays.

Records go through the ``tensorboard`` package's own protos and event-file writer, so
TensorBoard reads them as its own; this file only turns arrays into those protos (images
encoded as PNG here, with ``zlib``, so no imaging library is needed).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np


def _tb():
    try:
        from tensorboard.compat.proto import summary_pb2  # noqa: F401
    except ImportError:
        raise ImportError("ember.utils.tensorboard needs the tensorboard package: "
                          "pip install 'ember[tensorboard]'") from None
    import tensorboard.compat.proto as proto
    return proto


def make_np(x):
    """A NumPy array (float64 for bfloat16/float16, which TensorBoard does not read)."""
    from ..._tensor import Tensor
    if isinstance(x, Tensor):
        x = x.detach().numpy()
    a = np.asarray(x)
    if a.dtype.kind == "V" or a.dtype == np.float16:
        a = a.astype(np.float32)
    return a


def _plugin_metadata(plugin, content=b"", display_name=None, description=None):
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata
    return SummaryMetadata(
        display_name=display_name or "", summary_description=description or "",
        plugin_data=SummaryMetadata.PluginData(plugin_name=plugin, content=content))


def scalar(name, value, new_style=False, double_precision=False):
    """A scalar summary (``simple_value``, or a tensor with the scalars plugin)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    a = make_np(value).squeeze()
    if a.ndim != 0:
        raise AssertionError(f"Tensor should contain one element (0 dimensions). Was given "
                             f"size: {a.size} and {a.ndim} dimensions.")
    v = float(a)
    if not new_style:
        return Summary(value=[Summary.Value(tag=name, simple_value=v)])
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    if double_precision:
        t = TensorProto(double_val=[v], dtype="DT_DOUBLE", tensor_shape=TensorShapeProto())
    else:
        t = TensorProto(float_val=[v], dtype="DT_FLOAT", tensor_shape=TensorShapeProto())
    return Summary(value=[Summary.Value(tag=name, tensor=t,
                                        metadata=_plugin_metadata("scalars"))])


def _tf_bins():
    # TensorFlow's default histogram edges: +-1e-12 growing by 10% to 1e20, and 0
    v, pos = 1e-12, []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    return np.array([-x for x in reversed(pos)] + [0.0] + pos)


def histogram_proto(values, bins, max_bins=None):
    """A ``HistogramProto``: min, max, count, sum, sum of squares, and the non-empty span of
    bucket counts with their right edges (one empty bucket leads, as TensorFlow writes)."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto
    a = make_np(values).astype(np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("The input has no element.")
    edges = _tf_bins() if isinstance(bins, str) and bins == "tensorflow" else bins
    counts, limits = np.histogram(a, bins=edges)
    if max_bins is not None and len(counts) > max_bins:
        # merge neighbouring buckets until at most max_bins remain
        k = -(-len(counts) // max_bins)
        m = -(-len(counts) // k)
        counts = np.pad(counts, (0, m * k - len(counts))).reshape(m, k).sum(1)
        limits = limits[::k] if len(limits[::k]) == m + 1 else \
            np.concatenate([limits[::k], limits[-1:]])
    nz = np.flatnonzero(counts)
    first, last = nz[0], nz[-1]
    bucket = [0.0] + counts[first:last + 1].astype(np.float64).tolist()
    limit = [float(limits[first])] + limits[first + 1:last + 2].astype(np.float64).tolist()
    return HistogramProto(min=float(a.min()), max=float(a.max()), num=float(a.size),
                          sum=float(a.sum()), sum_squares=float(a.dot(a)),
                          bucket_limit=limit, bucket=bucket)


def histogram(name, values, bins, max_bins=None):
    from tensorboard.compat.proto.summary_pb2 import Summary
    return Summary(value=[Summary.Value(tag=name, histo=histogram_proto(values, bins,
                                                                        max_bins))])


def encode_png(hwc):
    """PNG bytes of a uint8 HxWxC image (C = 1, 3 or 4)."""
    h, w, c = hwc.shape
    color = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + hwc[i].tobytes() for i in range(h))  # filter 0 per row

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def to_hwc(a, dataformats):
    """An image array in ``dataformats`` (CHW, HWC, HW, or with N for a batch) as HxWxC."""
    fmt = dataformats.upper()
    if len(set(fmt)) != len(fmt) or a.ndim != len(fmt) or set(fmt) - set("NCHW"):
        raise AssertionError(f"size of input tensor and input format are different. "
                             f"tensor shape: {a.shape}, input_format: {dataformats}")
    if "N" in fmt:
        a = a.transpose([fmt.index(ch) for ch in "NCHW" if ch in fmt])
        if "C" not in fmt:
            a = a[:, None]
        return _grid(a)
    order = [fmt.index(ch) for ch in "HWC" if ch in fmt]
    a = a.transpose(order)
    if "C" not in fmt:
        a = a[..., None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return a


def _grid(nchw, ncols=8):
    n, c, h, w = nchw.shape
    if c == 1:
        nchw = np.repeat(nchw, 3, axis=1)
        c = 3
    cols = min(n, ncols)
    rows = -(-n // cols)
    canvas = np.zeros((c, h * rows, w * cols), dtype=nchw.dtype)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[:, r * h:(r + 1) * h, k * w:(k + 1) * w] = nchw[i]
    return canvas.transpose(1, 2, 0)


def image_proto(hwc):
    """A ``Summary.Image`` from an HxWxC array: floats are taken as [0, 1], uint8 as is."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    scale = 1 if hwc.dtype == np.uint8 else 255
    img = np.clip(hwc.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    h, w, c = img.shape
    return Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=encode_png(img))


def image(tag, tensor, dataformats="CHW"):
    from tensorboard.compat.proto.summary_pb2 import Summary
    hwc = to_hwc(make_np(tensor), dataformats)
    return Summary(value=[Summary.Value(tag=tag, image=image_proto(hwc))])


def figure_to_hwc(figure, close=True):
    """Render a matplotlib figure to an RGBA HxWx4 uint8 array."""
    try:
        import matplotlib.backends.backend_agg as agg
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("add_figure needs matplotlib: pip install 'ember[plot]'") from None
    canvas = agg.FigureCanvasAgg(figure)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba()).copy()
    if close:
        plt.close(figure)
    return img


def text(tag, text_string):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.text import metadata as text_meta
    t = TensorProto(dtype="DT_STRING", string_val=[text_string.encode("utf_8")],
                    tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    meta = text_meta.create_summary_metadata(display_name=None, description=None)
    return Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=meta, tensor=t)])


def pr_curve_data(labels, predictions, num_thresholds, weights=None):
    """TP, FP, TN, FN, precision, recall at ``num_thresholds`` thresholds evenly spaced in
    [0, 1]: a prediction counts as positive at threshold ``i/(n-1)`` when it is >= it."""
    labels = make_np(labels).astype(np.float64).reshape(-1)
    predictions = make_np(predictions).astype(np.float64).reshape(-1)
    if predictions.size and (predictions.min() < 0 or predictions.max() > 1):
        raise ValueError("add_pr_curve: predictions must lie in [0, 1]")
    w = 1.0 if weights is None else make_np(weights).astype(np.float64).reshape(-1)
    bucket = np.floor(predictions * (num_thresholds - 1)).astype(np.int64)
    pos = np.bincount(bucket, weights=labels * w, minlength=num_thresholds)
    neg = np.bincount(bucket, weights=(1.0 - labels) * w, minlength=num_thresholds)
    tp = np.cumsum(pos[::-1])[::-1]  # positives predicted at or above each threshold
    fp = np.cumsum(neg[::-1])[::-1]
    tn = fp[0] - fp
    fn = tp[0] - tp
    precision = tp / np.maximum(1e-7, tp + fp)
    recall = tp / np.maximum(1e-7, tp + fn)
    return np.stack([tp, fp, tn, fn, precision, recall])


def pr_curve(tag, labels, predictions, num_thresholds=127, weights=None):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.pr_curve import metadata as pr_meta
    from tensorboard.util import tensor_util
    num_thresholds = min(num_thresholds, 127)  # TensorBoard's plugin limit, as PyTorch's
    data = pr_curve_data(labels, predictions, num_thresholds, weights)
    meta = pr_meta.create_summary_metadata(display_name=tag, description="",
                                           num_thresholds=num_thresholds)
    t = tensor_util.make_tensor_proto(data.astype(np.float32))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta, tensor=t)])


def hparams(hparam_dict, metric_dict, hparam_domain_discrete=None):
    """The three hparams-plugin summaries: experiment, session start, session end."""
    from google.protobuf import struct_pb2
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from tensorboard.plugins.hparams import metadata as hp_meta
    if not isinstance(hparam_dict, dict) or not isinstance(metric_dict, dict):
        raise TypeError("hparam_dict and metric_dict should be dictionary.")
    hparam_domain_discrete = hparam_domain_discrete or {}
    for k, v in hparam_domain_discrete.items():
        if k not in hparam_dict or not isinstance(v, list) or \
                not all(isinstance(d, type(hparam_dict[k])) for d in v):
            raise TypeError(f"parameter: hparam_domain_discrete[{k}] should be a list of same "
                            f"type as hparam_dict[{k}].")
    from ..._tensor import Tensor
    infos, start = [], plugin_data_pb2.SessionStartInfo()
    for k, v in hparam_dict.items():
        if v is None:
            continue
        if isinstance(v, Tensor):
            v = make_np(v)
        if isinstance(v, np.ndarray):
            v = v.item()
        if isinstance(v, bool) or isinstance(v, str):
            kind = "DATA_TYPE_BOOL" if isinstance(v, bool) else "DATA_TYPE_STRING"
            if isinstance(v, bool):
                start.hparams[k].bool_value = v
            else:
                start.hparams[k].string_value = v
        elif isinstance(v, (int, float)):
            kind = "DATA_TYPE_FLOAT64"
            start.hparams[k].number_value = v
        else:
            raise ValueError("value should be one of int, float, str, bool, or torch.Tensor")
        domain = None
        if k in hparam_domain_discrete:
            domain = struct_pb2.ListValue(values=[
                struct_pb2.Value(bool_value=d) if isinstance(d, bool) else
                struct_pb2.Value(string_value=d) if isinstance(d, str) else
                struct_pb2.Value(number_value=d) for d in hparam_domain_discrete[k]])
        infos.append(api_pb2.HParamInfo(name=k, type=api_pb2.DataType.Value(kind),
                                        domain_discrete=domain))
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=k)) for k in metric_dict]
    exp = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)

    def summ(tag, **data):
        content = plugin_data_pb2.HParamsPluginData(version=hp_meta.PLUGIN_DATA_VERSION, **data)
        meta = _plugin_metadata(hp_meta.PLUGIN_NAME, content.SerializeToString())
        return Summary(value=[Summary.Value(tag=tag, metadata=meta)])
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value("STATUS_SUCCESS"))
    return (summ(hp_meta.EXPERIMENT_TAG, experiment=exp),
            summ(hp_meta.SESSION_START_INFO_TAG, session_start_info=start),
            summ(hp_meta.SESSION_END_INFO_TAG, session_end_info=end))
