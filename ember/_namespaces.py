"""Small namespaces that answer as PyTorch does on a machine without a GPU:
``ember.cuda``, ``ember.backends``, ``ember.accelerator``, ``ember.mps``; layouts and
memory formats."""

from __future__ import annotations

import types


def _no_gpu(*args, **kwargs):
    raise RuntimeError("ember has no CUDA backend on this machine: ember.cuda.is_available() "
                       "is False. Keep tensors on 'cpu'.")


cuda = types.ModuleType("ember.cuda")
cuda.is_available = lambda: False
cuda.device_count = lambda: 0
cuda.is_initialized = lambda: False
cuda.manual_seed = lambda seed: None
cuda.manual_seed_all = lambda seed: None
cuda.synchronize = lambda device=None: None
cuda.empty_cache = lambda: None
cuda.current_device = _no_gpu
cuda.get_device_name = _no_gpu
cuda.set_device = _no_gpu
cuda.memory_allocated = lambda device=None: 0
cuda.max_memory_allocated = lambda device=None: 0


class _AmpNS:
    @staticmethod
    def autocast(*a, **k):
        raise NotImplementedError("ember.cuda.amp.autocast: no CUDA backend")


cuda.amp = _AmpNS()

mps = types.ModuleType("ember.mps")
mps.is_available = lambda: False

backends = types.ModuleType("ember.backends")


class _Flags(types.SimpleNamespace):
    pass


backends.cudnn = _Flags(enabled=True, benchmark=False, deterministic=False,
                        allow_tf32=True, is_available=lambda: False, version=lambda: None)
backends.mps = _Flags(is_available=lambda: False, is_built=lambda: False)
backends.cuda = _Flags(is_built=lambda: False,
                       matmul=_Flags(allow_tf32=False, allow_fp16_reduced_precision_reduction=True))
backends.mkldnn = _Flags(is_available=lambda: False, enabled=False)
backends.openmp = _Flags(is_available=lambda: False)

accelerator = types.ModuleType("ember.accelerator")
accelerator.is_available = lambda: False
accelerator.current_accelerator = lambda check_available=False: None
accelerator.device_count = lambda: 0


class layout:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "ember." + self.name


strided = layout("strided")
sparse_coo = layout("sparse_coo")


class memory_format:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "ember." + self.name


contiguous_format = memory_format("contiguous_format")
preserve_format = memory_format("preserve_format")
channels_last = memory_format("channels_last")
