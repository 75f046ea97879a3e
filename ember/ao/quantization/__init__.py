"""``ember.ao.quantization``: PyTorch's quantization flows on ember.

* eager mode: ``QuantStub``/``DeQuantStub``, ``fuse_modules``, ``prepare`` → calibrate →
  ``convert`` (static int8); ``prepare_qat`` → train → ``convert`` (QAT);
  ``quantize_dynamic`` (int8 weights, activations quantized at run time);
* graph mode on ``ember.fx``: ``quantize_fx.prepare_fx`` / ``prepare_qat_fx`` / ``convert_fx``;
* weight-only (torchao's shape): ``quantize_(model, int8_weight_only())`` and
  ``int4_weight_only(group_size=128)``.
"""

from .observer import *  # noqa: F401,F403
from .observer import (_PartialWrapper, _with_args, _with_callable_args,  # noqa: F401
                       calculate_qmin_qmax)
from .fake_quantize import *  # noqa: F401,F403
from .qconfig import *  # noqa: F401,F403
from .qconfig_mapping import *  # noqa: F401,F403
from .stubs import *  # noqa: F401,F403
from .fuse_modules import fuse_modules, fuse_modules_qat, fuse_known_modules  # noqa: F401
from .fuser_method_mappings import (fuse_conv_bn, fuse_conv_bn_relu,  # noqa: F401
                                    fuse_convtranspose_bn, fuse_linear_bn, get_fuser_method)
from .quantization_mappings import *  # noqa: F401,F403
from .quantize import *  # noqa: F401,F403
from .quant_api import (Int4WeightOnlyConfig, Int4WeightOnlyLinear,  # noqa: F401
                        Int8WeightOnlyConfig, Int8WeightOnlyLinear, int4_weight_only,
                        int8_weight_only, quantize_)
from . import quantize_fx  # noqa: F401,E402
