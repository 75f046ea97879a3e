"""``ember.nn``: modules, parameters, functional forms, init and utilities."""

from .parameter import (Buffer, Parameter, UninitializedBuffer,  # noqa: F401
                        UninitializedParameter)
from .modules import *  # noqa: F401,F403
from . import functional, init, modules, parameter, utils  # noqa: F401
from . import parallel  # noqa: F401,E402  (DDP, DataParallel: mpi4py loads on use)
from .parallel import DataParallel  # noqa: F401,E402
