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
        inputs = [a.name for a in n.all_input_nodes]
        target = n.target if isinstance(n.target, str) else getattr(
            n.target, "__name__", str(n.target))
        op = {"placeholder": "IO Node", "output": "IO Node"}.get(n.op, f"{n.op}:{target}")
        attr = {"_target": AttrValue(s=str(target).encode())}
        if verbose:
            print(n.format_node() if hasattr(n, "format_node") else n)
        nodes.append(NodeDef(name=n.name, op=op, input=inputs, attr=attr))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))
