"""Graph-mode quantization on ``ember.fx``: ``prepare_fx`` / ``prepare_qat_fx`` / ``convert_fx``.

The model is captured with ``ember.fx.symbolic_trace``, so it needs no QuantStub/DeQuantStub
and no hand-written fusion list:

    from ember.ao.quantization import get_default_qconfig_mapping
    from ember.ao.quantization.quantize_fx import prepare_fx, convert_fx

    prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), example_inputs)
    for x in calibration_data:
        prepared(x)
    quantized = convert_fx(prepared)

``prepare_fx``
  1. fuses, on the graph, ``Conv{1,2,3}d [→ BatchNorm] [→ ReLU]``, ``Linear → ReLU`` and
     ``BatchNorm2d → ReLU`` chains whose intermediate values have no other user (BN folded in
     eval; kept as ``ConvBn`` for QAT);
  2. gives every quantizable module call (those with a quantized counterpart) the QConfig the
     ``QConfigMapping`` assigns it (module name, regex, type, global; ``None`` = keep float);
  3. inserts observer modules (``activation_post_process_<n>``): one on each quantized
     module's output, and one on each float value that feeds a quantized module. Ops that
     only move or select values (ReLU, max pooling, flatten, reshape, view, dropout, identity)
     share the observer of their input, as PyTorch's backend config has them, since they
     commute with affine quantization.

``convert_fx`` swaps each observed module for its int8 module (``from_float``), quantizes the
float input of each quantized module with its input observer's qparams, and dequantizes its
output; then, wherever an int8 module feeds another only through share-observer ops, the
``dequantize → ... → quantize`` round trip is dropped and the integers flow through max-pool,
ReLU, flatten and reshape directly (the same integers, since these commute with affine
quantization; PyTorch's graph has the same shape). Dynamic qconfigs (``is_dynamic`` activation)
swap modules for their dynamic versions and insert nothing.
"""

from __future__ import annotations

import copy
import re

import ember
from ember import fx
from ember import nn
from ember.nn import functional as F

from . import _qtypes as Q
from .fuser_method_mappings import get_fuser_method
from .qconfig_mapping import QConfigMapping
from .quantization_mappings import (get_default_dynamic_quant_module_mappings,
                                    get_default_qat_module_mappings,
                                    get_default_static_quant_module_mappings)

__all__ = ["prepare_fx", "prepare_qat_fx", "convert_fx", "convert_to_reference_fx", "fuse_fx"]

# values pass through these unchanged up to an order-preserving map: they share qparams
_SHARE_MODULES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten, nn.Identity,
                  nn.Dropout, nn.Unflatten)
_SHARE_FUNCTIONS = {F.relu, ember.relu, F.max_pool1d, F.max_pool2d, F.max_pool3d,
                    ember.flatten, ember.reshape, F.dropout, ember.squeeze, ember.unsqueeze,
                    ember.transpose, ember.permute}
_SHARE_METHODS = {"relu", "flatten", "reshape", "view", "squeeze", "unsqueeze", "contiguous",
                  "transpose", "permute", "detach"}
_RELU_MODULES = (nn.ReLU,)
_RELU_FUNCTIONS = {F.relu, ember.relu}


def _module(gm, node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_relu(gm, node):
    if node.op == "call_module":
        return isinstance(_module(gm, node), _RELU_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS and not node.kwargs.get("inplace", False)
    return node.op == "call_method" and node.target == "relu"


def _is_share(gm, node):
    if node.op == "call_module":
        return isinstance(_module(gm, node), _SHARE_MODULES)
    if node.op == "call_function":
        return node.target in _SHARE_FUNCTIONS
    return node.op == "call_method" and node.target in _SHARE_METHODS


def _set_module(gm, name, mod):
    parent, _, leaf = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, mod)


# ---------------------------------------------------------------- fusion on the graph
def _fuse_graph(gm, is_qat):
    """Fuse conv(-bn)(-relu), linear-relu and bn-relu chains found in the graph."""
    fusable_heads = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm3d)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(_module(gm, node), fusable_heads):
            continue
        chain = [node]
        cur = node
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            head_mod = _module(gm, chain[0])
            if len(chain) == 1 and isinstance(head_mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and \
                    nxt.op == "call_module" and isinstance(
                        _module(gm, nxt), (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                chain.append(nxt)
            elif _is_relu(gm, nxt) and nxt.args and nxt.args[0] is cur:
                chain.append(nxt)
                break
            else:
                break
            cur = nxt
        if len(chain) == 1:
            continue
        mods = [_module(gm, n) if n.op == "call_module" else nn.ReLU() for n in chain]
        mods[-1].train(mods[0].training)  # a functional relu became a module
        fuser = get_fuser_method(tuple(type(m) for m in mods))
        if fuser is None:
            continue
        fused = fuser(is_qat, *mods)
        _set_module(gm, chain[0].target, fused)
        last = chain[-1]
        last.replace_all_uses_with(chain[0])
        for n in reversed(chain[1:]):
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def fuse_fx(model, fuse_custom_config=None, backend_config=None):
    """Trace ``model`` and fuse its conv/bn/relu and linear/relu chains (eval mode)."""
    gm = fx.symbolic_trace(model)
    return _fuse_graph(gm, is_qat=model.training)


# ---------------------------------------------------------------- prepare
def _qconfig_for(mapping, name, mod):
    """The QConfig for a module call; fused modules are looked up by their first module's
    type as well."""
    q = mapping._qconfig_for_module(name, type(mod))
    inner = mod[0] if isinstance(mod, nn.Sequential) and len(mod) else None
    if inner is not None and name not in mapping.module_name_qconfigs and \
            type(inner) in mapping.object_type_qconfigs and \
            type(mod) not in mapping.object_type_qconfigs:
        q = mapping.object_type_qconfigs[type(inner)]
    return q


def _is_dynamic_qconfig(qconfig):
    act = qconfig.activation()
    return bool(getattr(act, "is_dynamic", False))


def _prepare(model, qconfig_mapping, is_qat, example_inputs):
    if isinstance(qconfig_mapping, dict):
        qconfig_mapping = QConfigMapping.from_dict(qconfig_mapping)
    if qconfig_mapping is None:
        qconfig_mapping = QConfigMapping()
    if example_inputs is None:
        raise TypeError("prepare_fx: example_inputs is required (a tuple of inputs)")
    gm = fx.symbolic_trace(copy.deepcopy(model))  # the caller's model is left as it was
    _fuse_graph(gm, is_qat)
    static_map = get_default_static_quant_module_mappings()
    dynamic_map = get_default_dynamic_quant_module_mappings()
    qat_map = get_default_qat_module_mappings() if is_qat else {}
    gm.meta["_qflow_dynamic"] = []
    # 1. qconfigs; QAT modules swapped in
    quantized = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = _module(gm, node)
        qconfig = _qconfig_for(qconfig_mapping, node.target, mod)
        if qconfig is None:
            continue
        if _is_dynamic_qconfig(qconfig):
            if type(mod) in dynamic_map:
                mod.qconfig = qconfig
                gm.meta["_qflow_dynamic"].append(node.target)
            continue
        if type(mod) not in static_map and type(mod) not in qat_map:
            continue
        mod.qconfig = qconfig
        if is_qat and type(mod) in qat_map:
            for child in mod.modules():
                child.qconfig = qconfig
            mod = qat_map[type(mod)].from_float(mod)
            _set_module(gm, node.target, mod)
        quantized[node] = qconfig
    # 2. observers
    counter = [0]

    def new_observer(qconfig, after):
        name = f"activation_post_process_{counter[0]}"
        counter[0] += 1
        gm.add_submodule(name, qconfig.activation())
        with gm.graph.inserting_after(after):
            obs = gm.graph.call_module(name, (after,))
        after.replace_all_uses_with(obs, delete_user_cb=lambda u: u is not obs)
        return obs

    def source(n):
        """Walk back through share-observer ops to the value whose observer ``n`` uses."""
        while isinstance(n, fx.Node) and n.args and (_is_share(gm, n) or
                                                      _is_observer_node(gm, n)):
            n = n.args[0]
        return n

    observed = {}  # source node -> its observer node
    for node in list(gm.graph.nodes):
        if node not in quantized:
            continue
        qconfig = quantized[node]
        arg = node.args[0] if node.args else None
        if isinstance(arg, fx.Node):
            src = source(arg)
            if src not in observed:
                observed[src] = new_observer(qconfig, src)
        observed[node] = new_observer(qconfig, node)
    gm.recompile()
    gm.meta["_qflow_quantized"] = [n.target for n in quantized]
    gm.meta["_qflow_is_qat"] = is_qat
    return gm


def prepare_fx(model, qconfig_mapping, example_inputs, prepare_custom_config=None,
               _equalization_config=None, backend_config=None):
    """Trace and prepare an eval-mode model for post-training static (or dynamic)
    quantization; returns an observed ``GraphModule`` to calibrate, then ``convert_fx``."""
    if model.training:
        model = copy.deepcopy(model).eval()
    return _prepare(model, qconfig_mapping, False, example_inputs)


def prepare_qat_fx(model, qconfig_mapping, example_inputs, prepare_custom_config=None,
                   backend_config=None):
    """Trace and prepare a training-mode model for quantization-aware training (fake-quantized
    weights and activations); train it, then ``convert_fx``."""
    if not model.training:
        raise AssertionError("prepare_qat_fx only works on models in training mode")
    return _prepare(model, qconfig_mapping, True, example_inputs)


# ---------------------------------------------------------------- convert
def _is_observer_node(gm, node):
    from .quantize import _is_activation_post_process
    return node.op == "call_module" and _is_activation_post_process(_module(gm, node))


def _drop_requantize(gm):
    """Between two int8 modules, ``dequantize → share-observer ops → quantize`` with the first
    module's own output qparams is the identity on the integers (max-pool, ReLU, flatten,
    reshape commute with affine quantization): keep the values quantized through the chain."""
    graph = gm.graph
    for q in list(graph.nodes):
        if q.op != "call_function" or q.target is not ember.quantize_per_tensor:
            continue
        chain, n = [], q.args[0]
        while isinstance(n, fx.Node) and _is_share(gm, n) and len(n.users) == 1 and n.args:
            chain.append(n)
            n = n.args[0]
        d = n
        if not (isinstance(d, fx.Node) and d.op == "call_method" and d.target == "dequantize"):
            continue
        producer = d.args[0]
        qmod = _module(gm, producer) if isinstance(producer, fx.Node) and \
            producer.op == "call_module" else None
        if qmod is None or not hasattr(qmod, "scale") or \
                float(qmod.scale) != q.args[1] or int(qmod.zero_point) != q.args[2]:
            continue
        first = chain[-1] if chain else q
        first.replace_input_with(d, producer)
        q.replace_all_uses_with(q.args[0])
        graph.erase_node(q)
        if not d.users:
            graph.erase_node(d)


def _reference_module(gm, mod):
    """The reference module (``ember.ao.nn.quantized.reference``) of an observed or QAT
    Linear/Conv, fused or not, and whether a ReLU follows it."""
    from ember.ao.nn.intrinsic.modules.fused import _FusedModule
    from ember.ao.nn.intrinsic.qat import _ConvBnNd
    from ember.ao.nn.quantized import reference as nnqr

    from .quantize import _fold_qat_conv_bn
    from .utils import get_qparam_dict
    if isinstance(mod, _ConvBnNd):
        mod = _fold_qat_conv_bn(mod)
    relu = type(mod).__name__.startswith(("LinearReLU", "ConvReLU"))
    base = mod[0] if isinstance(mod, _FusedModule) else mod
    if isinstance(base, nn.Linear):
        ref_cls = nnqr.Linear
    elif isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        ref_cls = getattr(nnqr, f"Conv{len(base.kernel_size)}d")
    else:
        return None, False
    wobs = getattr(mod, "weight_fake_quant", None)
    if wobs is None:  # post-training: the qconfig's weight observer, run on the weight
        wobs = mod.qconfig.weight()
        wobs(base.weight)
    return ref_cls.from_float(base, get_qparam_dict(wobs)), relu


def _convert_reference(gm):
    """``convert_fx(..., is_reference=True)``: every observer becomes ``quantize_per_tensor →
    dequantize`` with its qparams, and every quantized module its reference module (float
    weight quantized and dequantized in forward; a fused ReLU follows as ``F.relu``), as
    PyTorch's ``convert_to_reference_fx``. Dynamic qconfigs are left float."""
    graph = gm.graph
    targets = set(gm.meta["_qflow_quantized"])
    for node in list(graph.nodes):
        if node.op != "call_module" or node.target not in targets:
            continue
        ref, relu = _reference_module(gm, _module(gm, node))
        if ref is None:
            continue
        _set_module(gm, node.target, ref)
        if relu:
            with graph.inserting_after(node):
                r = graph.call_function(F.relu, (node,))
            node.replace_all_uses_with(r, delete_user_cb=lambda u: u is not r)
    for node in list(graph.nodes):
        if not _is_observer_node(gm, node):
            continue
        obs = _module(gm, node)
        scale, zp = obs.calculate_qparams()
        with graph.inserting_after(node):
            q = graph.call_function(ember.quantize_per_tensor,
                                    (node.args[0], float(scale.reshape(-1)[0]),
                                     int(zp.reshape(-1)[0]), getattr(obs, "dtype", Q.quint8)))
        with graph.inserting_after(q):
            dq = graph.call_method("dequantize", (q,))
        node.replace_all_uses_with(dq)
        graph.erase_node(node)
    return _drop_observers_and_recompile(gm, remove_qconfig=True)


def convert_to_reference_fx(graph_module, convert_custom_config=None, _remove_qconfig=True,
                            qconfig_mapping=None, backend_config=None):
    """A prepared GraphModule as a reference quantized model (see ``_convert_reference``)."""
    return convert_fx(graph_module, convert_custom_config, _remove_qconfig, qconfig_mapping,
                      backend_config, is_reference=True)


def convert_fx(graph_module, convert_custom_config=None, _remove_qconfig=True,
               qconfig_mapping=None, backend_config=None, keep_original_weights=False,
               is_reference=False):
    """Convert a prepared (and calibrated or trained) GraphModule into an int8 one (or, with
    ``is_reference=True``, into a reference quantized model: float ops between
    quantize/dequantize pairs, as ``convert_to_reference_fx``)."""
    from .quantize import _fold_qat_conv_bn, _SharedWeightQConfig
    from ember.ao.nn.intrinsic.qat import _ConvBnNd
    gm = graph_module
    if "_qflow_quantized" not in getattr(gm, "meta", {}):
        raise ValueError("convert_fx expects a GraphModule returned by prepare_fx or "
                         "prepare_qat_fx")
    gm = copy.deepcopy(gm)
    if is_reference:
        return _convert_reference(gm)
    static_map = get_default_static_quant_module_mappings()
    dynamic_map = get_default_dynamic_quant_module_mappings()
    graph = gm.graph
    targets = set(gm.meta["_qflow_quantized"])
    for node in list(graph.nodes):
        if node.op != "call_module" or node.target not in targets:
            continue
        mod = _module(gm, node)
        # the output observer is this node's only user after prepare
        out_obs = next((u for u in node.users if _is_observer_node(gm, u)), None)
        if out_obs is None:
            continue
        src = mod
        if isinstance(src, _ConvBnNd):
            src.activation_post_process = _module(gm, out_obs)
            src = _fold_qat_conv_bn(src)
        src.activation_post_process = _module(gm, out_obs)
        if hasattr(src, "weight_fake_quant"):
            src.qconfig = _SharedWeightQConfig(src.qconfig.activation, src.weight_fake_quant)
        qcls = static_map.get(type(src)) or static_map.get(type(mod))
        if qcls is None:
            continue
        qmod = qcls.from_float(src)
        _set_module(gm, node.target, qmod)
        # quantize the float input with its observer's qparams
        arg = node.args[0]
        in_obs = arg if isinstance(arg, fx.Node) and _is_observer_node(gm, arg) else None
        if in_obs is None and isinstance(arg, fx.Node):
            n = arg
            while not _is_observer_node(gm, n) and n.args and isinstance(n.args[0], fx.Node):
                n = n.args[0]
            in_obs = n if _is_observer_node(gm, n) else None
        if in_obs is None:
            raise RuntimeError(f"convert_fx: no input observer found for {node.target}")
        scale, zp = _module(gm, in_obs).calculate_qparams()
        dtype = getattr(_module(gm, in_obs), "dtype", Q.quint8)
        with graph.inserting_before(node):
            q = graph.call_function(ember.quantize_per_tensor,
                                    (arg, float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]),
                                     dtype))
        node.update_arg(0, q)
        with graph.inserting_after(node):
            dq = graph.call_method("dequantize", (node,))
        node.replace_all_uses_with(dq, delete_user_cb=lambda u: u is not dq)
    for name in gm.meta["_qflow_dynamic"]:
        mod = gm.get_submodule(name)
        qcls = dynamic_map.get(type(mod))
        if qcls is not None:
            _set_module(gm, name, qcls.from_float(mod))
    # observers leave the graph
    for node in list(graph.nodes):
        if _is_observer_node(gm, node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    _drop_requantize(gm)
    return _drop_observers_and_recompile(gm, _remove_qconfig)


def _drop_observers_and_recompile(gm, remove_qconfig):
    """The end of a convert: the observer submodules and (optionally) the qconfigs go, dead
    nodes are removed and the code is regenerated."""
    for name, _ in list(gm.named_children()):
        if re.fullmatch(r"activation_post_process_\d+", name):
            delattr(gm, name)
    if remove_qconfig:
        for m in gm.modules():
            if hasattr(m, "qconfig"):
                del m.qconfig
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm

