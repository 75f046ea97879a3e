"""``SummaryWriter``: PyTorch's TensorBoard logger, writing real event files.

Event files (protobuf records with CRCs) are written by the ``tensorboard`` package's own
``EventFileWriter`` (an optional extra: ``pip install 'ember[tensorboard]'``), queued and
flushed by its background thread; the summaries are built in ``summary.py``.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime

import numpy as np

from . import summary as S

__all__ = ["SummaryWriter", "FileWriter"]


class FileWriter:
    """One event file in ``log_dir`` (the ``tensorboard`` package's writer)."""

    def __init__(self, log_dir, max_queue=10, flush_secs=120, filename_suffix=""):
        S._tb()
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self.event_writer = EventFileWriter(str(log_dir), max_queue, flush_secs,
                                            filename_suffix)

    def get_logdir(self):
        return self.event_writer.get_logdir()

    def add_event(self, event, step=None, walltime=None):
        event.wall_time = time.time() if walltime is None else walltime
        if step is not None:
            event.step = int(step)
        self.event_writer.add_event(event)

    def add_summary(self, summary, global_step=None, walltime=None):
        from tensorboard.compat.proto.event_pb2 import Event
        self.add_event(Event(summary=summary), global_step, walltime)

    def add_graph(self, graph_def, walltime=None):
        from tensorboard.compat.proto.event_pb2 import Event
        self.add_event(Event(graph_def=graph_def.SerializeToString()), None, walltime)

    def flush(self):
        self.event_writer.flush()

    def close(self):
        self.event_writer.close()


class SummaryWriter:
    """Log scalars, histograms, images, figures, text, hyperparameters, embeddings and PR
    curves for TensorBoard (``ember.utils.tensorboard.SummaryWriter``, PyTorch's API)."""

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix=""):
        S._tb()
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", stamp + "_" + socket.gethostname() + comment)
        self.log_dir = str(log_dir)
        self.purge_step = purge_step
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self.file_writer = None
        self.all_writers = None
        self._get_file_writer()
        self.default_bins = S._tf_bins()

    def _get_file_writer(self):
        if self.all_writers is None or self.file_writer is None:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog
            self.file_writer = FileWriter(self.log_dir, self.max_queue, self.flush_secs,
                                          self.filename_suffix)
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
            if self.purge_step is not None:
                # TensorBoard drops the events at and after this step from earlier files
                step = self.purge_step
                self.file_writer.add_event(Event(step=step, file_version="brain.Event:2"))
                self.file_writer.add_event(
                    Event(step=step, session_log=SessionLog(status=SessionLog.START)))
                self.purge_step = None
        return self.file_writer

    def get_logdir(self):
        return self.log_dir

    def _summary(self, summ, global_step, walltime):
        self._get_file_writer().add_summary(summ, global_step, walltime)

    # ------------------------------------------------------------ scalars
    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        """Log one number (a Python number, a 0-d/1-element Tensor or array)."""
        self._summary(S.scalar(tag, scalar_value, new_style, double_precision), global_step,
                      walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """Log several numbers on one chart: each goes to its own run,
        ``{log_dir}/{main_tag}_{tag}``, under the tag ``main_tag``."""
        walltime = time.time() if walltime is None else walltime
        base = self._get_file_writer().get_logdir()
        for tag, value in tag_scalar_dict.items():
            path = os.path.join(base, main_tag.replace("/", "_") + "_" + tag)
            fw = self.all_writers.get(path)
            if fw is None:
                fw = self.all_writers[path] = FileWriter(path, self.max_queue, self.flush_secs,
                                                         self.filename_suffix)
            fw.add_summary(S.scalar(main_tag, value), global_step, walltime)

    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None,
                      max_bins=None):
        """Log the distribution of ``values`` (``bins``: "tensorflow" edges, or NumPy's)."""
        self._summary(S.histogram(tag, values, bins, max_bins), global_step, walltime)

    def add_histogram_raw(self, tag, min, max, num, sum, sum_squares, bucket_limits,
                          bucket_counts, global_step=None, walltime=None):
        """Log a histogram already binned."""
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        if len(bucket_limits) != len(bucket_counts):
            raise ValueError("len(bucket_limits) != len(bucket_counts), see the document.")
        h = HistogramProto(min=min, max=max, num=num, sum=sum, sum_squares=sum_squares,
                           bucket_limit=list(bucket_limits), bucket=list(bucket_counts))
        self._summary(Summary(value=[Summary.Value(tag=tag, histo=h)]), global_step, walltime)

    # ------------------------------------------------------------ images
    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW"):
        """Log an image: float values in [0, 1] or uint8, laid out as ``dataformats``."""
        self._summary(S.image(tag, img_tensor, dataformats), global_step, walltime)

    def add_images(self, tag, img_tensor, global_step=None, walltime=None,
                   dataformats="NCHW"):
        """Log a batch of images as one grid (8 per row)."""
        self._summary(S.image(tag, img_tensor, dataformats), global_step, walltime)

    def add_figure(self, tag, figure, global_step=None, close=True, walltime=None):
        """Log a matplotlib figure (or a list of them, as a grid) as an image."""
        if isinstance(figure, list):
            imgs = np.stack([S.figure_to_hwc(f, close) for f in figure])
            self.add_images(tag, imgs, global_step, walltime, dataformats="NHWC")
        else:
            self.add_image(tag, S.figure_to_hwc(figure, close), global_step, walltime,
                           dataformats="HWC")

    # ------------------------------------------------------------ text, hparams, curves
    def add_text(self, tag, text_string, global_step=None, walltime=None):
        """Log a (markdown) string."""
        self._summary(S.text(tag, text_string), global_step, walltime)

    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None,
                    global_step=None):
        """Log one run's hyperparameters with its final metrics (the HParams dashboard).
        They go to a sub-run ``run_name`` (default: the current time) of ``log_dir``."""
        exp, start, end = S.hparams(hparam_dict, metric_dict, hparam_domain_discrete)
        if not run_name:
            run_name = str(time.time())
        logdir = os.path.join(self._get_file_writer().get_logdir(), run_name)
        with SummaryWriter(log_dir=logdir) as w:
            w.file_writer.add_summary(exp, global_step)
            w.file_writer.add_summary(start, global_step)
            w.file_writer.add_summary(end, global_step)
            for k, v in metric_dict.items():
                w.add_scalar(k, v, global_step)

    def add_pr_curve(self, tag, labels, predictions, global_step=None, num_thresholds=127,
                     weights=None, walltime=None):
        """Log a precision-recall curve of ``predictions`` (in [0, 1]) against 0/1 labels."""
        self._summary(S.pr_curve(tag, labels, predictions, num_thresholds, weights),
                      global_step, walltime)

    def add_pr_curve_raw(self, tag, true_positive_counts, false_positive_counts,
                         true_negative_counts, false_negative_counts, precision, recall,
                         global_step=None, num_thresholds=127, weights=None, walltime=None):
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.pr_curve import metadata as pr_meta
        from tensorboard.util import tensor_util
        data = np.stack([S.make_np(v).astype(np.float32) for v in (
            true_positive_counts, false_positive_counts, true_negative_counts,
            false_negative_counts, precision, recall)])
        meta = pr_meta.create_summary_metadata(tag, "", num_thresholds)
        t = tensor_util.make_tensor_proto(data)
        self._summary(Summary(value=[Summary.Value(tag=tag, metadata=meta, tensor=t)]),
                      global_step, walltime)

    # ------------------------------------------------------------ embeddings
    def add_embedding(self, mat, metadata=None, label_img=None, global_step=None,
                      tag="default", metadata_header=None):
        """Write an embedding for TensorBoard's projector: ``tensors.tsv``, ``metadata.tsv``,
        ``sprite.png`` in ``{log_dir}/{step:05d}/{tag}`` and an entry in
        ``projector_config.pbtxt``."""
        mat = S.make_np(mat)
        if mat.ndim != 2:
            raise AssertionError(f"mat should be 2D, where mat.size(0) is the number of data "
                                 f"points, got shape {mat.shape}")
        step = 0 if global_step is None else int(global_step)
        sub = os.path.join(f"{step:05d}", tag.replace("/", "_"))
        base = self._get_file_writer().get_logdir()
        out = os.path.join(base, sub)
        os.makedirs(out, exist_ok=True)
        lines = ["\t".join(repr(float(x)) for x in row) for row in mat]
        _atomic_write(os.path.join(out, "tensors.tsv"), "\n".join(lines) + "\n")
        entry = [f'  tensor_name: "{tag}:{step:05d}"',
                 f'  tensor_path: "{sub}/tensors.tsv"'.replace(os.sep, "/")]
        if metadata is not None:
            if len(metadata) != mat.shape[0]:
                raise AssertionError("#labels should equal with #data points")
            if metadata_header is not None:
                rows = ["\t".join(str(h) for h in metadata_header)] + [
                    "\t".join(str(x) for x in r) for r in metadata]
            else:
                rows = [str(x) for x in metadata]
            _atomic_write(os.path.join(out, "metadata.tsv"), "\n".join(rows) + "\n")
            entry.append(f'  metadata_path: "{sub}/metadata.tsv"'.replace(os.sep, "/"))
        if label_img is not None:
            imgs = S.make_np(label_img)
            if imgs.ndim != 4 or imgs.shape[0] != mat.shape[0]:
                raise AssertionError("label_img should be (N, C, H, W) with N = #data points")
            n, _, h, w = imgs.shape
            side = int(np.ceil(np.sqrt(n)))
            grid = S._grid(imgs, ncols=side)
            sprite = np.zeros((side * h, side * w, grid.shape[2]), grid.dtype)
            sprite[:grid.shape[0], :grid.shape[1]] = grid
            with open(os.path.join(out, "sprite.png"), "wb") as f:
                f.write(S.image_proto(sprite).encoded_image_string)
            entry.append(f'  sprite {{\n    image_path: "{sub}/sprite.png"\n    '
                         f'single_image_dim: {w}\n    single_image_dim: {h}\n  }}'
                         .replace(os.sep, "/"))
        with open(os.path.join(base, "projector_config.pbtxt"), "a") as f:
            f.write("embeddings {\n" + "\n".join(entry) + "\n}\n")

    # ------------------------------------------------------------ graphs
    def add_graph(self, model, input_to_model=None, verbose=False, use_strict_trace=True):
        """Log the model's graph, captured by ``ember.fx.symbolic_trace``."""
        try:
            from ... import fx
            trace = fx.symbolic_trace
        except (ImportError, AttributeError):
            raise NotImplementedError(
                "SummaryWriter.add_graph needs ember.fx.symbolic_trace (the graph-capture "
                "issue), which this build does not have yet") from None
        from ._graph import graph_def
        gm = trace(model)
        self._get_file_writer().add_graph(graph_def(gm, verbose))

    # ------------------------------------------------------------ lifecycle
    def flush(self):
        """Write everything queued so far to disk."""
        for w in (self.all_writers or {}).values():
            w.flush()

    def close(self):
        for w in (self.all_writers or {}).values():
            w.flush()
            w.close()
        self.file_writer = self.all_writers = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
