"""``parallelize_module``: apply tensor-parallel styles to a module tree."""

from __future__ import annotations

import fnmatch

from .style import ParallelStyle

__all__ = ["parallelize_module"]


def parallelize_module(module, device_mesh=None, parallelize_plan=None, *, src_data_rank=0):
    """Parallelize ``module`` over the 1-d ``device_mesh`` with ``parallelize_plan``: one
    ``ParallelStyle`` for the module itself, or a dict from submodule names to styles (names
    may hold ``*`` wildcards per path component, as ``"layers.*.attn"``). Collective: every
    rank of the mesh must call it with the same plan."""
    if device_mesh is None:
        from .._api import _default_mesh
        device_mesh = _default_mesh()
    if parallelize_plan is None:
        import warnings
        warnings.warn("No parallelize_plan is provided and auto-parallel is not supported at "
                      "the moment, so this parallelize_module call will do nothing.",
                      stacklevel=2)
        return module
    if isinstance(parallelize_plan, ParallelStyle):
        parallelize_plan.src_data_rank = src_data_rank
        return parallelize_plan._apply(module, device_mesh)
    if not isinstance(parallelize_plan, dict):
        raise TypeError(f"Expect Union[ParallelStyle, Dict] for parallelize_plan, "
                        f"{type(parallelize_plan)} found!")
    for path, style in parallelize_plan.items():
        if not isinstance(style, ParallelStyle):
            raise TypeError(f"parallelize_plan[{path!r}] must be a ParallelStyle, got "
                            f"{type(style).__name__}")
        if not path:
            raise ValueError("Expect module path to be non-empty, but got empty string!")
        atoms = path.split(".")
        matched = [(name, sub) for name, sub in module.named_modules()
                   if name and _match(atoms, name.split("."))]
        if not matched:
            raise ValueError(f"parallelize_module: no submodule matches {path!r}")
        for _, sub in matched:
            parallelize_module(sub, device_mesh, style, src_data_rank=src_data_rank)
    return module


def _match(atoms, parts):
    return len(atoms) == len(parts) and all(fnmatch.fnmatchcase(p, a)
                                            for a, p in zip(atoms, parts))
