"""``ember.onnx``: export a model to ONNX (checked by ``onnx``, run by onnxruntime) and import
the exported subset back as a trainable ``ember.fx.GraphModule``.

``export`` captures the model with ``ember.export`` (in eval mode, so dropout disappears) and
maps each core op of the captured graph to ONNX nodes; ``load`` reads such a model back;
``verification.verify`` runs ember and onnxruntime on the same inputs and compares.
The ``onnx`` package (pip extra ``ember[onnx]``) is imported on first use.
"""

from ._export import OnnxExporterError, UnsupportedOperatorError, export
from ._load import load

__all__ = ["export", "load", "OnnxExporterError", "UnsupportedOperatorError", "verification"]


def __getattr__(name):
    if name == "verification":
        from . import verification
        return verification
    raise AttributeError(f"module 'ember.onnx' has no attribute {name!r}")
