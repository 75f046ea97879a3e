"""``torch.nn.attention.flex_attention``: attention whose scores and mask are given by Python
functions of the indices, ``score_mod(score, b, h, q_idx, kv_idx)`` and
``mask_mod(b, h, q_idx, kv_idx)``.

PyTorch compiles these into a block-sparse kernel. ember evaluates them once, eagerly, on
broadcast index tensors (``b`` of shape ``(B, 1, 1, 1)``, ``h`` ``(1, H, 1, 1)``, ``q_idx``
``(1, 1, L, 1)``, ``kv_idx`` ``(1, 1, 1, S)``), so any function written with elementwise
tensor ops gives the dense ``(B, H, L, S)`` result; a ``BlockMask`` keeps that dense mask and
the block counts PyTorch reports. Gradients flow through ``score_mod`` as through any op."""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["AuxOutput", "AuxRequest", "BlockMask", "and_masks", "create_block_mask",
           "create_mask", "flex_attention", "noop_mask", "or_masks",
           "_DEFAULT_SPARSE_BLOCK_SIZE"]

_DEFAULT_SPARSE_BLOCK_SIZE = 128


class AuxRequest(NamedTuple):
    """Which extra outputs ``flex_attention(return_aux=...)`` returns."""

    lse: bool = False
    max_scores: bool = False


class AuxOutput(NamedTuple):
    """The extra outputs of ``flex_attention``: None where not requested."""

    lse: object = None
    max_scores: object = None


def noop_mask(b, h, q_idx, kv_idx):
    """The mask that keeps every score (a 0-d True, broadcast by its user)."""
    return b.new_ones((), dtype=_bool())


def _bool():
    from ... import bool as _b
    return _b


def _bshape(*idx):
    shape = [1, 1, 1, 1]
    for t in idx:
        for i, n in enumerate(t.shape):
            shape[i] = max(shape[i], n)
    return shape


def and_masks(*mask_mods):
    """A mask_mod keeping a score where every one of ``mask_mods`` keeps it."""
    def mask(b, h, q_idx, kv_idx):
        out = None
        for m in mask_mods:
            r = m(b, h, q_idx, kv_idx)
            out = r if out is None else out & r
        return noop_mask(b, h, q_idx, kv_idx) if out is None else out
    return mask


def or_masks(*mask_mods):
    """A mask_mod keeping a score where any one of ``mask_mods`` keeps it."""
    def mask(b, h, q_idx, kv_idx):
        out = None
        for m in mask_mods:
            r = m(b, h, q_idx, kv_idx)
            out = r if out is None else out | r
        if out is None:
            from ... import zeros
            return zeros(_bshape(b, h, q_idx, kv_idx), dtype=_bool())
        return out
    return mask


def _indices(B, H, L, S, device=None):
    from ... import arange
    return (arange(B, device=device).view(B, 1, 1, 1), arange(H, device=device).view(1, H, 1, 1),
            arange(L, device=device).view(1, 1, L, 1), arange(S, device=device).view(1, 1, 1, S))


def create_mask(mod_fn, B, H, Q_LEN, KV_LEN, device="cpu"):
    """The dense boolean mask ``(B, H, Q_LEN, KV_LEN)`` of a mask_mod (``B``/``H`` of None
    mean 1, a mask shared over that dimension)."""
    B, H = B or 1, H or 1
    b, h, q, kv = _indices(B, H, Q_LEN, KV_LEN, device)
    m = mod_fn(b, h, q, kv)
    from ... import as_tensor
    m = as_tensor(m, dtype=_bool())
    return m.expand(B, H, Q_LEN, KV_LEN).contiguous()


class BlockMask:
    """A mask for ``flex_attention`` built by ``create_block_mask``: here the per-score mask
    itself, with the block layout PyTorch describes (``BLOCK_SIZE``, ``shape``, ``to_dense()``
    per block, ``sparsity()``)."""

    def __init__(self, mask, mask_mod, BLOCK_SIZE=(_DEFAULT_SPARSE_BLOCK_SIZE,) * 2):
        self._dense = mask
        self.mask_mod = mask_mod
        if isinstance(BLOCK_SIZE, int):
            BLOCK_SIZE = (BLOCK_SIZE, BLOCK_SIZE)
        self.BLOCK_SIZE = tuple(BLOCK_SIZE)
        self.seq_lengths = tuple(mask.shape[-2:])

    @property
    def shape(self):
        B, H, L, S = self._dense.shape
        return (B, H, L, S)

    def _blocks(self):
        import numpy as np
        m = self._dense.numpy()
        B, H, L, S = m.shape
        bq, bk = self.BLOCK_SIZE
        nq, nk = math.ceil(L / bq), math.ceil(S / bk)
        padded = np.zeros((B, H, nq * bq, nk * bk), bool)
        padded[:, :, :L, :S] = m
        return padded.reshape(B, H, nq, bq, nk, bk).any(axis=(3, 5))

    def to_dense(self):
        """One ``int32`` entry per (query block, key block): 1 where the block holds a kept
        score (PyTorch's block-level view; ``mask_mod`` gives the per-score mask)."""
        from ... import from_numpy
        return from_numpy(self._blocks().astype("int32"))

    def _block_counts(self):
        blocks = self._blocks()
        return int(blocks.sum()), blocks.size

    def sparsity(self):
        """The percentage of blocks that hold no kept score (and PyTorch's kernel skips)."""
        used, total = self._block_counts()
        return 100.0 * (1 - used / total)

    def __repr__(self):
        return (f"BlockMask(shape={self.shape}, sparsity={self.sparsity():.2f}%, "
                f"BLOCK_SIZE={self.BLOCK_SIZE})")


def create_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, device="cpu", BLOCK_SIZE=128,
                      _compile=False):
    """A ``BlockMask`` of ``mask_mod`` over a ``(B, H, Q_LEN, KV_LEN)`` score grid."""
    return BlockMask(create_mask(mask_mod, B, H, Q_LEN, KV_LEN, device), mask_mod, BLOCK_SIZE)


def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None,
                   enable_gqa=False, return_lse=False, kernel_options=None, *,
                   return_aux=None):
    """``softmax(score_mod(q @ k^T * scale) masked by block_mask) @ v`` for ``query``
    ``(B, Hq, L, E)``, ``key`` ``(B, Hkv, S, E)``, ``value`` ``(B, Hkv, S, Ev)``. With
    ``enable_gqa`` each group of ``Hq // Hkv`` query heads shares a key/value head. With
    ``return_lse`` also returns the log-sum-exp of the scores per query (``(B, Hq, L)``,
    natural log); with ``return_aux=AuxRequest(...)`` returns ``(out, AuxOutput)`` with the
    log-sum-exp and/or the largest score per query. A query whose keys are all masked gets
    zeros, as in PyTorch."""
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(f"flex_attention: expected 4-d query, key, value (B, H, L, E), got "
                         f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    B, Hq, L, E = query.shape
    Hkv, S = key.shape[1], key.shape[2]
    if Hq != Hkv:
        if not enable_gqa or Hq % Hkv:
            raise ValueError(f"flex_attention: query has {Hq} heads and key/value {Hkv}; "
                             f"pass enable_gqa=True with Hq a multiple of Hkv")
        key = key.repeat_interleave(Hq // Hkv, dim=1)
        value = value.repeat_interleave(Hq // Hkv, dim=1)
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if score_mod is not None:
        b, h, q, kv = _indices(B, Hq, L, S, query.device)
        scores = score_mod(scores, b, h, q, kv)
    if block_mask is not None:
        mask = block_mask._dense if isinstance(block_mask, BlockMask) else block_mask
        if tuple(mask.shape[-2:]) != (L, S):
            raise ValueError(f"flex_attention: block_mask covers {tuple(mask.shape[-2:])} "
                             f"scores, the inputs give {(L, S)}")
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = scores.logsumexp(dim=-1)
    # rows with every score masked: exp(-inf - -inf) is nan; PyTorch returns 0 there
    finite = lse.isfinite().unsqueeze(-1)
    weights = (scores - lse.unsqueeze(-1)).exp().where(finite, scores.new_zeros(()))
    out = weights @ value
    if return_aux is not None:
        return out, AuxOutput(lse=lse if return_aux.lse else None,
                              max_scores=scores.amax(dim=-1) if return_aux.max_scores else None)
    return (out, lse) if return_lse else out
