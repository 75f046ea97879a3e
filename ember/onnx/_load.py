"""``ember.onnx.load``: an ONNX model (the subset ember's exporter writes) as a GraphModule."""


def load(path):
    raise NotImplementedError("ember.onnx.load is not implemented yet")
