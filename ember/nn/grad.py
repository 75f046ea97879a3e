"""``torch.nn.grad``: the gradients of convolutions with respect to their input and weight,
as functions. Each runs the convolution and differentiates it with ember's autograd, so they
agree with ``conv.backward`` by construction."""

from __future__ import annotations

__all__ = ["conv1d_input", "conv1d_weight", "conv2d_input", "conv2d_weight", "conv3d_input",
           "conv3d_weight"]


def _conv_grad(conv, wrt, input, weight, grad_output, stride, padding, dilation, groups):
    import ember
    with ember.enable_grad():
        x = input.detach().requires_grad_(wrt == "input")
        w = weight.detach().requires_grad_(wrt == "weight")
        out = conv(x, w, None, stride, padding, dilation, groups)
        if tuple(out.shape) != tuple(grad_output.shape):
            raise RuntimeError(f"{conv.__name__}_{wrt}: grad_output has shape "
                               f"{tuple(grad_output.shape)}, but the convolution gives "
                               f"{tuple(out.shape)}")
        (g,) = ember.autograd.grad(out, x if wrt == "input" else w, grad_output)
    return g


def _input_fn(conv, name):
    def fn(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1):
        import ember
        x = ember.zeros(tuple(input_size), dtype=grad_output.dtype)
        return _conv_grad(conv(), "input", x, weight, grad_output, stride, padding, dilation,
                          groups)
    fn.__name__ = name
    fn.__doc__ = (f"The gradient of ``{name[:6]}`` with respect to an input of shape "
                  f"``input_size``, given ``grad_output``.")
    return fn


def _weight_fn(conv, name):
    def fn(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
        import ember
        w = ember.zeros(tuple(weight_size), dtype=grad_output.dtype)
        return _conv_grad(conv(), "weight", input, w, grad_output, stride, padding, dilation,
                          groups)
    fn.__name__ = name
    fn.__doc__ = (f"The gradient of ``{name[:6]}`` with respect to a weight of shape "
                  f"``weight_size``, given ``input`` and ``grad_output``.")
    return fn


def _f(name):
    def get():
        from . import functional
        return getattr(functional, name)
    return get


conv1d_input = _input_fn(_f("conv1d"), "conv1d_input")
conv2d_input = _input_fn(_f("conv2d"), "conv2d_input")
conv3d_input = _input_fn(_f("conv3d"), "conv3d_input")
conv1d_weight = _weight_fn(_f("conv1d"), "conv1d_weight")
conv2d_weight = _weight_fn(_f("conv2d"), "conv2d_weight")
conv3d_weight = _weight_fn(_f("conv3d"), "conv3d_weight")
