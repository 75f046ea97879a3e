from .conv_fused import *  # noqa: F401,F403
from .conv_fused import _ConvBnNd  # noqa: F401
from .linear_relu import LinearReLU  # noqa: F401
