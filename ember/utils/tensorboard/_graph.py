"""A TensorBoard ``GraphDef`` from an ``ember.fx`` GraphModule (``add_graph``)."""

from __future__ import annotations


def graph_def(gm, verbose=False):
    """One ``NodeDef`` per graph node: placeholders, calls (named by their target), and
    parameters (``get_attr``), with edges from the node's arguments."""
    from tensorboard.compat.proto.attr_value_pb2 import AttrValue
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.node_def_pb2 import NodeDef
    from tensorboard.compat.proto.versions_pb2 import VersionDef

    nodes = []
    for n in gm.graph.nodes:
        inputs = []

        def visit(a):
            if hasattr(a, "op") and hasattr(a, "name") and hasattr(a, "users"):
                inputs.append(a.name)
            elif isinstance(a, (list, tuple)):
                for x in a:
                    visit(x)
            elif isinstance(a, dict):
                for x in a.values():
                    visit(x)
        visit(n.args)
        visit(n.kwargs)
        target = n.target if isinstance(n.target, str) else getattr(
            n.target, "__name__", str(n.target))
        op = {"placeholder": "IO Node", "output": "IO Node"}.get(n.op, f"{n.op}:{target}")
        attr = {"_target": AttrValue(s=str(target).encode())}
        if verbose:
            print(n.format_node() if hasattr(n, "format_node") else n)
        nodes.append(NodeDef(name=n.name, op=op, input=inputs, attr=attr))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))
