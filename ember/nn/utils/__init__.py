"""``ember.nn.utils``: gradient clipping, parameter vectors, parametrizations, fusion,
stateless calls and (from ``rnn``) sequence packing."""

from . import parametrizations, parametrize, rnn, stateless  # noqa: F401
from .clip_grad import clip_grad_norm, clip_grad_norm_, clip_grad_value_, get_total_norm
from .clip_grad import clip_grads_with_norm_
from .convert_parameters import parameters_to_vector, vector_to_parameters
from .fusion import (fuse_conv_bn_eval, fuse_conv_bn_weights, fuse_linear_bn_eval,
                     fuse_linear_bn_weights)
from .init import skip_init  # training tools (issue 21)
from .memory_format import (convert_conv2d_weight_memory_format,  # noqa: F401  (issue 23)
                            convert_conv3d_weight_memory_format)
from .weight_norm import remove_weight_norm, weight_norm
# the submodule first, then its function under the same name (PyTorch's layout)
from .spectral_norm import remove_spectral_norm, spectral_norm

__all__ = ["clip_grad_norm", "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_",
           "get_total_norm", "parameters_to_vector", "vector_to_parameters",
           "fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval",
           "fuse_linear_bn_weights", "parametrize",
           "parametrizations", "stateless", "rnn"]
__all__ += ["skip_init", "weight_norm", "remove_weight_norm", "spectral_norm",
            "remove_spectral_norm"]
__all__ += ["convert_conv2d_weight_memory_format", "convert_conv3d_weight_memory_format"]
