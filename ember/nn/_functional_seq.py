"""Functional forms for sequence models: ``embedding``, ``embedding_bag``,
``scaled_dot_product_attention`` and ``multi_head_attention_forward`` (re-exported by
``ember.nn.functional``)."""

from __future__ import annotations

import math

import numpy as np

from .._meta import MetaArray
from .._tensor import Tensor, _make
from ..autograd.graph import Node
from ..ops.indexing import IndexAddZeros
from .._autocast import autocast_function


# ---------------------------------------------------------------- embedding
class EmbeddingLookup(Node):
    """``weight[indices]``; backward scatters rows (skipping ``padding_idx``)."""

    @staticmethod
    def forward(ctx, weight, idx, padding_idx, scale_grad_by_freq):
        ctx.idx, ctx.shape = idx, weight.shape
        ctx.padding_idx, ctx.scale = padding_idx, scale_grad_by_freq
        return weight[idx]

    @staticmethod
    def backward(ctx, g):
        idx = ctx.idx
        w = None
        if ctx.padding_idx is not None:
            w = (idx != ctx.padding_idx).astype(g._data.dtype)
        if ctx.scale:
            _, inv, counts = np.unique(idx.reshape(-1), return_inverse=True, return_counts=True)
            f = (1.0 / counts[inv]).reshape(idx.shape).astype(g._data.dtype)
            w = f if w is None else w * f
        if w is not None:
            g = g * _make(w[..., None])
        return IndexAddZeros.apply(g, ctx.shape, (idx,)), None, None, None


class SparseEmbeddingLookup(EmbeddingLookup):
    """``EmbeddingLookup`` whose weight gradient is a sparse COO tensor (``sparse=True``):
    one entry per looked-up index (padding rows left out), uncoalesced, as PyTorch's."""

    @staticmethod
    def backward(ctx, g):
        from ..sparse import _new_sparse
        from ..autograd.graph import capturing_backward
        if capturing_backward():
            raise NotImplementedError("sparse gradients (Embedding(sparse=True)) are not "
                                      "captured into graphs; this step runs eagerly")
        if ctx.scale:  # PyTorch 2.13 refuses it too
            raise RuntimeError("embedding_backward: scale_grad_by_freq not supported with "
                               "sparse gradients")
        idx = ctx.idx.reshape(-1).astype(np.int64)
        rows = g.reshape(-1, ctx.shape[-1])
        if ctx.padding_idx is not None:
            keep = idx != ctx.padding_idx
            if not keep.all():
                idx, rows = idx[keep], rows[_make(keep)]
        if not rows.requires_grad:  # the values are the gradient's own (not a view of it)
            rows = _make(np.array(rows._data, copy=True))
        return _new_sparse(idx.reshape(1, -1), rows, ctx.shape, idx.size <= 1), None, None, None


def _index_array(input, what="embedding"):
    if not isinstance(input, Tensor):
        raise TypeError(f"{what}(): argument 'indices' must be Tensor, not "
                        f"{type(input).__name__}")
    a = input._data
    if a.dtype.kind not in "iu":
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the "
                           f"following scalar types: Long, Int; but got {input.dtype} instead "
                           f"(while checking arguments for {what})")
    return a


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` at ``input``'s indices."""
    if hasattr(input, "device_mesh") and max_norm is None:
        # a DTensor of indices: the op's sharding rule reads its layout (ember/distributed)
        if padding_idx is not None and padding_idx < 0:
            padding_idx += weight.shape[0]
        return EmbeddingLookup.apply(weight, input, padding_idx, scale_grad_by_freq)
    idx = _index_array(input)
    n = weight.shape[0]
    if idx.size and type(idx) is not MetaArray and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"index out of range in self (indices must be in [0, {n}), got "
                         f"min {int(idx.min())}, max {int(idx.max())})")
    if padding_idx is not None:
        if padding_idx < 0:
            padding_idx += n
        if not 0 <= padding_idx < n:
            raise AssertionError("Padding_idx must be within num_embeddings")
    if max_norm is not None and not weight.is_meta:  # renorming changes values only
        _renorm_rows(weight, idx, max_norm, norm_type)
    lookup = SparseEmbeddingLookup if sparse else EmbeddingLookup
    return lookup.apply(weight, idx, padding_idx, scale_grad_by_freq)


def _renorm_rows(weight, idx, max_norm, norm_type):
    """In place, without autograd: rescale the referenced rows whose norm exceeds max_norm."""
    rows = np.unique(idx.reshape(-1))
    w = weight._data
    norms = np.linalg.norm(w[rows].astype(np.float64), ord=norm_type, axis=1)
    scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
    w[rows] = (w[rows] * scale[:, None]).astype(w.dtype)
    from .._tensor import _bump_version
    _bump_version(weight)


class SegmentReduce(Node):
    """Sum (or mean) of rows of ``x`` per segment id: out[seg[i]] += x[i]."""

    @staticmethod
    def forward(ctx, x, seg, n_seg, mean):
        out = np.zeros((n_seg,) + x.shape[1:], dtype=x.dtype)
        np.add.at(out, seg, x)
        counts = None
        if mean:
            counts = np.bincount(seg, minlength=n_seg).astype(x.dtype)
            out /= np.maximum(counts, 1)[:, None]
        ctx.seg, ctx.counts = seg, counts
        return out

    @staticmethod
    def backward(ctx, g):
        if ctx.counts is not None:
            g = g / _make(np.maximum(ctx.counts, 1)[:, None])
        return g[_make(ctx.seg)], None, None, None


class SegmentMax(Node):
    @staticmethod
    def forward(ctx, x, seg, n_seg):
        out = np.full((n_seg,) + x.shape[1:], -np.inf, dtype=x.dtype)
        np.maximum.at(out, seg, x)
        arg = np.zeros(out.shape, dtype=np.int64)
        # the first row of each segment achieving the max, per column
        for i in range(len(seg) - 1, -1, -1):
            hit = x[i] == out[seg[i]]
            arg[seg[i]][hit] = i
        empty = np.bincount(seg, minlength=n_seg) == 0
        out[empty] = 0
        ctx.arg, ctx.shape, ctx.empty = arg, x.shape, empty
        return out

    @staticmethod
    def backward(ctx, g):
        cols = np.broadcast_to(np.arange(ctx.shape[1]), ctx.arg.shape)
        keep = ~ctx.empty
        return IndexAddZeros.apply(g[_make(keep)], ctx.shape,
                                   (ctx.arg[keep], cols[keep])), None, None


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                  mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                  padding_idx=None):
    """Sums, means or maxima of bags of embeddings (2-d input: one bag per row)."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, got {mode!r}")
    if sparse and mode == "max":
        raise ValueError("max mode does not support sparse weights")
    idx = _index_array(input, "embedding_bag")
    if idx.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated "
                             "is a mini-batch of fixed length sequences.")
        B, L = idx.shape
        offs = np.arange(0, B * L, L)
        idx = idx.reshape(-1)
    elif idx.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        offs = offsets._data.astype(np.int64).reshape(-1)
        if include_last_offset:
            offs = offs[:-1]
        B = len(offs)
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension "
                         f"{idx.ndim}")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. "
                                  f"per_sample_weights is only supported for mode='sum' (got "
                                  f"mode='{mode}'). Please open a feature request on GitHub.")
    if weight.is_meta or input.is_meta:
        # on meta, only the result's metadata: one row of weight's width per bag (an op on
        # weight, so that gradients reach it with its shape)
        return weight[:1].expand(B, weight.shape[1]) * 1
    # the bag of position i is the last bag whose offset is <= i (equal offsets: empty bags)
    seg = np.searchsorted(offs, np.arange(len(idx)), side="right") - 1
    keep = np.ones(len(idx), dtype=bool) if padding_idx is None else idx != padding_idx
    rows = embedding(_make(idx[keep]), weight, None, max_norm, norm_type, scale_grad_by_freq,
                     sparse)
    seg_k = seg[keep]
    if per_sample_weights is not None:
        rows = rows * per_sample_weights[_make(keep)].unsqueeze(-1)
    if mode == "max":
        return SegmentMax.apply(rows, seg_k, B)
    return SegmentReduce.apply(rows, seg_k, B, mode == "mean")


# ---------------------------------------------------------------- attention
@autocast_function("lower")
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """softmax(Q K^T * scale + mask) V over the last two dims; boolean masks mark the
    positions that take part (True = attend)."""
    from . import functional as F
    from .. import ones, tril
    L, S = query.shape[-2], key.shape[-2]
    if query.shape[-1] != key.shape[-1]:
        raise RuntimeError(f"scaled_dot_product_attention: query and key must have the same "
                           f"embedding size, got {query.shape[-1]} and {key.shape[-1]}")
    scale_factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.dim() >= 3 and query.shape[-3] != key.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]

        def repeat_heads(t):  # each key/value head serves ``rep`` consecutive query heads
            shape = tuple(t.shape)
            t = t.unsqueeze(-3).expand(shape[:-2] + (rep,) + shape[-2:])
            return t.reshape(shape[:-3] + (shape[-3] * rep,) + shape[-2:])
        key, value = repeat_heads(key), repeat_heads(value)
    if dropout_p == 0.0 and query.dim() >= 3 and key.dim() == query.dim() and \
            value.dim() == query.dim():
        out = _fused_sdpa(query, key, value, attn_mask, is_causal, scale_factor)
        if out is not None:
            return out
    scores = query @ key.transpose(-2, -1)
    scores = scores * scale_factor
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be "
                               "set when is_causal=True")
        causal = tril(ones(L, S, dtype=_bool_dtype()))
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == _bool_dtype():
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = F.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, True)
    return weights @ value


def _fused_sdpa(query, key, value, attn_mask, is_causal, scale):
    """``scaled_dot_product_attention`` through the fused ``Attention`` op (heads split
    over the cores), or None where it does not apply: leading dims that differ between
    query, key and value, a mask with leading dims, a mask that needs a gradient, or an
    active mode (see ``ember.ops.nn.attention``)."""
    from ..autograd.graph import _MODES
    from ..ops.nn import attention
    from .. import tensor
    if _MODES:  # decide before building masks or views, which a capture would record
        return None
    lead = tuple(query.shape[:-2])
    if tuple(key.shape[:-2]) != lead or tuple(value.shape[:-2]) != lead:
        return None
    L, S = query.shape[-2], key.shape[-2]
    mask = None
    if is_causal:
        if attn_mask is not None:
            return None  # the composed path raises PyTorch's error
        mask = tensor(np.triu(np.full((L, S), -np.inf, query._data.dtype), 1))
    elif attn_mask is not None:
        if attn_mask.dim() > 2 and any(d != 1 for d in attn_mask.shape[:-2]):
            return None
        m = attn_mask.reshape(tuple(attn_mask.shape[-2:])) if attn_mask.dim() > 2 else \
            attn_mask
        if m.dtype == _bool_dtype():
            if m.requires_grad:
                return None
            m = tensor(np.where(m._data, 0.0, -np.inf).astype(query._data.dtype))
        mask = m
    q = query.reshape((-1,) + tuple(query.shape[-2:]))
    k = key.reshape((-1,) + tuple(key.shape[-2:]))
    v = value.reshape((-1,) + tuple(value.shape[-2:]))
    out = attention(q, k, v, mask, scale)
    return None if out is None else out.reshape(lead + (L, value.shape[-1]))


def _bool_dtype():
    from .. import bool as b
    return b


def _canonical_mask(mask, name, other_type, target_type):
    """Boolean masks (True = masked out) become float masks with -inf; floats pass."""
    if mask is None:
        return None
    if mask.dtype == _bool_dtype():
        from .. import zeros
        z = zeros(mask.shape, dtype=target_type)
        return z.masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return mask


def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight,
                                 in_proj_bias, bias_k, bias_v, add_zero_attn, dropout_p,
                                 out_proj_weight, out_proj_bias, training=True,
                                 key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights=True, is_causal=False):
    """PyTorch's multi-head attention on (L, N, E) inputs (or unbatched (L, E))."""
    from . import functional as F
    from .. import cat, zeros
    if static_k is not None or static_v is not None:
        raise NotImplementedError("multi_head_attention_forward: static_k/static_v are not "
                                  "supported yet")
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but "
                             f"got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the "
                           "Transformer module method `generate_square_subsequent_mask` to "
                           "create this mask.")
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", None, query.dtype)
    attn_mask = _canonical_mask(attn_mask, "attn_mask", None, query.dtype)

    if not training:
        dropout_p = 0.0
    if not need_weights and dropout_p == 0.0 and query is key and key is value and \
            not use_separate_proj_weight and bias_k is None and bias_v is None and \
            not add_zero_attn and key_padding_mask is None and \
            (attn_mask is None or attn_mask.dim() == 2):
        out = _packed_self_attention(query, num_heads, in_proj_weight, in_proj_bias,
                                     out_proj_weight, out_proj_bias, attn_mask, False)
        if out is not None:
            return (out if batched else out.squeeze(1)), None
    if not use_separate_proj_weight:
        # input projections
        if key is value and query is key:
            q, k, v = F.linear(query, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_k, w_v = in_proj_weight.chunk(3)
            b_q = b_k = b_v = None
            if in_proj_bias is not None:
                b_q, b_k, b_v = in_proj_bias.chunk(3)
            q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v,
                                                                                   b_v)
    else:
        b_q = b_k = b_v = None
        if in_proj_bias is not None:
            b_q, b_k, b_v = in_proj_bias.chunk(3)
        q = F.linear(query, q_proj_weight, b_q)
        k = F.linear(key, k_proj_weight, b_k)
        v = F.linear(value, v_proj_weight, b_v)

    if attn_mask is not None:
        if attn_mask.dim() == 2:
            if tuple(attn_mask.shape) != (tgt_len, src_len):
                raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, "
                                   f"but should be {(tgt_len, src_len)}.")
            attn_mask = attn_mask.unsqueeze(0)
        elif attn_mask.dim() == 3:
            if tuple(attn_mask.shape) != (bsz * num_heads, tgt_len, src_len):
                raise RuntimeError(f"The shape of the 3D attn_mask is {tuple(attn_mask.shape)}, "
                                   f"but should be {(bsz * num_heads, tgt_len, src_len)}.")
        else:
            raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")

    if bias_k is not None and bias_v is not None:
        k = cat([k, bias_k.repeat(1, bsz, 1)])
        v = cat([v, bias_v.repeat(1, bsz, 1)])
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = F.pad(key_padding_mask, (0, 1))

    # (L, N, E) -> (N * heads, L, head_dim)
    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.reshape(k.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    v = v.reshape(v.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    if add_zero_attn:
        zshape = (bsz * num_heads, 1, head_dim)
        k = cat([k, zeros(zshape, dtype=k.dtype)], dim=1)
        v = cat([v, zeros(zshape, dtype=v.dtype)], dim=1)
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = F.pad(key_padding_mask, (0, 1))
    src_len = k.shape[1]
    if key_padding_mask is not None:
        kpm = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(-1, num_heads, -1, -1)
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        attn_mask = kpm if attn_mask is None else attn_mask + kpm
    if not training:
        dropout_p = 0.0

    out = None
    if not need_weights and dropout_p == 0.0:  # one fused op, heads split over the cores
        from ..ops.nn import attention
        out = attention(q, k, v, attn_mask, 1.0 / math.sqrt(head_dim))
    if out is None:
        scores = (q * (1.0 / math.sqrt(head_dim))) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = F.softmax(scores, dim=-1)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        out = weights @ v  # (N * heads, L, head_dim)
    out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
    out = F.linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, embed_dim)
    if not batched:
        out = out.squeeze(1)
    if not need_weights:
        return out, None
    weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
    if average_attn_weights:
        weights = weights.mean(dim=1)
    if not batched:
        weights = weights.squeeze(0)
    return out, weights


def _packed_self_attention(x, num_heads, in_proj_weight, in_proj_bias, out_proj_weight,
                           out_proj_bias, attn_mask, batch_first):
    """Self-attention of ``x`` (L, N, E), or (N, L, E) with ``batch_first``, as one op from
    the packed projection to the merged heads (``ember.ops.nn.PackedSelfAttention``: no
    copies for the head split and merge), then the output projection; or None where that op
    does not apply (the caller composes). ``attn_mask`` is None or a canonical (float) 2-d
    mask; a wrong shape raises PyTorch's error. With ``batch_first`` this is the layout of
    ``MultiheadAttention(batch_first=True)`` as it comes: no transposed views whose
    projections and gradients would be copied."""
    from . import functional as F
    from ..ops.nn import PackedSelfAttention, packed_self_attention_applies
    L, N, E = (x.shape[1], x.shape[0], x.shape[2]) if batch_first else tuple(x.shape)
    if attn_mask is not None and tuple(attn_mask.shape) != (L, L):
        raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, "
                           f"but should be {(L, L)}.")
    if not packed_self_attention_applies(x, attn_mask, num_heads):
        return None
    qkv = F.linear(x, in_proj_weight, in_proj_bias)
    out = PackedSelfAttention.apply(qkv, None if attn_mask is None else attn_mask._data,
                                    num_heads, 1.0 / math.sqrt(E // num_heads), batch_first)
    return F.linear(out.reshape(L * N, E), out_proj_weight, out_proj_bias).reshape(x.shape)


__all__ = ["embedding", "embedding_bag", "scaled_dot_product_attention",
           "multi_head_attention_forward"]
