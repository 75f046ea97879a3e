"""Small namespaces that answer as PyTorch does on a machine without a GPU:
``ember.cuda``, ``ember.backends``, ``ember.accelerator``, ``ember.mps``; layouts and
memory formats."""

from __future__ import annotations

import contextlib
import types
import warnings


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


class _CudaAutocast:
    """``ember.cuda.amp.autocast``: as PyTorch's without CUDA, a no-op (with a warning)."""

    def __init__(self, enabled=True, dtype=None, cache_enabled=True):
        if enabled:
            warnings.warn("CUDA is not available. Disabling autocast.", UserWarning,
                          stacklevel=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


class _DisabledGradScaler:
    """``ember.cuda.amp.GradScaler``: as PyTorch's without CUDA, a pass-through that leaves
    losses unscaled and calls ``optimizer.step()`` directly."""

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        if enabled:
            warnings.warn("ember.cuda.amp.GradScaler is enabled, but CUDA is not available. "
                          "Disabling.", UserWarning, stacklevel=2)

    def scale(self, outputs):
        return outputs

    def unscale_(self, optimizer):
        pass

    def step(self, optimizer, *args, **kwargs):
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        pass

    def get_scale(self):
        return 1.0

    def is_enabled(self):
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state_dict):
        pass


cuda.amp = types.SimpleNamespace(autocast=_CudaAutocast, GradScaler=_DisabledGradScaler)
cuda.is_bf16_supported = lambda including_emulation=True: False
cuda.get_device_capability = _no_gpu
cuda.get_device_properties = _no_gpu


def _gpu_only_class(name, doc):
    """A CUDA class as PyTorch without a GPU has it: importable (libraries annotate with it
    and test ``isinstance``), raising when constructed."""
    return type(name, (), {"__init__": _no_gpu, "__doc__": doc, "__module__": "ember.cuda"})


cuda.CUDAGraph = _gpu_only_class("CUDAGraph", "A captured CUDA graph (needs a GPU).")
cuda.graph = _gpu_only_class("graph", "Context manager capturing a CUDA graph (needs a GPU).")
cuda.Stream = _gpu_only_class("Stream", "A CUDA stream (needs a GPU).")
cuda.Event = _gpu_only_class("Event", "A CUDA event (needs a GPU).")
cuda.StreamContext = _gpu_only_class("StreamContext", "Selects a CUDA stream (needs a GPU).")
cuda.current_stream = _no_gpu
# one RNG state per GPU: none here, as PyTorch answers without CUDA
cuda.get_rng_state_all = lambda: []
cuda.set_rng_state_all = lambda new_states: None
cuda.get_rng_state = _no_gpu
cuda.set_rng_state = _no_gpu
cuda.default_stream = _no_gpu

mps = types.ModuleType("ember.mps")
mps.is_available = lambda: False

backends = types.ModuleType("ember.backends")


class _Flags(types.ModuleType):
    """A flags namespace that is also a module, so ``import torch.backends.cudnn`` works
    under the alias (its name is set where it is attached below)."""

    def __init__(self, **attrs):
        super().__init__("ember.backends")
        self.__dict__.update(attrs)


backends.cudnn = _Flags(enabled=True, benchmark=False, deterministic=False,
                        allow_tf32=True, benchmark_limit=10, is_available=lambda: False,
                        version=lambda: None)


@contextlib.contextmanager
def _cudnn_flags(enabled=False, benchmark=False, benchmark_limit=10, deterministic=False,
                 allow_tf32=True):
    """``ember.backends.cudnn.flags(...)``: set the flags for the block, then restore them."""
    c = backends.cudnn
    names = ("enabled", "benchmark", "benchmark_limit", "deterministic", "allow_tf32")
    old = {n: getattr(c, n) for n in names}
    for n, v in zip(names, (enabled, benchmark, benchmark_limit, deterministic, allow_tf32)):
        setattr(c, n, v)
    try:
        yield
    finally:
        for n, v in old.items():
            setattr(c, n, v)


backends.cudnn.flags = _cudnn_flags
backends.mps = _Flags(is_available=lambda: False, is_built=lambda: False)
backends.cuda = _Flags(is_built=lambda: False,
                       matmul=_Flags(allow_tf32=False, allow_fp16_reduced_precision_reduction=True))
backends.mkldnn = _Flags(is_available=lambda: False, enabled=False)
backends.openmp = _Flags(is_available=lambda: False)
# a package whose flag namespaces are its submodules (``import torch.backends.cudnn``)
backends.__path__ = []
for _n, _m in list(vars(backends).items()):
    if isinstance(_m, _Flags):
        _m.__name__ = "ember.backends." + _n


class _QuantizedBackend:
    """``ember.backends.quantized``: the quantized engine name (PyTorch's setting; ember's int8
    kernels compute exact integer results whichever engine is named)."""

    supported_engines = ["qnnpack", "onednn", "x86", "fbgemm"]

    def __init__(self):
        self._engine = "x86"

    @property
    def engine(self):
        return self._engine

    @engine.setter
    def engine(self, name):
        if name not in self.supported_engines:
            raise RuntimeError(f"quantized engine {name!r} is not supported; choose one of "
                               f"{self.supported_engines}")
        self._engine = name


backends.quantized = _QuantizedBackend()  # issue 20 (qflow)

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
sparse_csr, sparse_csc = layout("sparse_csr"), layout("sparse_csc")
sparse_bsr, sparse_bsc = layout("sparse_bsr"), layout("sparse_bsc")


class memory_format:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "ember." + self.name


contiguous_format = memory_format("contiguous_format")
preserve_format = memory_format("preserve_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
