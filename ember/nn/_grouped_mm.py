"""``nn.functional.grouped_mm`` and ``scaled_mm`` (PyTorch's grouped and scaled matrix
products, for mixture-of-experts layers and float8 training), written with ember ops so that
gradients flow; ``ScalingType``/``SwizzleType`` name the scale layouts."""

from __future__ import annotations

import enum

__all__ = ["ScalingType", "SwizzleType", "grouped_mm", "scaled_grouped_mm", "scaled_mm"]


class ScalingType(enum.IntEnum):
    """How a scale tensor maps onto a matrix: one scale, one per row, or one per block."""

    TensorWise = 0
    RowWise = 1
    BlockWise1x16 = 2
    BlockWise1x32 = 3
    BlockWise1x128 = 4
    BlockWise128x128 = 5


class SwizzleType(enum.IntEnum):
    """The memory layout of block scales (a GPU kernel detail)."""

    NO_SWIZZLE = 0
    SWIZZLE_32_4_4 = 1


def _bounds(offs, n, what):
    ends = [int(e) for e in offs.tolist()]
    if any(b < a for a, b in zip([0] + ends, ends)) or (ends and ends[-1] > n):
        raise RuntimeError(f"grouped_mm: offs {ends} must be non-decreasing and at most the "
                           f"{what} ({n})")
    return list(zip([0] + ends[:-1], ends))


def grouped_mm(mat_a, mat_b, *, offs=None, bias=None, out_dtype=None):
    """Matrix products of groups: ``offs`` (int32, cumulative ends) splits the 2-d operand.

    - 2-d ``(M, K)`` x 3-d ``(G, K, N)``: rows ``offs[g-1]:offs[g]`` of A times ``B[g]``;
    - 3-d ``(G, M, K)`` x 2-d ``(K, N)``: ``A[g]`` times columns ``offs[g-1]:offs[g]`` of B;
    - 2-d ``(M, K)`` x 2-d ``(K, N)``: the K slices, one ``(M, N)`` product per group;
    - 3-d x 3-d: batched, no ``offs``."""
    from .. import bfloat16, cat, float16, float32, stack, zeros
    if bias is not None:
        raise RuntimeError("Bias not supported yet")
    for name, m in (("mat_a", mat_a), ("mat_b", mat_b)):
        if m.dtype not in (float32, bfloat16, float16):
            raise RuntimeError(f"Expected {name} to be Float32, BFloat16 or Float16 matrix, "
                               f"got {str(m.dtype).split('.')[-1].capitalize()}")
        if m.ndim not in (2, 3):
            raise RuntimeError(f"grouped_mm: {name} must be 2-d or 3-d, got {m.ndim}-d")
    both_3d = mat_a.ndim == 3 and mat_b.ndim == 3
    if (offs is None) != both_3d:
        raise RuntimeError("Have to provide offsets if there is a 2d matrix, or no offset if "
                           "both matrices are 3d")
    out_dtype = mat_a.dtype if out_dtype is None else out_dtype
    a, b = mat_a.to(float32), mat_b.to(float32)  # accumulate in float32, as PyTorch
    if both_3d:
        out = a @ b
    elif a.ndim == 2 and b.ndim == 3:
        parts = _bounds(offs, a.shape[0], "rows of mat_a")
        if len(parts) != b.shape[0]:
            raise RuntimeError(f"grouped_mm: {len(parts)} offsets for {b.shape[0]} groups")
        out = cat([a[s:e] @ b[g] for g, (s, e) in enumerate(parts)] +
                  [zeros(a.shape[0] - (parts[-1][1] if parts else 0), b.shape[2])], dim=0)
    elif a.ndim == 3 and b.ndim == 2:
        parts = _bounds(offs, b.shape[1], "columns of mat_b")
        if len(parts) != a.shape[0]:
            raise RuntimeError(f"grouped_mm: {len(parts)} offsets for {a.shape[0]} groups")
        out = cat([a[g] @ b[:, s:e] for g, (s, e) in enumerate(parts)] +
                  [zeros(a.shape[1], b.shape[1] - (parts[-1][1] if parts else 0))], dim=1)
    else:
        parts = _bounds(offs, a.shape[1], "inner dimension")
        out = stack([a[:, s:e] @ b[s:e] for s, e in parts], dim=0)
    return out.to(out_dtype)


def _scaled(m, scale, recipe, rows):
    """``m`` in float32 times its scale: one number, or one per row (``rows``) or column."""
    from .. import float32
    m = m.to(float32)
    scale = scale.to(float32)
    if recipe in (ScalingType.TensorWise, ScalingType.TensorWise.value):
        if scale.numel() != 1:
            raise RuntimeError(f"scaled_mm: a TensorWise scale has one element, got "
                               f"{tuple(scale.shape)}")
        return m * scale.reshape(())
    if recipe in (ScalingType.RowWise, ScalingType.RowWise.value):
        want = (m.shape[0], 1) if rows else (1, m.shape[1])
        if scale.numel() != (want[0] * want[1]):
            raise RuntimeError(f"scaled_mm: a RowWise scale for a {tuple(m.shape)} operand "
                               f"has shape {want}, got {tuple(scale.shape)}")
        return m * scale.reshape(want)
    raise NotImplementedError(f"scaled_mm: scale recipe {ScalingType(int(recipe)).name} "
                              f"(block-wise scales for MX/NVFP4 formats) is not implemented "
                              f"in ember; TensorWise and RowWise are")


def scaled_mm(mat_a, mat_b, scale_a, scale_recipe_a, scale_b, scale_recipe_b, swizzle_a=None,
              swizzle_b=None, bias=None, output_dtype=None, contraction_dim=(),
              use_fast_accum=False):
    """``(A * scale_a) @ (B * scale_b) + bias`` for low-precision (float8) operands, the
    product accumulated in float32 and returned in ``output_dtype`` (PyTorch's default:
    bfloat16). Scales: ``TensorWise`` (one each) or ``RowWise`` (A's per row, B's per
    column)."""
    from .. import bfloat16
    if output_dtype is None:
        output_dtype = bfloat16
    if isinstance(scale_a, (list, tuple)) or isinstance(scale_b, (list, tuple)):
        raise NotImplementedError("scaled_mm: lists of scales (two-level MX scaling) are not "
                                  "implemented in ember")
    if mat_a.ndim != 2 or mat_b.ndim != 2:
        raise RuntimeError(f"scaled_mm: mat_a and mat_b must be matrices, got {mat_a.ndim}-d "
                           f"and {mat_b.ndim}-d")
    if contraction_dim:
        raise NotImplementedError("scaled_mm: contraction_dim is not implemented in ember")
    out = _scaled(mat_a, scale_a, scale_recipe_a, True) @ \
        _scaled(mat_b, scale_b, scale_recipe_b, False)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out.to(output_dtype)


def scaled_grouped_mm(mat_a, mat_b, scale_a, scale_recipe_a, scale_b, scale_recipe_b,
                      swizzle_a=None, swizzle_b=None, bias=None, offs=None,
                      output_dtype=None, contraction_dim=(), use_fast_accum=False):
    """``grouped_mm`` of low-precision (float8) operands with row-wise scales: each group's
    product accumulated in float32, times A's scale per output row and B's per output
    column, returned in ``output_dtype`` (default bfloat16). Scale shapes as PyTorch's
    kernels check them: a 2-d operand has a 1-d scale over its rows (A) or columns (B), times
    the group count when both operands are 2-d; a 3-d operand a ``(groups, rows or
    columns)`` scale. PyTorch runs this on CUDA only; ember computes it on the CPU."""
    from .. import bfloat16, float32
    if output_dtype is None:
        output_dtype = bfloat16
    if any(isinstance(x, (list, tuple)) for x in (scale_a, scale_b, scale_recipe_a,
                                                   scale_recipe_b)):
        raise NotImplementedError("scaled_grouped_mm: lists of scales (two-level MX "
                                  "scaling) are not implemented in ember")
    for recipe in (scale_recipe_a, scale_recipe_b):
        if recipe not in (ScalingType.RowWise, ScalingType.RowWise.value):
            raise NotImplementedError(f"scaled_grouped_mm: scale recipe "
                                      f"{ScalingType(int(recipe)).name} is not implemented in "
                                      f"ember; RowWise is")
    if bias is not None:
        raise RuntimeError("Bias not supported yet")
    if contraction_dim:
        raise NotImplementedError("scaled_grouped_mm: contraction_dim is not implemented in "
                                  "ember")
    both_2d = mat_a.ndim == 2 and mat_b.ndim == 2
    groups = offs.numel() if offs is not None else mat_a.shape[0]
    for name, sc, m, dim in (("scale_a", scale_a, mat_a, 0), ("scale_b", scale_b, mat_b, 1)):
        if m.ndim == 2:
            want = (m.shape[dim] * (groups if both_2d else 1),)
        else:
            want = (m.shape[0], m.shape[1 + dim])
        if tuple(sc.shape) != want:
            raise RuntimeError(f"scaled_grouped_mm: {name} for a {tuple(m.shape)} operand must "
                               f"have shape {want}, got {tuple(sc.shape)}")
    prod = grouped_mm(mat_a.to(float32), mat_b.to(float32), offs=offs, out_dtype=float32)
    sa, sb = scale_a.to(float32), scale_b.to(float32)
    if both_2d:  # (G, M, N): group g's rows and columns scales
        out = prod * sa.reshape(groups, -1, 1) * sb.reshape(groups, 1, -1)
    elif mat_a.ndim == 3 and mat_b.ndim == 3:
        out = prod * sa.unsqueeze(2) * sb.unsqueeze(1)
    elif mat_a.ndim == 2:  # rows of A in groups; B's scales per group's columns
        out = prod * sa.unsqueeze(1) * _per_group(sb, offs, mat_a.shape[0], 0)
    else:  # columns of B in groups; A's scales per group's rows
        out = prod * sb.unsqueeze(0) * _per_group(sa, offs, mat_b.shape[1], 1)
    return out.to(output_dtype)


def _per_group(scale, offs, n, dim):
    """A ``(groups, k)`` scale spread over the ``n`` rows (dim 0) or columns (dim 1) that
    ``offs`` cuts into groups (positions past the last offset get zeros)."""
    from .. import cat, zeros
    parts = _bounds(offs, n, "grouped dimension")
    pieces = [scale[g].unsqueeze(0).expand(e - s, -1) for g, (s, e) in enumerate(parts)]
    pieces.append(zeros(n - (parts[-1][1] if parts else 0), scale.shape[1]))
    rows = cat(pieces, dim=0)
    return rows if dim == 0 else rows.t()
