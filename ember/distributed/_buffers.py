"""Tensors as MPI buffers, and ReduceOp as MPI reductions.

A contiguous tensor of a dtype MPI knows goes to MPI as its own memory (no copy). Other
tensors go through a contiguous staging array that is copied back when the operation ends.
MPI has no bfloat16, so bfloat16 travels as raw 16-bit words when only moved, and is reduced
in float32 (then rounded once), as ember's bf16 arithmetic accumulates in float32 anyway.
bool is reduced as uint8 with the matching logical op (sum and max are "or", product and min
are "and"), since MPI's C bool has no arithmetic reductions.
"""

from __future__ import annotations

import enum

import numpy as np


class ReduceOp(enum.Enum):
    """How a reduction combines the ranks' values (PyTorch's ``torch.distributed.ReduceOp``)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"
    PREMUL_SUM = "premul_sum"
    UNUSED = "unused"

    def __repr__(self):
        return f"<RedOpType.{self.name}: {list(ReduceOp).index(self)}>"


# PyTorch's members are of type ReduceOp.RedOpType (Lightning annotates and checks with it)
ReduceOp.RedOpType = ReduceOp


class reduce_op:  # noqa: N801  (PyTorch's deprecated alias class)
    SUM, PRODUCT, MIN, MAX = ReduceOp.SUM, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX


_BITWISE = (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR)


def is_bfloat16(dt) -> bool:
    return dt.name == "bfloat16"


def move_view(arr):
    """``arr`` (contiguous) as a buffer MPI can move: bfloat16 as uint16 words, bool as uint8."""
    if is_bfloat16(arr.dtype):
        return arr.view(np.uint16)
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    return arr


def mpi_op(MPI, op, np_dtype):
    """The MPI reduction for ``op`` on values of ``np_dtype`` (after staging), or an error."""
    if not isinstance(op, ReduceOp):
        raise TypeError(f"op must be a ReduceOp, got {type(op).__name__}")
    if op in (ReduceOp.PREMUL_SUM, ReduceOp.UNUSED):
        raise ValueError(f"ReduceOp.{op.name} is not supported by ember's MPI backend")
    kind = np.dtype(np_dtype).kind
    if np_dtype == np.bool_:
        if op is ReduceOp.AVG:
            raise RuntimeError("ReduceOp.AVG is not defined for bool tensors")
        return {ReduceOp.SUM: MPI.BOR, ReduceOp.MAX: MPI.BOR, ReduceOp.BOR: MPI.BOR,
                ReduceOp.PRODUCT: MPI.BAND, ReduceOp.MIN: MPI.BAND, ReduceOp.BAND: MPI.BAND,
                ReduceOp.BXOR: MPI.BXOR}[op]
    if op in _BITWISE and kind not in "iu":
        raise RuntimeError(f"Cannot use ReduceOp.{op.name} with non-integral dtype "
                           f"{np.dtype(np_dtype).name}")
    if kind == "c" and op in (ReduceOp.MIN, ReduceOp.MAX):
        raise RuntimeError(f"ReduceOp.{op.name} is not defined for complex tensors")
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND,
            ReduceOp.BOR: MPI.BOR, ReduceOp.BXOR: MPI.BXOR}[op]


class Staged:
    """A tensor's memory prepared for MPI: ``buf`` is what MPI reads and writes.

    ``reduce=True`` prepares for arithmetic (bfloat16 upcast to float32, bool as uint8);
    otherwise for moving bytes. ``stage`` is the tensor's own memory when it is contiguous and
    MPI can use its dtype (no copy); else a contiguous copy (``fill=False``: uninitialised, for
    outputs) that ``finish()`` copies back. ``finish(n)`` divides by ``n`` first (AVG).
    """

    __slots__ = ("arr", "stage", "buf")

    def __init__(self, arr, reduce=False, fill=True):
        self.arr = arr
        if reduce and is_bfloat16(arr.dtype):
            self.stage = arr.astype(np.float32, order="C") if fill else \
                np.empty(arr.shape, np.float32)
        elif arr.flags.c_contiguous:
            self.stage = arr
        else:
            self.stage = np.ascontiguousarray(arr) if fill else np.empty(arr.shape, arr.dtype)
        self.buf = move_view(self.stage.reshape(-1))

    def finish(self, divide_by=None):
        if divide_by is not None:
            self.stage[...] = divide(self.stage, divide_by)
        if self.stage is not self.arr:
            self.arr[...] = self.stage


def divide(buf, n):
    """``buf / n`` in place for floats; integers divide truncating toward zero (as NCCL's AVG)."""
    if buf.dtype.kind in "fc":
        buf /= n
        return buf
    q = np.abs(buf) // n
    return np.where(buf < 0, -q, q).astype(buf.dtype)
