"""``torch.nn.parallel.scatter_gather``: split nested inputs over GPUs and gather outputs
back. Containers and non-tensor values are handled as PyTorch does (a non-tensor goes to
every device); tensors need CUDA devices (``comm``), which ember has none of here."""

from __future__ import annotations

from ..._tensor import Tensor
from . import comm

__all__ = ["scatter", "scatter_kwargs", "gather"]


def _is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(obj, "_asdict") and hasattr(obj, "_fields")


def scatter(inputs, target_gpus, dim=0):
    """One piece of ``inputs`` per GPU of ``target_gpus``: tensors split along ``dim``
    (needs CUDA), tuples/lists/dicts split element by element, other values repeated."""

    def scatter_map(obj):
        if isinstance(obj, Tensor):
            return comm.scatter(obj, target_gpus, None, dim)
        if _is_namedtuple(obj):
            return [type(obj)(*args) for args in zip(*map(scatter_map, obj))]
        if isinstance(obj, tuple) and len(obj) > 0:
            return list(zip(*map(scatter_map, obj)))
        if isinstance(obj, list) and len(obj) > 0:
            return [list(i) for i in zip(*map(scatter_map, obj))]
        if isinstance(obj, dict) and len(obj) > 0:
            return [type(obj)(i) for i in zip(*map(scatter_map, obj.items()))]
        return [obj for _ in target_gpus]

    return scatter_map(inputs)


def scatter_kwargs(inputs, kwargs, target_gpus, dim=0):
    """``scatter`` of positional and keyword inputs, padded to the same length with ``()``
    and ``{}``."""
    scattered = scatter(inputs, target_gpus, dim) if inputs else []
    kw = scatter(kwargs, target_gpus, dim) if kwargs else []
    if len(scattered) < len(kw):
        scattered.extend(() for _ in range(len(kw) - len(scattered)))
    elif len(kw) < len(scattered):
        kw.extend({} for _ in range(len(scattered) - len(kw)))
    return tuple(scattered), tuple(kw)


def gather(outputs, target_device, dim=0):
    """Outputs from several GPUs onto ``target_device``, concatenated along ``dim``
    (tensors need CUDA; None stays None; dicts and sequences gathered element by element)."""

    def gather_map(outs):
        out = outs[0]
        if isinstance(out, Tensor):
            if any(o.device.type == "cpu" for o in outs):
                raise AssertionError("Gather function not implemented for CPU tensors")
            return comm.gather(outs, dim, target_device)
        if out is None:
            return None
        if isinstance(out, dict):
            if not all(len(out) == len(d) for d in outs):
                raise ValueError("All dicts must have the same number of keys")
            return type(out)((k, gather_map([d[k] for d in outs])) for k in out)
        if _is_namedtuple(out):
            return type(out)._make(map(gather_map, zip(*outs)))
        return type(out)(map(gather_map, zip(*outs)))

    return gather_map(outputs)
