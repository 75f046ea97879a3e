"""ember: a deep learning framework in Python with PyTorch's API.

``import ember as torch`` runs ordinary PyTorch programs on NumPy.
"""

from __future__ import annotations

import builtins as _builtins

__version__ = "0.1.0"

from . import _allocator  # noqa: F401  (keeps freed memory for reuse: see its docstring)
from . import _dtype  # noqa: E402
from ._dtype import (bfloat16, bool_ as bool, can_cast, cdouble, cfloat, complex64, complex128,
                     double, dtype, finfo, float, float16, float32, float64,
                     get_default_dtype, half, iinfo, int, int8, int16, int32, int64, long,
                     promote_types, set_default_dtype, short, uint8)
from ._dtype import (chalf, complex32, float8_e4m3fn, float8_e5m2, uint16,  # noqa: E402
                     uint32, uint64)
from ._dtype import qint8, qint32, quint2x4, quint4x2, quint8  # noqa: E402,F401 (issue 20)
from ._device import device
from ._random import (Generator, default_generator, get_rng_state, initial_seed, manual_seed,
                      seed, set_rng_state)
from ._tensor import Size, Tensor, is_tensor
from . import _tensor_methods

_tensor_methods.install()
resize_as_ = _tensor_methods._resize_as_
from ._quantized import (_empty_affine_quantized, _make_per_channel_quantized_tensor,  # noqa
                         _make_per_tensor_quantized_tensor, dequantize, per_channel_affine,
                         per_channel_affine_float_qparams, per_channel_symmetric,
                         per_tensor_affine, per_tensor_symmetric, qscheme, quantize_per_channel,
                         quantize_per_tensor, quantize_per_tensor_dynamic)

from .autograd.grad_mode import (enable_grad, inference_mode, is_grad_enabled,  # noqa: E402
                                 is_inference_mode_enabled, no_grad, set_grad_enabled)
from .ops.creation import *  # noqa: E402,F401,F403
from .ops.elementwise import *  # noqa: E402,F401,F403
from .ops.elementwise import sgn  # noqa: E402,F401
from .ops.reduction import *  # noqa: E402,F401,F403
from .ops.reduction import return_types  # noqa: E402,F401
from .ops.shape import *  # noqa: E402,F401,F403
from .ops.indexing import *  # noqa: E402,F401,F403
from .ops.sorting import *  # noqa: E402,F401,F403
from .ops.linalg import *  # noqa: E402,F401,F403
from .ops.random import *  # noqa: E402,F401,F403
from .ops.nn import *  # noqa: E402,F401,F403
from .ops.conv import (adaptive_avg_pool1d, avg_pool1d, channel_shuffle,  # noqa: E402,F401
                       conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d,
                       conv_transpose3d, max_pool1d, max_pool1d_with_indices, max_pool2d,
                       max_pool3d, native_channel_shuffle, pixel_shuffle, pixel_unshuffle)
# torch.adaptive_max_pool1d returns (values, indices), unlike F.adaptive_max_pool1d
from .ops.conv import adaptive_max_pool1d_with_indices as adaptive_max_pool1d  # noqa: E402,F401
from ._printing import set_printoptions  # noqa: E402,F401
from . import autograd  # noqa: E402,F401
from .autograd.anomaly import is_anomaly_enabled, set_anomaly_enabled  # noqa: E402,F401
from ._namespaces import (accelerator, backends, cuda, mps,  # noqa: E402,F401
                          sparse_coo, strided, layout, memory_format, contiguous_format,
                          preserve_format, channels_last, channels_last_3d)


def result_type(tensor1, tensor2):
    """PyTorch's result dtype for two operands (tensors or python scalars)."""
    return _dtype.result_type_of(tensor1, tensor2)


def is_floating_point(input):
    return input.is_floating_point()


def is_complex(input):
    return input.is_complex()


def numel(input):
    return input._data.size


def is_nonzero(input):
    if input.numel() != 1:
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    return _builtins.bool(input.item())


def from_dlpack(ext_tensor):
    """A tensor sharing memory with any DLPack producer (NumPy arrays, PyTorch tensors...)."""
    from ._storage import array_from_dlpack
    return from_numpy(array_from_dlpack(ext_tensor))


def get_default_device():
    """The device factory functions use when given none (``set_default_device``)."""
    from ._device import default_device
    return default_device()


def set_default_device(d):
    """Make ``d`` (``"cpu"``, ``"meta"``) the default device of factory functions and of
    module construction in this thread; None restores cpu."""
    from ._device import set_default_device as _set
    _set(d)


def use_deterministic_algorithms(mode, *, warn_only=False):
    pass  # ember's CPU kernels are deterministic already


def are_deterministic_algorithms_enabled():
    return True


def set_num_threads(n):
    from ._threads import set_num_threads as _s
    _s(n)


def get_num_threads():
    from ._threads import get_num_threads as _g
    return _g()


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
            options=None, disable=False):
    """PyTorch's ``torch.compile`` (see ``ember.compiler``); also a decorator."""
    from .compiler._api import compile as _compile
    return _compile(model, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                    options=options, disable=disable)


from ._tensor import (BFloat16Tensor, BoolTensor, ByteTensor, CharTensor,  # noqa: E402,F401
                      DoubleTensor, FloatTensor, HalfTensor, IntTensor, LongTensor,
                      ShortTensor)


# Subpackages load on first use, which keeps ``import ember`` fast.
_LAZY_MODULES = {"nn", "optim", "utils", "linalg", "fft", "special", "distributions", "sparse",
                 "vision", "serialization", "onnx", "profiler", "jit", "func", "testing",
                 "random", "amp", "quantization", "distributed", "safetensors", "demo",
                 "export", "signal", "masked"}
_LAZY_MODULES |= {"audio", "text"}
_LAZY_MODULES |= {"fx"}
_LAZY_MODULES |= {"multiprocessing", "futures"}  # ember.multiprocessing, ember.futures (dist)
_LAZY_MODULES |= {"functorch"}
_LAZY_MODULES |= {"compat", "version", "torch_version", "storage", "types", "functional",
                  "overrides", "hub"}
_LAZY_ATTRS_COMPAT = {"autocast": "amp", "GradScaler": "amp", "sparse_csr_tensor": "sparse"}
_LAZY_MODULES |= {"compiler", "_dynamo", "_logging"}
_LAZY_MODULES |= {"_inductor"}  # AOT packaging (issue 17)
_LAZY_ATTRS = {"save": "serialization", "load": "serialization",
               "sparse_coo_tensor": "sparse", "spmm": "sparse", "stft": "_spectral",
               "istft": "_spectral", "hann_window": "signal.windows",
               "hamming_window": "signal.windows", "blackman_window": "signal.windows",
               "bartlett_window": "signal.windows", "kaiser_window": "signal.windows",
               "geqrf": "linalg", "orgqr": "linalg", "ormqr": "linalg"}
_LAZY_MODULES |= {"cpu"}  # training tools (issue 21)
_LAZY_MODULES |= {"ao"}  # quantization (issue 20)
_LAZY_MODULES |= {"library", "_C"}  # torch.library, torch._C (issue 23)
_LAZY_ATTRS.update(PyTorchFileReader="_zipfile", PyTorchFileWriter="_zipfile",
                   ScriptModule="jit", ScriptFunction="jit",
                   conv_tbc="nn._functional_compat", sparse_csc_tensor="sparse",
                   sparse_bsr_tensor="sparse")  # issue 23
_LAZY_ATTRS.update(sparse_bsc_tensor="sparse", sparse_compressed_tensor="sparse")  # issue 23
_LAZY_ATTRS.update(svd_lowrank="_lowrank", pca_lowrank="_lowrank")  # issue 23
_LAZY_ATTRS.update({n: "amp.autocast_mode" for n in (
    "autocast", "is_autocast_enabled", "is_autocast_cpu_enabled", "get_autocast_dtype",
    "get_autocast_cpu_dtype", "get_autocast_gpu_dtype", "is_autocast_cache_enabled",
    "clear_autocast_cache", "is_autocast_available")})
_LAZY_ATTRS.update({n: "ops.fake_quant" for n in (
    "fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine")})


def __getattr__(name):
    import importlib
    if name in _LAZY_MODULES:
        return importlib.import_module("." + name, __name__)
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module("." + _LAZY_ATTRS[name], __name__), name)
    if name in _LAZY_ATTRS_COMPAT:
        return getattr(importlib.import_module("." + _LAZY_ATTRS_COMPAT[name], __name__), name)
    raise AttributeError(f"module 'ember' has no attribute '{name}'")


# PyTorch's long tail of names (aliases, in-place and native-order spellings): ember.compat
from . import _longtail  # noqa: E402
_longtail.install(globals())
