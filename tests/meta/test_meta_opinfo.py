"""Output shapes and dtypes on the meta device equal eager ones, over PyTorch's OpInfo samples.

For every OpInfo entry that ember runs eagerly (the entries ``tests/parity/test_opinfo.py``
passes in float32), each of the first samples runs twice through ember: on cpu tensors, and
with every tensor moved to ``meta`` and ``meta`` as the default device (for factories). Each output leaf must have the same shape and dtype, and
be a meta tensor. Entries that cannot run on meta are listed with their reason in
``meta_xfails.py`` (regenerate with ``python -m tests.meta.test_meta_opinfo --write``);
they are non-strict xfails, so one that starts working shows as XPASS.

Ops whose output shape depends on the values (``nonzero``, ``unique``, ``masked_select``,
``.item()`` ...) must raise on meta, as PyTorch's do: the xfail list names them so.
"""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")

import ember  # noqa: E402
from tests.parity import test_opinfo as P  # noqa: E402
from tests.parity.opinfo_xfails import XFAILS as EAGER_XFAILS  # noqa: E402

from .meta_xfails import META_XFAILS  # noqa: E402

DTYPE = "float32"
MAX_SAMPLES = 6


def to_meta(x):
    """``x`` with every ember tensor replaced by a meta tensor of the same metadata (and a
    ``cpu`` device argument by ``meta``)."""
    if isinstance(x, ember.device) and x.type == "cpu":
        return ember.device("meta")
    if isinstance(x, ember.Tensor):
        return x.detach().to("meta").requires_grad_(x.requires_grad)
    if isinstance(x, list):
        return [to_meta(v) for v in x]
    if isinstance(x, tuple):
        return tuple(to_meta(v) for v in x)
    if isinstance(x, dict):
        return {k: "meta" if k == "device" and v == "cpu" else to_meta(v) for k, v in x.items()}
    return x


def _eager_ok(op):
    key = P.entry_key(op)
    return (DTYPE in P.entry_dtypes(op) and P.ember_callable(op) is not None
            and f"{key}|{DTYPE}" not in EAGER_XFAILS and key not in EAGER_XFAILS)


def check_sample(fn, sample):
    """None when the sample's meta outputs match its eager outputs, else the reason."""
    if P._numel([sample.input, sample.args, sample.kwargs]) > P.MAX_NUMEL:
        return None
    memo = {}
    try:
        args = P.to_ember((sample.input,) + tuple(sample.args), memo)
        kwargs = P.to_ember(sample.kwargs, memo)
    except P.Unconvertible:
        return None
    try:
        ember.manual_seed(0)
        eager = fn(*args, **kwargs)
    except Exception:
        return None  # ember's eager run rejects the sample: nothing to compare
    try:
        # inputs moved to meta; factory functions (arange, zeros ...) default to meta too
        with ember.device("meta"):
            out = fn(*to_meta(args), **to_meta(kwargs))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    e_flat, m_flat = P.flatten(eager), P.flatten(out)
    if len(e_flat) != len(m_flat):
        return f"output count differs (eager {len(e_flat)}, meta {len(m_flat)})"
    for i, (e, m) in enumerate(zip(e_flat, m_flat)):
        if isinstance(e, ember.Tensor):
            if not isinstance(m, ember.Tensor) or not m.is_meta:
                return f"output {i} is not a meta tensor ({type(m).__name__})"
            if tuple(m.shape) != tuple(e.shape):
                return f"output {i} shape differs (eager {tuple(e.shape)}, meta {tuple(m.shape)})"
            if m.dtype != e.dtype:
                return f"output {i} dtype differs (eager {e.dtype}, meta {m.dtype})"
        elif isinstance(m, ember.Tensor):
            return f"output {i} is a tensor on meta, {type(e).__name__} eagerly"
    return None


def run_entry(op):
    """(samples compared, first failure reason or None)."""
    fn = P.ember_callable(op)
    torch.manual_seed(0)
    samples = iter(op.sample_inputs_func(op, "cpu", getattr(torch, DTYPE), False))
    n, reasons = 0, []
    while n < MAX_SAMPLES:
        try:
            sample = next(samples)
        except StopIteration:
            break
        except Exception:
            break
        n += 1
        r = check_sample(fn, sample)
        if r is not None:
            reasons.append(r)
    return n, (f"{reasons[0]} ({len(reasons)}/{n} samples)" if reasons else None)


def _params():
    out = []
    for op in P.op_db():
        if not _eager_ok(op):
            continue
        key = P.entry_key(op)
        reason = META_XFAILS.get(key)
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        out.append(pytest.param(op, id=key, marks=marks))
    return out


@pytest.mark.parametrize("op", _params())
def test_meta_opinfo(op):
    n, reason = run_entry(op)
    if n == 0:
        pytest.skip("no samples")
    assert reason is None, reason


def test_meta_xfails_name_real_entries():
    keys = {P.entry_key(op) for op in P.op_db() if _eager_ok(op)}
    assert set(META_XFAILS) <= keys, sorted(set(META_XFAILS) - keys)


def _write():
    entries = [op for op in P.op_db() if _eager_ok(op)]
    fails, passed = {}, 0
    for op in entries:
        _, reason = run_entry(op)
        if reason is None:
            passed += 1
        else:
            fails[P.entry_key(op)] = reason
    lines = ['"""Entries of test_meta_opinfo.py that do not run on the meta device, with the',
             "first failing sample's reason. Generated by ``python -m tests.meta.test_meta_opinfo",
             '--write``."""', "", "META_XFAILS = {"]
    for k in sorted(fails):
        lines.append(f"    {k!r}: {fails[k]!r},")
    lines.append("}")
    path = __file__.replace("test_meta_opinfo.py", "meta_xfails.py")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    import os
    os.replace(path + ".tmp", path)
    print(f"{passed} of {len(entries)} entries pass on meta; {len(fails)} listed")


if __name__ == "__main__":
    if "--write" in sys.argv:
        _write()
