"""Output shapes and dtypes on the meta device equal eager ones, over PyTorch's OpInfo samples.

For every OpInfo entry that ember runs eagerly (the entries ``tests/parity/test_opinfo.py``
passes in float32), each of the first samples runs twice through ember: on cpu tensors, and
with every tensor moved to ``meta`` and ``meta`` as the default device (for factories). Each output leaf must have the same shape and dtype, and
be a meta tensor. Entries that cannot run on meta are listed with their reason in
``meta_xfails.py`` (regenerate with ``python -m tests.meta.test_meta_opinfo --write``);
they are non-strict xfails, so one that starts working shows as XPASS.

Ops whose output shape depends on the values (``nonzero``, ``unique``, ``masked_select``,
``.item()`` ...) must raise on meta, as PyTorch's do: ``META_DATA_DEPENDENT`` names them and
``test_meta_value_dependent_ops_raise`` checks that they do.
"""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")

import ember  # noqa: E402
from tests.parity import test_opinfo as P  # noqa: E402
from tests.parity.opinfo_xfails import XFAILS as EAGER_XFAILS  # noqa: E402

from .meta_xfails import META_DATA_DEPENDENT, META_XFAILS  # noqa: E402

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


class _RaisedOnMeta(Exception):
    """``check_sample(..., raised=...)``: the meta run raised (reason in the message)."""


def check_sample(fn, sample, raised=None):
    """None when the sample's meta outputs match its eager outputs, else the reason.
    ``raised``: a list that collects the meta runs' exceptions (for value-dependent ops)."""
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
        if raised is not None:
            raised.append(exc)
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


def run_entry(op, raised=None):
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
        before = len(raised) if raised is not None else 0
        r = check_sample(fn, sample, raised)
        if r is not None and (raised is None or len(raised) == before):
            reasons.append(r)  # a value-dependent op's raising sample is not a failure
    return n, (f"{reasons[0]} ({len(reasons)}/{n} samples)" if reasons else None)


def _params():
    out = []
    for op in P.op_db():
        if not _eager_ok(op):
            continue
        key = P.entry_key(op)
        if key in META_DATA_DEPENDENT:
            continue  # test_meta_value_dependent_ops_raise
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


def _value_dependent_params():
    return [pytest.param(op, id=P.entry_key(op)) for op in P.op_db()
            if _eager_ok(op) and P.entry_key(op) in META_DATA_DEPENDENT]


@pytest.mark.parametrize("op", _value_dependent_params())
def test_meta_value_dependent_ops_raise(op):
    """Ops whose output shape needs the values raise PyTorch's kind of error on meta (for
    the samples that need the values) and give eager shapes for the others."""
    raised = []
    n, reason = run_entry(op, raised)
    if n == 0:
        pytest.skip("no samples")
    assert reason is None, reason
    assert raised, "no sample raised on meta: the entry is not value-dependent"
    for exc in raised:
        assert isinstance(exc, (NotImplementedError, RuntimeError)), repr(exc)


def test_meta_xfails_name_real_entries():
    keys = {P.entry_key(op) for op in P.op_db() if _eager_ok(op)}
    assert set(META_XFAILS) <= keys, sorted(set(META_XFAILS) - keys)
    assert set(META_DATA_DEPENDENT) <= keys, sorted(set(META_DATA_DEPENDENT) - keys)
    assert not set(META_XFAILS) & set(META_DATA_DEPENDENT)


def _write():
    entries = [op for op in P.op_db() if _eager_ok(op)]
    fails, passed = {}, 0
    for op in entries:
        if P.entry_key(op) in META_DATA_DEPENDENT:
            continue
        _, reason = run_entry(op)
        if reason is None:
            passed += 1
        else:
            fails[P.entry_key(op)] = reason
    path = __file__.replace("test_meta_opinfo.py", "meta_xfails.py")
    with open(path) as f:
        head = f.read().split("META_XFAILS = {")[0]  # the docstring and META_DATA_DEPENDENT
    lines = [head + "META_XFAILS = {"]
    for k in sorted(fails):
        lines.append(f"    {k!r}: {fails[k]!r},")
    lines.append("}")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    import os
    os.replace(path + ".tmp", path)
    print(f"{passed} of {len(entries)} entries pass on meta; {len(META_DATA_DEPENDENT)} "
          f"value-dependent; {len(fails)} listed")


if __name__ == "__main__":
    if "--write" in sys.argv:
        _write()
