"""Cutting a module into pipeline stages: ``pipeline(module, mb_args, split_spec)``.

The module is traced with ``ember.fx.symbolic_trace``; the nodes are numbered into stages in
graph order, a new stage starting at the first node of the module named in ``split_spec``
(``SplitPoint.BEGINNING``) or after its last node (``SplitPoint.END``). Stage ``s`` becomes a
GraphModule whose inputs are the values that earlier stages made and that stage ``s`` or a later
one uses, and whose outputs are the values that later stages use (passed through when a stage
only forwards them). Parameters keep their fully qualified names.
"""

from __future__ import annotations

import enum

from ...nn.modules.module import Module

__all__ = ["Pipe", "SplitPoint", "pipe_split", "pipeline"]


class SplitPoint(enum.Enum):
    """Where a stage boundary goes relative to the named submodule."""
    BEGINNING = 1
    END = 2


def pipe_split():
    """Marker for a stage boundary inside ``forward`` (tracing-based splitting by marker is not
    supported in ember; use ``split_spec``)."""
    raise NotImplementedError("pipe_split() markers are not supported by ember's pipeline(); "
                              "pass split_spec={'submodule.name': SplitPoint.BEGINNING}")


def _belongs(target, name):
    return target == name or target.startswith(name + ".")


def _node_owner(node):
    """The qualified module name a node belongs to (for module calls and attributes)."""
    if node.op in ("call_module", "get_attr"):
        return node.target
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if stack:
        return list(stack.values())[-1][0] if isinstance(list(stack.values())[-1], tuple) \
            else list(stack)[-1]
    return None


class _Sequential(Module):
    """``split_gm``: the stage modules ``submod_0``, ``submod_1``, ... run one after another."""

    def __init__(self, stages):
        super().__init__()
        for i, m in enumerate(stages):
            setattr(self, f"submod_{i}", m)
        self._n = len(stages)

    def forward(self, *args):
        out = args
        for i in range(self._n):
            out = getattr(self, f"submod_{i}")(*out)
            if i < self._n - 1 and not isinstance(out, tuple):
                out = (out,)
        return out


class Pipe:
    """The result of ``pipeline()``: ``num_stages`` stage modules; ``build_stage`` makes the
    ``PipelineStage`` of one of them."""

    def __init__(self, split_gm, num_stages, example_args):
        self.split_gm = split_gm
        self.num_stages = num_stages
        self._example_args = example_args

    def get_stage_module(self, stage_idx):
        if not 0 <= stage_idx < self.num_stages:
            raise ValueError(f"stage index {stage_idx} out of range for a pipe of "
                             f"{self.num_stages} stages")
        return getattr(self.split_gm, f"submod_{stage_idx}")

    def build_stage(self, stage_index, device=None, group=None):
        from .stage import PipelineStage
        return PipelineStage(self.get_stage_module(stage_index), stage_index, self.num_stages,
                             device, group=group)

    def __call__(self, *args):
        return self.split_gm(*args)


def pipeline(module, mb_args, mb_kwargs=None, split_spec=None, split_policy=None):
    """Trace ``module`` and cut it into stages at ``split_spec``
    (``{"layers.2": SplitPoint.BEGINNING, ...}``). ``mb_args`` is one microbatch of inputs:
    the split program is run on it once and compared with the module, so a cut that changes
    the result fails here rather than in training."""
    from ... import fx, no_grad
    if mb_kwargs:
        raise NotImplementedError("pipeline(mb_kwargs=...): keyword inputs are not supported; "
                                  "pass the inputs positionally in mb_args")
    if split_policy is not None:
        raise NotImplementedError("pipeline(split_policy=...) is not supported; use split_spec")
    if not isinstance(mb_args, tuple):
        mb_args = (mb_args,)
    split_spec = dict(split_spec or {})
    names = dict(module.named_modules())
    for name, point in split_spec.items():
        if name not in names:
            raise ValueError(f"pipeline: split_spec names {name!r}, which is not a submodule of "
                             f"{type(module).__name__}")
        if not isinstance(point, SplitPoint):
            raise TypeError(f"pipeline: split_spec[{name!r}] must be a SplitPoint, got "
                            f"{point!r}")
    gm = fx.symbolic_trace(module)
    nodes = list(gm.graph.nodes)
    compute = [n for n in nodes if n.op not in ("placeholder", "output", "get_attr")]
    # stage number of each compute node, in graph order
    stage_of, stage = {}, 0
    begins = [k for k, v in split_spec.items() if v is SplitPoint.BEGINNING]
    ends = [k for k, v in split_spec.items() if v is SplitPoint.END]
    started, last_of = set(), {}
    for n in compute:
        t = n.target if n.op == "call_module" else _node_owner(n)
        for k in ends:
            if isinstance(t, str) and _belongs(t, k):
                last_of[k] = n
    for n in compute:
        t = n.target if n.op == "call_module" else _node_owner(n)
        for k in begins:
            if k not in started and isinstance(t, str) and _belongs(t, k):
                started.add(k)
                if stage_of:  # a boundary before the first node makes no empty stage
                    stage += 1
        stage_of[n] = stage
        for k, last in last_of.items():
            if last is n and n is not compute[-1]:
                stage += 1
    missing = [k for k in begins if k not in started] + [k for k in ends if k not in last_of]
    if missing:
        raise ValueError(f"pipeline: the traced program never calls {missing}; cannot split "
                         "there")
    num_stages = stage + 1
    placeholders = [n for n in nodes if n.op == "placeholder"]
    for p in placeholders:
        stage_of[p] = 0
    output = gm.graph.output_node()
    stages = [_stage_module(gm, s, num_stages, nodes, stage_of, placeholders, output)
              for s in range(num_stages)]
    split_gm = _Sequential(stages)
    with no_grad():  # the cut must not change what the module computes
        ref, got = module(*mb_args), split_gm(*mb_args)
    if hasattr(ref, "shape") and tuple(ref.shape) != tuple(got.shape):
        raise RuntimeError(f"pipeline: the split program returns shape {tuple(got.shape)}, "
                           f"the module {tuple(ref.shape)}")
    return Pipe(split_gm, num_stages, mb_args)


def _stage_module(gm, s, num_stages, nodes, stage_of, placeholders, output):
    from ... import fx

    def users_at_or_after(n, t):
        return any((u is output and t <= num_stages - 1) or
                   (u in stage_of and stage_of[u] >= t) for u in n.users)

    values = [n for n in nodes if n in stage_of]
    # inputs of stage s: values made before s that stage s or a later one needs
    if s == 0:
        inputs = placeholders
    else:
        inputs = [n for n in values if stage_of[n] < s and users_at_or_after(n, s)]
    graph = fx.Graph()
    env = {}
    for n in inputs:
        env[n] = graph.placeholder(n.name)
    for n in nodes:
        if n.op == "get_attr":
            continue
        if n in stage_of and stage_of[n] == s and n.op != "placeholder":
            for a in n.all_input_nodes:
                if a.op == "get_attr" and a not in env:
                    env[a] = graph.get_attr(a.target)
            env[n] = graph.node_copy(n, lambda a: env[a])
    if s == num_stages - 1:
        graph.output(_map_nodes(output.args[0], env))
    else:
        outs = [n for n in values if stage_of[n] <= s and users_at_or_after(n, s + 1)]
        graph.output(tuple(env[n] for n in outs))
    graph.lint()
    return fx.GraphModule(gm, graph)


def _map_nodes(a, env):
    if isinstance(a, tuple):
        return tuple(_map_nodes(x, env) for x in a)
    if isinstance(a, list):
        return [_map_nodes(x, env) for x in a]
    if isinstance(a, dict):
        return {k: _map_nodes(v, env) for k, v in a.items()}
    return env.get(a, a) if hasattr(a, "op") else a
