"""safetensors files for ember tensors (the ``safetensors`` package's API, ember flavour).

safetensors stores a JSON header and raw tensor bytes, with no pickle, so loading never runs
code. Files written here load with ``safetensors.torch.load_file`` and the other way round.
The ``safetensors`` package (optional extra ``ember[safetensors]``) does the format work:
ember hands it NumPy memory through its framework-neutral ``serialize``/``deserialize``
calls, which, unlike its NumPy helpers, know bfloat16.
"""

from __future__ import annotations

import os

import numpy as np

from . import _dtype as D
from ._storage import address, memory_block
from ._tensor import Tensor, _make

__all__ = ["save", "save_file", "load", "load_file", "save_model", "load_model"]

# safetensors' element type codes -> ember dtype names. complex128 has no code in the format.
_CODES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
          "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
          "BOOL": "bool", "C64": "complex64"}
_SUPPORTED = set(_CODES.values())


def _package():
    try:
        import safetensors
    except ImportError:
        raise ImportError("ember.safetensors needs the safetensors package: "
                          "pip install 'ember[safetensors]'") from None
    return safetensors


def _specs(tensors):
    """TensorSpecs for ``serialize``; the arrays they point into must outlive the call."""
    st = _package()
    if not isinstance(tensors, dict):
        raise TypeError(f"expected a dict of name -> Tensor, got {type(tensors).__name__}")
    _check_no_sharing(tensors)
    specs = {}
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if not isinstance(t, Tensor):
            raise ValueError(f"Key `{name}` is invalid, expected ember.Tensor but received "
                             f"{type(t).__name__}")
        arr = t._data
        if arr.size and not arr.flags.c_contiguous:
            raise ValueError(
                f"You are trying to save a non contiguous tensor: `{name}` which is not "
                f"allowed. Call `.contiguous()` on it before saving, or save the full tensor "
                f"it views and slice it again after loading.")
        if t.dtype.name not in _SUPPORTED:
            raise ValueError(f"safetensors cannot store `{name}`: dtype {t.dtype} has no "
                             f"safetensors type")
        specs[name] = st.TensorSpec(dtype=t.dtype.name, shape=list(arr.shape),
                                    data_ptr=address(arr) if arr.size else 0,
                                    data_len=arr.nbytes)
    return specs


def _check_no_sharing(tensors):
    """safetensors has no views: tensors whose memory overlaps cannot be saved."""
    spans = []
    for name, t in tensors.items():
        arr = t._data if isinstance(t, Tensor) else None
        if arr is None or arr.size == 0:
            continue
        lo, hi = np.lib.array_utils.byte_bounds(arr)
        spans.append((lo, hi, name))
    spans.sort()
    for (lo1, hi1, n1), (lo2, hi2, n2) in zip(spans, spans[1:]):
        if lo2 < hi1:
            raise RuntimeError(
                f"Some tensors share memory, this will lead to duplicate memory on disk and "
                f"potential differences when loading them again: [{n1!r}, {n2!r}]. Save a copy "
                f"(`.clone()`) of one of them, or use save_model, which drops duplicates.")


def _tensors_from(entries):
    out = {}
    for name, info in entries:
        code = info["dtype"]
        if code not in _CODES:
            raise NotImplementedError(f"safetensors dtype {code} (tensor `{name}`) is not "
                                      "supported by ember")
        dt = D._BY_NAME[_CODES[code]]
        arr = np.frombuffer(info["data"], dtype=dt.np).reshape(info["shape"])
        out[name] = _make(arr)
    return out


def save(tensors, metadata=None):
    """The safetensors bytes of a dict of tensors."""
    specs = _specs(tensors)
    return bytes(_package().serialize(specs, metadata=metadata))


def save_file(tensors, filename, metadata=None):
    """Write a dict of contiguous, non-overlapping tensors to a safetensors file."""
    specs = _specs(tensors)
    _package().serialize_file(specs, os.fspath(filename), metadata=metadata)


def load(data):
    """Tensors from safetensors bytes (``name -> Tensor``)."""
    return _tensors_from(_package().deserialize(data))


def load_file(filename, device="cpu"):
    """Tensors from a safetensors file (``name -> Tensor``, writable, on the CPU)."""
    from ._device import cpu_only
    cpu_only(device, "safetensors.load_file")
    with open(filename, "rb") as fh:
        data = fh.read()
    return load(data)


def _duplicates(state_dict, preferred=()):
    """Groups of names whose tensors view the same memory: kept name -> names to drop."""
    groups = {}
    for name, t in state_dict.items():
        arr = t._data
        if arr.size == 0:
            continue
        block = memory_block(arr)
        key = (address(block) if block is not None else id(arr), address(arr), arr.shape,
               arr.strides)
        groups.setdefault(key, []).append(name)
    preferred = set(preferred)
    out = {}
    for names in groups.values():
        if len(names) > 1:
            keep = next((n for n in names if n in preferred), names[0])
            out[keep] = [n for n in names if n != keep]
    return out


def save_model(model, filename, metadata=None, force_contiguous=True):
    """Save ``model.state_dict()``, dropping names that alias another (tied weights).

    Each dropped name is recorded in the metadata as ``dropped -> kept``.
    """
    state = model.state_dict()
    for kept, dropped in _duplicates(state).items():
        for name in dropped:
            metadata = {} if metadata is None else metadata
            metadata.setdefault(name, kept)
            del state[name]
    if force_contiguous:
        state = {k: v.contiguous() for k, v in state.items()}
    save_file(state, filename, metadata=metadata)


def load_model(model, filename, strict=True, device="cpu"):
    """Load a safetensors file into ``model``; returns ``(missing, unexpected)`` names.

    Names the file dropped because they alias another tensor of the model are not missing.
    """
    state = load_file(filename, device=device)
    dups = _duplicates(model.state_dict(), preferred=state.keys())
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing, unexpected = set(missing), list(unexpected)
    for dropped in dups.values():
        for name in dropped:
            if name in missing:
                missing.remove(name)
            else:
                unexpected.append(name)
    if strict and (missing or unexpected):
        msg = f"Error(s) in loading state_dict for {type(model).__name__}:"
        if missing:
            msg += "\n    Missing key(s) in state_dict: " + ", ".join(
                f'"{k}"' for k in sorted(missing))
        if unexpected:
            msg += "\n    Unexpected key(s) in state_dict: " + ", ".join(
                f'"{k}"' for k in sorted(unexpected))
        raise RuntimeError(msg)
    return missing, unexpected
