"""``ember.compile``, ``OptimizedModule`` and ``Module.compile``."""

from __future__ import annotations

from ._core import BACKENDS, CompiledFunction

__all__ = ["compile", "compile_module_inplace"]

_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check(backend, mode, dynamic):
    if callable(backend):
        raise NotImplementedError("ember.compile: custom backend callables are not supported; "
                                  f"use one of {list(BACKENDS)}")
    if backend not in BACKENDS:
        raise ValueError(f"ember.compile: unknown backend {backend!r}; expected one of "
                         f"{list(BACKENDS)}")
    if mode not in _MODES:
        raise RuntimeError(f"Unrecognized mode={mode!r}, should be one of: "
                           f"{', '.join(str(m) for m in _MODES[1:])}")


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
            options=None, disable=False):
    """Compile a function or module (PyTorch's ``torch.compile``); ``@ember.compile`` and
    ``@ember.compile(...)`` work as decorators.

    ``mode``: every mode compiles the same way on CPU ("reduce-overhead" has no CUDA graphs
    to use here; "max-autotune" has no kernel choices to tune). ``dynamic=True``: dim 0
    (the batch) of every tensor input is symbolic, so a new batch size replays the same
    graph (the first call captures three times to fit the sizes; where that fails,
    ``dynamic_failure`` on the compiled function says why and shapes stay static);
    otherwise shapes are specialised (a new shape recompiles, up to
    ``ember._dynamo.config.cache_size_limit``). ``disable=True`` returns ``model`` unchanged."""
    _check(backend, mode, dynamic)
    if model is None:
        def deco(fn):
            return compile(fn, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                           mode=mode, options=options, disable=disable)
        return deco
    if disable:
        return model
    from ..nn.modules.module import Module
    if isinstance(model, Module):
        return _optimized_module_class()(model, fullgraph=fullgraph, dynamic=dynamic,
                                         backend=backend, mode=mode, options=options)
    if not callable(model):
        raise TypeError(f"ember.compile: expected a callable or a Module, got "
                        f"{type(model).__name__}")
    return CompiledFunction(model, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                            mode=mode, options=options)


_CLS: dict = {}


def _optimized_module_class():
    if "OptimizedModule" not in _CLS:
        from ..nn.modules.module import Module

        class OptimizedModule(Module):
            """A compiled module: ``_orig_mod`` is the original (its parameters are this
            module's), calls run the compiled ``_orig_mod(...)``."""

            def __init__(self, mod, **kwargs):
                Module.__init__(self)
                self._orig_mod = mod
                object.__setattr__(self, "_compiled", CompiledFunction(mod, module=mod,
                                                                       **kwargs))

            def forward(self, *args, **kwargs):
                return self._compiled(*args, **kwargs)

            def train(self, mode=True):
                self._orig_mod.train(mode)
                self.training = mode
                return self

        _CLS["OptimizedModule"] = OptimizedModule
    return _CLS["OptimizedModule"]


def __getattr__(name):
    if name == "OptimizedModule":
        return _optimized_module_class()
    raise AttributeError(name)


def compile_module_inplace(module, *args, **kwargs):
    """``Module.compile``: calls of ``module`` run a compiled forward from now on."""
    kwargs.pop("model", None)
    _check(kwargs.get("backend", "inductor"), kwargs.get("mode"), kwargs.get("dynamic"))
    forward = type(module).forward.__get__(module)
    compiled = CompiledFunction(forward, module=module, **kwargs)
    object.__setattr__(module, "forward", compiled)
