"""How much of PyTorch's public API ember has, namespace by namespace (the README figure).

Run ``python -m tests.compat._coverage`` for the table; ``test_api_coverage.py`` holds the
floors. A name counts when ember has it at the same place; whether it behaves is for the
parity tests. Left out of the denominator, and listed here so the figure can be checked:
TorchScript's and the JIT's internals, quantized-tensor ops, kernels named after one vendor
library (cuDNN, MIOpen, oneDNN/MKL-DNN, FBGEMM), symbolic-shape helpers and
sub-byte dtypes (PyTorch's own prototypes), names a module merely imports from ``typing``,
documentation strings (``tf32_notes``), and the DataPipes that PyTorch deprecated.
"""

from __future__ import annotations

import importlib
import inspect
import re

NAMESPACES = ["", "nn", "nn.functional", "linalg", "fft", "special", "optim", "utils.data",
              "autograd", "distributions", "Tensor"]

# Categories outside the figure (see the module docstring), matched against torch's names.
_EXCLUDED = re.compile(
    r"^(cudnn_|miopen_|mkldnn_|fbgemm_|quantized_|q_|quantize_|fake_quantize|"
    r"fused_moving_avg|choose_qparams|dequantize|int_repr|sym_|Sym|"
    r"(u?int[1-7]|bits.*|float4_.*|float8_e4m3fnuz|float8_e5m2fnuz|float8_e8m0fnu)$|"
    r"q(u)?int.*|qscheme|per_(tensor|channel)|autocast_|.*_autocast_.*|"
    r"(get|set|is)_autocast|clear_autocast|import_ir_module|parse_(ir|schema|type_comment)|"
    r"merge_type_from_type_comment|unify_type_list|"
    r"(Any|Await|Bool|Class|Complex|DeviceObj|Dict|Enum|Float|Future|Int|Interface|List|None|"
    r"Number|Optional|PyObject|RRef|StreamObj|String|Tensor|Tuple|Union)Type$|"
    r"Script.*|Argument.*|AliasDb|Block|CallStack|Code|CompilationUnit|CompleteArgumentSpec|"
    r"ConcreteModuleType.*|DeepCopyMemoTable|Deserialization.*|Serialization.*|DispatchKey.*|"
    r"ErrorReport|ExecutionPlan|FileCheck|FunctionSchema|Gradient|Graph|GraphExecutorState|"
    r"IODescriptor|InferredType|JITException|LiteScriptModule|LockingLogger|NoopLogger|Node|"
    r"OperatorInfo|PyTorchFile.*|StaticModule|Tag|ThroughputBenchmark|TracingState|Type|Use|"
    r"Value|Capsule|AggregationType|AVG|SUM|BenchmarkConfig|BenchmarkExecutionStats|"
    r"ExcludeDispatchKeyGuard|DisableTorchFunction.*|FatalError|BufferDict|ModuleDict|"
    r"ParameterDict|wait|fork|to_mkldnn|is_mkldnn|is_vulkan|ipu|is_ipu|xpu|is_xpu|mtia|"
    r"is_mtia|is_maia|is_xla|is_mps|is_meta_)")


_DEPRECATED = {"DFIterDataPipe", "DataChunk", "IterDataPipe", "MapDataPipe",
               "argument_validation", "functional_datapipe", "guaranteed_datapipes_determinism",
               "non_deterministic", "runtime_validation", "runtime_validation_disabled"}


def _incidental(mod, name):
    """Typing imports, documentation strings and deprecated DataPipes: not API to port."""
    v = getattr(mod, name, None)
    if name in _DEPRECATED or name == "TYPE_CHECKING" or isinstance(v, str):
        return True
    return getattr(v, "__module__", None) == "typing" or type(v).__module__ == "typing"


def _public(mod):
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n in dir(mod) if not n.startswith("_")]
    return sorted({n for n in names if not n.startswith("_")
                   and not inspect.ismodule(getattr(mod, n, None))})


def _has(mod, name):
    """Present and not one of ember's "not implemented yet" stubs (ember/_not_yet.py)."""
    v = getattr(mod, name, None)
    if v is None and not hasattr(mod, name):
        return False
    return not getattr(v, "__qualname__", "").startswith("missing.<locals>")


def coverage(exclude=True):
    """``{namespace: (have, total, missing)}`` comparing ember with the installed torch."""
    import torch

    import ember
    out = {}
    for ns in NAMESPACES:
        if ns == "Tensor":
            tm, em = torch.Tensor, ember.Tensor
            names = sorted(n for n in dir(torch.Tensor) if not n.startswith("_"))
        else:
            tm = importlib.import_module("torch" + ("." + ns if ns else ""))
            em = importlib.import_module("ember" + ("." + ns if ns else ""))
            names = _public(tm)
        if exclude:
            names = [n for n in names if not _EXCLUDED.match(n) and not _incidental(tm, n)]
        missing = [n for n in names if not _has(em, n)]
        out[ns or "torch"] = (len(names) - len(missing), len(names), missing)
    return out


def layout_coverage():
    """Names importable from the same submodule: walks PyTorch's public submodules under
    nn.modules, optim, utils.data, autograd, distributions, nn.utils, nn.parallel."""
    import pkgutil
    roots = ["torch.nn.modules", "torch.optim", "torch.utils.data", "torch.autograd",
             "torch.distributions", "torch.nn.utils", "torch.nn.parallel"]
    mods = {"torch.serialization", "torch.storage", "torch.nn.parameter", "torch.functional",
            "torch.nn.init", "torch.nn.functional", "torch.utils.checkpoint",
            "torch.utils.hooks", "torch.nn.attention", "torch.hub", "torch.types"}
    for r in roots:
        m = importlib.import_module(r)
        mods.add(r)
        for info in pkgutil.walk_packages(m.__path__, r + "."):
            if any(p.startswith("_") for p in info.name.split(".")) or ".datapipes" in info.name:
                continue  # private modules; datapipes are deprecated in PyTorch
            mods.add(info.name)
    have = total = 0
    missing = {}
    for name in sorted(mods):
        try:
            tm = importlib.import_module(name)
        except Exception:
            continue
        names = getattr(tm, "__all__", None)
        if names is None:
            names = [n for n, v in vars(tm).items() if not n.startswith("_")
                     and getattr(v, "__module__", None) == name
                     and (inspect.isclass(v) or inspect.isfunction(v))]
        # the deprecated DataPipes are outside the figure here too (see the module docstring)
        names = [n for n in names if not n.startswith("_") and n not in _DEPRECATED]
        try:
            em = importlib.import_module("ember" + name[len("torch"):])
            miss = [n for n in names if not _has(em, n)]
        except ImportError:
            miss = list(names)
        total += len(names)
        have += len(names) - len(miss)
        if miss:
            missing[name] = miss
    return have, total, missing


if __name__ == "__main__":
    for ns, (h, t, miss) in coverage().items():
        print(f"{ns:16s} {h:4d}/{t:4d}  {100 * h / t:5.1f}%")
    h, t, miss = layout_coverage()
    print(f"{'submodule paths':16s} {h:4d}/{t:4d}  {100 * h / t:5.1f}%")
