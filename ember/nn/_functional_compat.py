"""Names ``torch.nn.functional`` defines besides its ops (issue 23): TorchScript-era helpers
and tables that libraries import from there, and ``conv_tbc``."""

from __future__ import annotations

from collections.abc import Callable  # noqa: F401  (PyTorch's nn.functional exports it)

from ..jit.annotations import BroadcastingList1, BroadcastingList2, BroadcastingList3  # noqa: F401
from ..overrides import (handle_torch_function, has_torch_function,  # noqa: F401
                         has_torch_function_unary, has_torch_function_variadic)

__all__ = ["BroadcastingList1", "BroadcastingList2", "BroadcastingList3", "Callable", "DType",
           "GRID_SAMPLE_INTERPOLATION_MODES", "GRID_SAMPLE_PADDING_MODES",
           "assert_int_or_pair", "boolean_dispatch", "conv_tbc", "handle_torch_function",
           "has_torch_function", "has_torch_function_unary", "has_torch_function_variadic",
           "reproducibility_notes", "sparse_support_notes"]

# the dtype annotation PyTorch uses in nn.functional's signatures
from .._dtype import dtype as DType  # noqa: E402

# grid_sample's mode and padding_mode names with the codes PyTorch's kernels take
GRID_SAMPLE_INTERPOLATION_MODES = {"bilinear": 0, "nearest": 1, "bicubic": 2}
GRID_SAMPLE_PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}

reproducibility_notes = {
    "forward_reproducibility_note": "On a CUDA device this operation may be nondeterministic; "
                                    "on ember's CPU backend it is deterministic.",
    "backward_reproducibility_note": "On a CUDA device this operation's gradient may be "
                                     "nondeterministic; on ember's CPU backend it is "
                                     "deterministic.",
    "cudnn_reproducibility_note": "With cuDNN this operation may pick a nondeterministic "
                                  "algorithm; ember does not use cuDNN.",
}
sparse_support_notes = {
    "sparse_beta_warning": "Sparse support is a beta feature: some layout, dtype and device "
                           "combinations may be unsupported or lack autograd.",
}


def boolean_dispatch(arg_name, arg_index, default, if_true, if_false, module_name, func_name):
    """A function that calls ``if_true`` or ``if_false`` by the boolean argument ``arg_name``
    (keyword, else position ``arg_index``, else ``default``), as ``max_pool2d`` dispatches on
    ``return_indices``."""
    def fn(*args, **kwargs):
        flag = default
        if arg_name in kwargs:
            flag = kwargs[arg_name]
        elif arg_index < len(args):
            flag = args[arg_index]
        return if_true(*args, **kwargs) if flag else if_false(*args, **kwargs)

    fn.__doc__ = if_true.__doc__ or if_false.__doc__
    if module_name is not None:
        fn.__module__ = module_name
    if func_name is not None:
        fn.__name__ = fn.__qualname__ = func_name
    return fn


def assert_int_or_pair(arg, arg_name, message):
    """Raise ``AssertionError(message.format(arg_name))`` unless ``arg`` is an int or a
    pair."""
    if not (isinstance(arg, int) or len(arg) == 2):
        raise AssertionError(message.format(arg_name))


def conv_tbc(input, weight, bias, pad=0):
    """1-d convolution in time-batch-channel layout: ``input`` ``(T, B, C_in)``, ``weight``
    ``(K, C_in, C_out)``, ``bias`` ``(C_out,)``, zero padding ``pad`` on both ends of time;
    returns ``(T + 2 pad - K + 1, B, C_out)``."""
    from . import functional as F
    if input.dim() != 3 or weight.dim() != 3 or bias.dim() != 1:
        raise RuntimeError(f"conv_tbc: expected input (T, B, C_in), weight (K, C_in, C_out) "
                           f"and bias (C_out,), got {tuple(input.shape)}, "
                           f"{tuple(weight.shape)}, {tuple(bias.shape)}")
    if input.shape[2] != weight.shape[1] or bias.shape[0] != weight.shape[2]:
        raise RuntimeError(f"conv_tbc: input has {input.shape[2]} channels and weight "
                           f"{tuple(weight.shape)}, bias {tuple(bias.shape)} do not match")
    out = F.conv1d(input.permute(1, 2, 0), weight.permute(2, 1, 0), bias, padding=pad)
    return out.permute(2, 0, 1)
