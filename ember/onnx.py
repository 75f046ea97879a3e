"""``ember.onnx``: not implemented yet (export needs the compiler's graph capture)."""

from ._not_yet import missing

export = missing("ember.onnx.export", " (ONNX export needs the tracing compiler, which is "
                 "not built yet)")
