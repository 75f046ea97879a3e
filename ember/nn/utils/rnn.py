"""Packed and padded sequences (``ember.nn.utils.rnn``), as PyTorch's.

A ``PackedSequence`` holds the time-major interleaving of a batch of sequences sorted by
decreasing length: ``data`` has ``sum(lengths)`` rows; ``batch_sizes[t]`` is how many
sequences are still running at step ``t``. The recurrent layers accept one directly.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..._tensor import Tensor, _make

_PackedBase = namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices",
                                            "unsorted_indices"])


class PackedSequence(_PackedBase):
    """(data, batch_sizes, sorted_indices, unsorted_indices); build it with ``pack_*``."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = _invert_permutation(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs):
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else type(self)(data, self.batch_sizes,
                                                          self.sorted_indices,
                                                          self.unsorted_indices)

    def cpu(self):
        return self

    @property
    def is_cuda(self):
        return False

    def is_pinned(self):
        return False


def invert_permutation(permutation):
    """The inverse of a 1-D index ``permutation`` (None stays None), as PyTorch's."""
    return _invert_permutation(permutation)


def _invert_permutation(perm):
    if perm is None:
        return None
    inv = np.empty_like(perm._data)
    inv[perm._data] = np.arange(len(inv))
    return _make(inv)


def _lengths_array(lengths):
    if isinstance(lengths, Tensor):
        arr = lengths._data
    else:
        arr = np.asarray(lengths)
    return arr.astype(np.int64).reshape(-1)


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (or (B, T, *)) whose sequences have ``lengths``."""
    lens = _lengths_array(lengths)
    if (lens <= 0).any():
        raise RuntimeError("Length of all samples has to be greater than 0, but found an "
                           "element in 'lengths' that is <= 0")
    if enforce_sorted:
        if (np.diff(lens) > 0).any():
            raise RuntimeError("`lengths` array must be sorted in decreasing order when "
                               "`enforce_sorted` is True. You can pass `enforce_sorted=False` "
                               "to pack_padded_sequence and/or pack_sequence to sidestep this "
                               "requirement if you do not need ONNX exportability.")
        sorted_indices = None
        order = np.arange(len(lens))
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_indices = _make(order.astype(np.int64))
        lens = lens[order]
    if batch_first:
        input = input.transpose(0, 1)
    T = input.shape[0]
    if lens[0] > T:
        raise RuntimeError(f"Expected sequence length to be larger than or equal to "
                           f"{lens[0]}, but got {T}")
    input = input[:, _make(order)] if sorted_indices is not None else input
    batch_sizes = np.array([(lens > t).sum() for t in range(int(lens[0]))], dtype=np.int64)
    rows = [input[t, :int(b)] for t, b in enumerate(batch_sizes)]
    from ... import cat
    data = cat(rows, 0)
    return PackedSequence(data, _make(batch_sizes), sorted_indices, None)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Unpack to (padded, lengths); ``total_length`` pads the time axis further."""
    data, batch_sizes = sequence.data, sequence.batch_sizes._data
    T = len(batch_sizes)
    if total_length is not None:
        if total_length < T:
            raise ValueError(f"Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {T}")
        T = total_length
    B = int(batch_sizes[0])
    lengths = np.array([(batch_sizes > b).sum() for b in range(B)], dtype=np.int64)
    # index of each (t, b) row of ``data``; padding rows point at an extra padding row
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    idx = np.full((T, B), len(data), dtype=np.int64)
    for t in range(len(batch_sizes)):
        idx[t, :batch_sizes[t]] = offsets[t] + np.arange(batch_sizes[t])
    from ... import cat, full
    pad_row = full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype)
    padded = cat([data, pad_row], 0)[_make(idx)]
    if sequence.unsorted_indices is not None:
        padded = padded[:, sequence.unsorted_indices]
        lengths = lengths[sequence.unsorted_indices._data]
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, _make(lengths)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack variable-length tensors (L_i, *) into (T, B, *) (or (B, T, *)) with padding."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got "
                         f"{padding_side}.")
    if isinstance(sequences, Tensor):
        sequences = sequences.unbind(0)
    sequences = list(sequences)
    T = max(s.shape[0] for s in sequences)
    from ... import cat, full, stack
    padded = []
    for s in sequences:
        n = T - s.shape[0]
        if n:
            pad = full((n,) + tuple(s.shape[1:]), padding_value, dtype=s.dtype)
            s = cat([s, pad] if padding_side == "right" else [pad, s], 0)
        padded.append(s)
    return stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    if not batch_first:
        padded_sequences = padded_sequences.transpose(0, 1)
    return [padded_sequences[b, :int(n)] for b, n in enumerate(_lengths_array(lengths))]


def pack_sequence(sequences, enforce_sorted=True):
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences):
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


__all__ = ["invert_permutation", "PackedSequence", "pack_padded_sequence",
           "pad_packed_sequence", "pad_sequence", "unpad_sequence", "pack_sequence",
           "unpack_sequence"]
