"""Tensor-parallel styles (PyTorch's ``torch.distributed.tensor.parallel``): how one module's
parameters are sharded and how its inputs and outputs are laid out."""

from __future__ import annotations

from .... import nn
from .._api import DTensor, distribute_tensor
from ..placement_types import Replicate, Shard

__all__ = ["ParallelStyle", "ColwiseParallel", "RowwiseParallel", "SequenceParallel",
           "PrepareModuleInput", "PrepareModuleOutput"]


class ParallelStyle:
    """The base of the styles: ``_apply(module, device_mesh)`` parallelizes ``module``."""

    src_data_rank = 0

    def _apply(self, module, device_mesh):
        raise NotImplementedError


def _to_dtensor(x, mesh, layout, desired, use_local):
    """An input or output: a plain tensor is taken as laid out by ``layout``; it is then
    redistributed to ``desired`` (and turned back into a local tensor with ``use_local``)."""
    if layout is None or not hasattr(x, "shape"):
        return x
    if not isinstance(x, DTensor):
        x = DTensor.from_local(x, mesh, (layout,), run_check=False)
    if desired is not None and tuple(x.placements) != (desired,):
        x = x.redistribute(mesh, (desired,))
    return x.to_local() if use_local else x


def _shard_param(module, name, mesh, placement, src_data_rank):
    p = getattr(module, name, None)
    if p is None or isinstance(p, DTensor):
        return
    d = distribute_tensor(p.detach(), mesh, [placement], src_data_rank=src_data_rank)
    module.register_parameter(name, nn.Parameter(d, requires_grad=p.requires_grad))


def _check_mesh(mesh):
    if mesh.ndim != 1:
        raise ValueError(f"tensor parallel styles take a 1-d DeviceMesh (slice it by name, e.g. "
                         f"mesh['tp']); got a {mesh.ndim}-d mesh")


class ColwiseParallel(ParallelStyle):
    """Shard an ``nn.Linear`` by output features (weight and bias ``Shard(0)``; an
    ``nn.Embedding`` by its embedding dim, ``Shard(1)``). Input: replicated (plain inputs are
    taken as ``input_layouts``, default ``Replicate()``); output ``Shard(-1)`` redistributed to
    ``output_layouts``; a local tensor unless ``use_local_output=False``."""

    def __init__(self, *, input_layouts=None, output_layouts=None, use_local_output=True):
        self.input_layouts = (input_layouts or Replicate(),)
        self.output_layouts = (output_layouts or Shard(-1),)
        self.desired_input_layouts = (Replicate(),)
        self.use_local_output = use_local_output

    def _apply(self, module, device_mesh):
        _check_mesh(device_mesh)
        if isinstance(module, nn.Linear):
            _shard_param(module, "weight", device_mesh, Shard(0), self.src_data_rank)
            _shard_param(module, "bias", device_mesh, Shard(0), self.src_data_rank)
        elif isinstance(module, nn.Embedding):
            _shard_param(module, "weight", device_mesh, Shard(1), self.src_data_rank)
        else:
            raise NotImplementedError(f"ColwiseParallel supports nn.Linear and nn.Embedding, "
                                      f"got {type(module).__name__}")
        mesh, lay, want = device_mesh, self.input_layouts[0], self.desired_input_layouts[0]
        out_lay, local = self.output_layouts[0], self.use_local_output

        def pre(m, inputs):
            return (_to_dtensor(inputs[0], mesh, lay, want, False),) + tuple(inputs[1:])

        def post(m, inputs, out):
            return _to_dtensor(out, mesh, out.placements[0], out_lay, local)
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        return module

    def __repr__(self):
        return (f"ColwiseParallel(input_layouts={self.input_layouts[0]}, output_layouts="
                f"{self.output_layouts[0]}, use_local_output={self.use_local_output})")


class RowwiseParallel(ParallelStyle):
    """Shard an ``nn.Linear`` by input features (weight ``Shard(1)``, bias replicated; an
    ``nn.Embedding`` by rows, ``Shard(0)``). Input ``Shard(-1)`` (replicated for an
    embedding); the Partial output is reduced to ``output_layouts`` (default ``Replicate()``:
    an all-reduce; ``Shard(1)``: a reduce-scatter, as sequence parallelism wants)."""

    def __init__(self, *, input_layouts=None, output_layouts=None, use_local_output=True):
        self.input_layouts = (input_layouts or Shard(-1),)
        self.output_layouts = (output_layouts or Replicate(),)
        self.use_local_output = use_local_output

    def _apply(self, module, device_mesh):
        _check_mesh(device_mesh)
        if isinstance(module, nn.Linear):
            _shard_param(module, "weight", device_mesh, Shard(1), self.src_data_rank)
            _shard_param(module, "bias", device_mesh, Replicate(), self.src_data_rank)
            want = Shard(-1)
        elif isinstance(module, nn.Embedding):
            _shard_param(module, "weight", device_mesh, Shard(0), self.src_data_rank)
            want = Replicate()
        else:
            raise NotImplementedError(f"RowwiseParallel supports nn.Linear and nn.Embedding, "
                                      f"got {type(module).__name__}")
        mesh, lay = device_mesh, self.input_layouts[0]
        out_lay, local = self.output_layouts[0], self.use_local_output

        def pre(m, inputs):
            x = inputs[0]
            d = want
            if isinstance(d, Shard) and d.dim < 0 and hasattr(x, "ndim"):
                d = Shard(d.dim + x.ndim)
            lay_ = lay
            if isinstance(lay_, Shard) and lay_.dim < 0 and hasattr(x, "ndim"):
                lay_ = Shard(lay_.dim + x.ndim)
            return (_to_dtensor(x, mesh, lay_, d, False),) + tuple(inputs[1:])

        def post(m, inputs, out):
            return _to_dtensor(out, mesh, out.placements[0], out_lay, local)
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        return module

    def __repr__(self):
        return (f"RowwiseParallel(input_layouts={self.input_layouts[0]}, output_layouts="
                f"{self.output_layouts[0]}, use_local_output={self.use_local_output})")


class SequenceParallel(ParallelStyle):
    """For modules that act on each position alone (``LayerNorm``, ``Dropout``, RMSNorm):
    parameters replicated, input and output sharded on ``sequence_dim`` (plain inputs are
    taken as that shard), the output a DTensor unless ``use_local_output=True``."""

    def __init__(self, *, sequence_dim=1, use_local_output=False):
        self.sequence_dim = sequence_dim
        self.use_local_output = use_local_output

    def _apply(self, module, device_mesh):
        _check_mesh(device_mesh)
        for name, p in list(module.named_parameters(recurse=False)):
            _shard_param(module, name, device_mesh, Replicate(), self.src_data_rank)
        mesh, seq, local = device_mesh, self.sequence_dim, self.use_local_output

        def pre(m, inputs):
            x = inputs[0]
            if not isinstance(x, DTensor) and hasattr(x, "ndim"):
                x = DTensor.from_local(x, mesh, (Shard(seq % x.ndim),), run_check=False)
            elif isinstance(x, DTensor) and tuple(x.placements) != (Shard(seq % x.ndim),):
                x = x.redistribute(mesh, (Shard(seq % x.ndim),))
            return (x,) + tuple(inputs[1:])

        def post(m, inputs, out):
            return out.to_local() if local and isinstance(out, DTensor) else out
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        return module

    def __repr__(self):
        return f"SequenceParallel(sequence_dim={self.sequence_dim})"


def _layouts(x):
    return x if x is None or isinstance(x, (tuple, list)) else (x,)


class PrepareModuleInput(ParallelStyle):
    """Lay out a module's inputs before its forward: each positional input (and keyword input
    in ``input_kwarg_layouts``) is taken as its ``input_layouts`` entry (None: left alone) and
    redistributed to the ``desired_input_layouts`` entry."""

    def __init__(self, *, input_layouts=None, desired_input_layouts=None,
                 input_kwarg_layouts=None, desired_input_kwarg_layouts=None,
                 use_local_output=False):
        self.input_layouts = _layouts(input_layouts)
        self.desired_input_layouts = _layouts(desired_input_layouts)
        self.input_kwarg_layouts = dict(input_kwarg_layouts or {})
        self.desired_input_kwarg_layouts = dict(desired_input_kwarg_layouts or {})
        self.use_local_output = use_local_output
        if self.input_layouts is not None:
            if self.desired_input_layouts is None or \
                    len(self.input_layouts) != len(self.desired_input_layouts):
                raise AssertionError("input_layouts and desired_input_layouts should have the "
                                     "same length!")
        if set(self.input_kwarg_layouts) != set(self.desired_input_kwarg_layouts):
            raise AssertionError("input_kwarg_layouts and desired_input_kwarg_layouts should "
                                 "have the same keys!")

    def _apply(self, module, device_mesh):
        _check_mesh(device_mesh)
        mesh, local = device_mesh, self.use_local_output

        def pre(m, args, kwargs):
            if self.input_layouts is not None:
                if len(args) < len(self.input_layouts):
                    raise ValueError(f"PrepareModuleInput: {len(self.input_layouts)} input "
                                     f"layouts for {len(args)} positional inputs")
                args = tuple(_to_dtensor(a, mesh, lay, want, local) for a, lay, want in
                             zip(args, self.input_layouts, self.desired_input_layouts)) + \
                    tuple(args[len(self.input_layouts):])
            if self.input_kwarg_layouts:
                kwargs = dict(kwargs)
                for k, lay in self.input_kwarg_layouts.items():
                    if k in kwargs:
                        kwargs[k] = _to_dtensor(kwargs[k], mesh, lay,
                                                self.desired_input_kwarg_layouts[k], local)
            return args, kwargs
        module.register_forward_pre_hook(pre, with_kwargs=True)
        return module


class PrepareModuleOutput(ParallelStyle):
    """Lay out a module's outputs after its forward: each output is taken as its
    ``output_layouts`` entry and redistributed to ``desired_output_layouts``; local tensors
    unless ``use_local_output=False``."""

    def __init__(self, *, output_layouts, desired_output_layouts, use_local_output=True):
        self.output_layouts = _layouts(output_layouts)
        self.desired_output_layouts = _layouts(desired_output_layouts)
        self.use_local_output = use_local_output
        if len(self.output_layouts) != len(self.desired_output_layouts):
            raise AssertionError("output_layouts and desired_output_layouts should have the "
                                 "same length!")

    def _apply(self, module, device_mesh):
        _check_mesh(device_mesh)
        mesh, local = device_mesh, self.use_local_output

        def post(m, inputs, out):
            single = not isinstance(out, (tuple, list))
            outs = (out,) if single else tuple(out)
            if len(outs) != len(self.output_layouts):
                raise ValueError(f"PrepareModuleOutput: {len(self.output_layouts)} output "
                                 f"layouts for {len(outs)} outputs")
            res = tuple(_to_dtensor(o, mesh, lay, want, local) for o, lay, want in
                        zip(outs, self.output_layouts, self.desired_output_layouts))
            return res[0] if single else type(out)(res)
        module.register_forward_hook(post)
        return module


