"""Shared memory for tensors: ``Tensor.share_memory_()`` and passing tensors between processes
without copying their data.

A shared tensor's array lives in an anonymous memory file (``memfd_create``; an unlinked file
in /dev/shm where that is missing) mapped with ``MAP_SHARED``. The block keeps its file
descriptor, so pickling the tensor for another process (a ``Queue``, ``Process`` arguments)
sends a duplicate of the descriptor (``multiprocessing.reduction.DupFd``) plus shape, strides,
dtype and offset; the receiver maps the same memory. Nothing has a name on disk, so nothing is
left behind when the processes end. As in PyTorch, a tensor put into a Queue is moved to
shared memory first, and the sending process must still be alive when the receiver unpickles.
"""

from __future__ import annotations

import mmap
import os
import tempfile

import numpy as np


class SharedBlock(mmap.mmap):
    """A MAP_SHARED mapping that remembers the descriptor of its memory file."""

    def __new__(cls, fd, size):
        self = super().__new__(cls, fd, size, flags=mmap.MAP_SHARED,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.fd = fd
        return self

    def __del__(self):
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _new_block(nbytes):
    size = max(int(nbytes), 1)
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ember-shared", os.MFD_CLOEXEC)
    else:  # an unlinked temporary file: anonymous in the same way
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix="ember-shared-", dir=directory)
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
        return SharedBlock(fd, size)
    except BaseException:
        os.close(fd)
        raise


def _root(arr):
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root


def block_of(arr):
    """The ``SharedBlock`` that ``arr`` views, or None."""
    base = _root(arr).base
    return base if isinstance(base, SharedBlock) else None


def is_shared(t):
    """Whether tensor ``t``'s data lives in shared memory."""
    return block_of(t._data) is not None


def share_memory_(t):
    """Move ``t``'s data into shared memory (in place; a no-op when it is there already)."""
    arr = t._data
    if block_of(arr) is not None:
        return t
    block = _new_block(arr.nbytes)
    new = np.ndarray(arr.shape, arr.dtype, buffer=block)
    new[...] = arr
    t._data = new
    grad = getattr(t, "_grad", None)
    if grad is not None:
        share_memory_(grad)
    return t


def _rebuild(dupfd, size, offset, shape, strides, dtype, requires_grad, cls):
    from .._tensor import _make
    fd = dupfd.detach()
    block = SharedBlock(fd, size)
    arr = np.ndarray(shape, dtype, buffer=block, offset=offset, strides=strides)
    t = _make(arr)
    if cls is not type(t):
        t.__class__ = cls
    if requires_grad:
        t._rg = True
    return t


def reduce_tensor(t):
    """How ``ForkingPickler`` sends a tensor: by its shared memory (moved there first)."""
    from multiprocessing import reduction
    if t.grad_fn is not None and t.requires_grad:
        raise RuntimeError("Cowardly refusing to serialize non-leaf tensor which requires_grad, "
                           "since autograd does not support crossing process boundaries.  If "
                           "you just want to transfer the data, call detach() on the tensor "
                           "before serializing (e.g., putting it on the queue).")
    share_memory_(t)
    arr = t._data
    block = block_of(arr)
    start = np.frombuffer(block, dtype=np.uint8).__array_interface__["data"][0]
    offset = arr.__array_interface__["data"][0] - start
    return (_rebuild, (reduction.DupFd(block.fd), len(block), offset, arr.shape, arr.strides,
                       arr.dtype, bool(t.requires_grad), type(t)))


def init_reductions():
    """Register the tensor reduction with multiprocessing's pickler (once)."""
    from multiprocessing.reduction import ForkingPickler

    from .._tensor import Tensor
    from ..nn.parameter import Parameter
    for cls in (Tensor, Parameter):
        ForkingPickler.register(cls, reduce_tensor)
