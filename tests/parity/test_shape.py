"""Parity of shape ops (views, joins, splits, flips, triangles) with PyTorch."""

import numpy as np
import pytest

from .helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

F = [np.float32, np.float64]

# (name, fn, shapes): each is checked for values and gradients in both float dtypes.
CASES = [
    ("view", lambda m, a: a.view(4, 3) * 2, [(3, 4)]),
    ("view_neg", lambda m, a: a.view(-1, 2).sum(0), [(3, 4)]),
    ("view_0d", lambda m, a: a.view(1, 1), [()]),
    ("reshape", lambda m, a: m.reshape(a, (2, -1)), [(3, 4)]),
    ("reshape_empty", lambda m, a: a.reshape(0, 5), [(5, 0)]),
    ("flatten", lambda m, a: m.flatten(a, 1), [(2, 3, 4)]),
    ("flatten_neg", lambda m, a: a.flatten(-2, -1), [(2, 3, 4)]),
    ("flatten_0d", lambda m, a: a.flatten(), [()]),
    ("unflatten", lambda m, a: a.unflatten(-1, (2, -1)), [(3, 4)]),
    ("squeeze", lambda m, a: a.squeeze(), [(1, 3, 1)]),
    ("squeeze_dim", lambda m, a: m.squeeze(a, -1), [(1, 3, 1)]),
    ("squeeze_dims", lambda m, a: a.squeeze((0, 2)), [(1, 3, 1)]),
    ("unsqueeze", lambda m, a: a.unsqueeze(-1), [(3, 4)]),
    ("unsqueeze_0d", lambda m, a: a.unsqueeze(0), [()]),
    ("permute", lambda m, a: a.permute(2, 0, 1), [(2, 3, 4)]),
    ("permute_neg", lambda m, a: m.permute(a, (-1, -3, -2)), [(2, 3, 4)]),
    ("transpose", lambda m, a: a.transpose(0, -1), [(2, 3, 4)]),
    ("swapaxes", lambda m, a: m.swapaxes(a, 0, 1), [(2, 3)]),
    ("movedim", lambda m, a: m.movedim(a, 0, -1), [(2, 3, 4)]),
    ("movedim_multi", lambda m, a: m.movedim(a, (0, 1), (2, 0)), [(2, 3, 4)]),
    ("t", lambda m, a: a.t(), [(2, 3)]),
    ("t_1d", lambda m, a: a.t(), [(3,)]),
    ("expand", lambda m, a: a.expand(2, 3, 4), [(3, 1)]),
    ("expand_neg", lambda m, a: a.expand(-1, 4), [(3, 1)]),
    ("expand_as", lambda m, a, b: a.expand_as(b), [(1, 4), (3, 4)]),
    ("broadcast_to", lambda m, a: m.broadcast_to(a, (2, 3, 4)), [(4,)]),
    ("broadcast_tensors", lambda m, a, b: m.broadcast_tensors(a, b), [(3, 1), (4,)]),
    ("repeat", lambda m, a: a.repeat(2, 1, 3), [(2, 3)]),
    ("repeat_0d", lambda m, a: a.repeat(3), [()]),
    ("tile", lambda m, a: m.tile(a, (2,)), [(2, 3)]),
    ("tile_more", lambda m, a: a.tile((2, 1, 2)), [(2, 3)]),
    ("cat", lambda m, a, b: m.cat([a, b], -1), [(2, 3), (2, 4)]),
    ("cat_empty", lambda m, a, b: m.cat([a, b]), [(2, 3), (0,)]),
    ("concat", lambda m, a, b: m.concat((a, b), 0), [(2, 3), (1, 3)]),
    ("stack", lambda m, a, b: m.stack([a, b], -1), [(2, 3), (2, 3)]),
    ("stack_0d", lambda m, a, b: m.stack([a, b]), [(), ()]),
    ("hstack", lambda m, a, b: m.hstack([a, b]), [(2, 3), (2, 1)]),
    ("hstack_1d", lambda m, a, b: m.hstack([a, b]), [(3,), (2,)]),
    ("vstack", lambda m, a, b: m.vstack([a, b]), [(3,), (2, 3)]),
    ("split", lambda m, a: a.split(2, -1), [(3, 5)]),
    ("split_sizes", lambda m, a: m.split(a, [1, 2], 0), [(3, 5)]),
    ("chunk", lambda m, a: a.chunk(3, 1), [(2, 7)]),
    ("chunk_uneven", lambda m, a: a.chunk(4), [(6,)]),
    ("unbind", lambda m, a: a.unbind(1), [(2, 3)]),
    ("narrow", lambda m, a: a.narrow(-1, 1, 2), [(3, 4)]),
    ("narrow_neg_start", lambda m, a: m.narrow(a, 0, -2, 2), [(3, 4)]),
    ("flip", lambda m, a: a.flip(0, -1), [(2, 3, 4)]),
    ("flip_list", lambda m, a: m.flip(a, [1]), [(2, 3)]),
    ("roll", lambda m, a: a.roll(1), [(2, 3)]),
    ("roll_dims", lambda m, a: m.roll(a, (1, -2), (0, 1)), [(2, 3)]),
    ("roll_dim", lambda m, a: a.roll(-1, 1), [(2, 3)]),
    ("tril", lambda m, a: a.tril(), [(3, 4)]),
    ("tril_k", lambda m, a: m.tril(a, -1), [(2, 3, 4)]),
    ("triu", lambda m, a: a.triu(1), [(3, 4)]),
    ("diag_1d", lambda m, a: m.diag(a), [(3,)]),
    ("diag_1d_k", lambda m, a: m.diag(a, -1), [(3,)]),
    ("diag_2d", lambda m, a: a.diag(1), [(3, 4)]),
    ("diagonal", lambda m, a: a.diagonal(), [(3, 4)]),
    ("diagonal_dims", lambda m, a: m.diagonal(a, -1, 0, -1), [(3, 2, 4)]),
    ("diagonal_off", lambda m, a: a.diagonal(offset=2, dim1=1, dim2=2), [(2, 3, 4)]),
    ("contiguous", lambda m, a: a.t().contiguous(), [(3, 4)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", CASES, ids=[c[0] for c in CASES])
def test_shape_parity(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


NONCONTIG = ["view_neg", "reshape", "flatten_neg", "permute", "expand", "cat", "stack", "split",
             "narrow", "flip", "roll", "tril", "diagonal", "repeat", "unbind"]


@pytest.mark.parametrize("name", NONCONTIG)
def test_shape_noncontig(name):
    fn, shapes = {c[0]: c[1:] for c in CASES}[name]
    if name == "view_neg":  # a view of a transposed tensor needs reshape in both libraries
        fn = lambda m, a: a.reshape(-1, 2).sum(0)  # noqa: E731
    check(fn, shapes, noncontig=True)


@pytest.mark.parametrize("name", ["permute", "expand", "repeat", "diagonal_off", "roll_dims",
                                  "cat", "split_sizes", "unbind", "tril_k", "diag_1d_k"])
def test_shape_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in CASES}[name]
    gradcheck(lambda m, *a: _first(fn(m, *a)), shapes)


def _first(out):
    return out if isinstance(out, ember.Tensor) else ember.cat([o.reshape(-1) for o in out])


def test_views_share_memory_and_version():
    base = ember.zeros(3, 4)
    views = [base.view(12), base.reshape(2, 6), base.t(), base[1], base[:, ::2],
             base.unsqueeze(0), base.transpose(0, 1), base.narrow(1, 1, 2), base.diagonal(),
             base.expand(2, 3, 4), base.split(2)[0], base.unbind(0)[1], base.flatten(),
             base.squeeze(), base.movedim(0, 1), base.permute(1, 0), base.chunk(2, 1)[1],
             base[..., None], base.detach()]
    for v in views:
        assert v._base is base, v
    v0 = base.view(12)
    before = base._version
    v0[5] = 7.0
    assert base[1, 1].item() == 7.0
    assert base._version == before + 1 and v0._version == base._version
    base.add_(1)
    assert v0[5].item() == 8.0
    assert base.t()._version == base._version


def test_reshape_copies_when_needed():
    base = ember.arange(6.0).reshape(2, 3)
    r = base.t().reshape(6)
    r[0] = 100.0
    assert base[0, 0].item() == 0.0


def test_view_errors():
    a = ember.zeros(3, 4)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        a.t().view(12)
    with pytest.raises(RuntimeError, match="invalid for input of size 12"):
        a.view(5, -1)
    with pytest.raises(IndexError, match="Dimension out of range"):
        a.transpose(0, 2)
    with pytest.raises(RuntimeError, match="must match the existing size"):
        a.expand(3, 5)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        ember.cat([a, ember.zeros(2, 3)])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        ember.stack([a, ember.zeros(2, 3)])


def test_contiguous_identity():
    a = ember.zeros(2, 3)
    assert a.contiguous() is a
    b = a.t()
    assert not b.is_contiguous() and b.contiguous().is_contiguous()


NEW = [
    ("diag_embed", lambda m, a: m.diag_embed(a), [(2, 3)]),
    ("diag_embed_off", lambda m, a: a.diag_embed(-1, 0, 2), [(2, 3)]),
    ("meshgrid_ij", lambda m, a, b: m.meshgrid(a, b, indexing="ij"), [(3,), (2,)]),
    ("meshgrid_xy", lambda m, a, b, c: m.meshgrid([a, b, c], indexing="xy"), [(3,), (2,), (4,)]),
    ("cartesian_prod", lambda m, a, b: m.cartesian_prod(a, b), [(3,), (2,)]),
    ("block_diag", lambda m, a, b, c: m.block_diag(a, b, c), [(2, 3), (2,), ()]),
    ("diff", lambda m, a: m.diff(a), [(3, 4)]),
    ("diff_n2", lambda m, a: a.diff(n=2, dim=0), [(4, 3)]),
    ("diff_pre_app", lambda m, a, p, q: m.diff(a, dim=-1, prepend=p, append=q),
     [(2, 3), (2, 1), (2, 2)]),
    ("atleast_1d", lambda m, a, b: m.atleast_1d(a, b), [(), (2, 3)]),
    ("atleast_2d", lambda m, a: m.atleast_2d(a), [(3,)]),
    ("atleast_3d", lambda m, a, b, c: m.atleast_3d([a, b, c]), [(), (3,), (2, 3)]),
    ("column_stack", lambda m, a, b, c: m.column_stack([a, b, c]), [(3,), (3, 2), (3,)]),
    ("row_stack", lambda m, a, b: m.row_stack([a, b]), [(3,), (2, 3)]),
    ("dstack", lambda m, a, b: m.dstack([a, b]), [(2, 3), (2, 3, 2)]),
    ("tensor_split_n", lambda m, a: m.tensor_split(a, 3, 1), [(2, 7)]),
    ("tensor_split_idx", lambda m, a: a.tensor_split([1, 4, 10], dim=-1), [(2, 7)]),
    ("tensor_split_neg", lambda m, a: a.tensor_split([-2, 1]), [(5,)]),
    ("split_with_sizes", lambda m, a: a.split_with_sizes([2, 5], 1), [(2, 7)]),
    ("hsplit", lambda m, a: m.hsplit(a, 2), [(3, 4)]),
    ("hsplit_idx", lambda m, a: a.hsplit([1, 3]), [(3, 4)]),
    ("vsplit", lambda m, a: m.vsplit(a, [1]), [(3, 4)]),
    ("dsplit", lambda m, a: m.dsplit(a, 2), [(2, 3, 4)]),
    ("unfold", lambda m, a: a.unfold(1, 3, 2), [(2, 7)]),
    ("unfold_overlap", lambda m, a: a.unfold(0, 2, 1), [(4, 2)]),
    ("unfold_0d", lambda m, a: a.unfold(0, 1, 1), [()]),
    ("as_strided", lambda m, a: m.as_strided(a, (3, 2), (1, 2)), [(3, 4)]),
    ("as_strided_overlap", lambda m, a: a.as_strided((3, 3), (1, 1), 1), [(3, 4)]),
    ("flipud", lambda m, a: m.flipud(a), [(3, 4)]),
    ("fliplr", lambda m, a: a.fliplr(), [(3, 4)]),
    ("rot90", lambda m, a: m.rot90(a), [(3, 4)]),
    ("rot90_k2", lambda m, a: a.rot90(2, [1, 2]), [(2, 3, 4)]),
    ("rot90_k3", lambda m, a: m.rot90(a, -1, (0, -1)), [(3, 4)]),
    ("rot90_k0", lambda m, a: m.rot90(a, 4), [(3, 4)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", NEW, ids=[c[0] for c in NEW])
def test_new_shape_ops(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


@pytest.mark.parametrize("name", ["unfold_overlap", "as_strided_overlap", "diag_embed_off",
                                  "block_diag"])
def test_new_shape_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in NEW}[name]
    gradcheck(lambda m, *a: _first(fn(m, *a)), shapes)


def test_unfold_and_as_strided_are_views():
    base = ember.zeros(6)
    u = base.unfold(0, 2, 2)
    u[1, 0] = 3.0
    assert base[2].item() == 3.0 and u._base is base
    s = base.as_strided((2,), (3,), 1)
    s[1] = 5.0
    assert base[4].item() == 5.0
    m = base.view(2, 3)[1]
    assert np.array_equal(m.as_strided((2,), (1,)).numpy(), base[3:5].numpy())


def test_meshgrid_views_and_errors():
    a = ember.arange(3.0)
    g = ember.meshgrid(a, ember.arange(2.0), indexing="ij")
    assert g[0]._base is a
    with pytest.raises(RuntimeError):
        ember.hsplit(ember.zeros(3, 5), 2)
    with pytest.raises(RuntimeError):
        ember.vsplit(ember.zeros(3), 1)
    with pytest.raises(RuntimeError):
        ember.rot90(ember.zeros(3, 3), 1, (0, 0))


@pytest.mark.parametrize("fn", [lambda m, a: m.flip(a, dims=[0]), lambda m, a: m.flip(a, (0, 1)),
                                lambda m, a: m.permute(a, dims=(1, 0)),
                                lambda m, a: m.reshape(a, shape=(4, 3)),
                                lambda m, a: a.flip(dims=(1,)), lambda m, a: a.permute([1, 0]),
                                lambda m, a: a.reshape((-1,)), lambda m, a: a.view(ember_dtype(m))])
def test_keyword_and_sequence_forms(fn):
    check(fn, [(3, 4)], grad=fn.__code__.co_names[-1] != "ember_dtype")


def ember_dtype(m):
    return m.int64


def test_expand_error_messages():
    with pytest.raises(RuntimeError, match=r"number of sizes provided \(1\)"):
        ember.zeros(2, 3).expand(3)


def _cplx(shape):
    rng = np.random.default_rng(0)
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def test_view_as_real_complex():
    check(lambda m, a: m.view_as_real(a) * 2, None, arrays=[_cplx((2, 3))])
    check(lambda m, a: m.view_as_complex(a) * (1 + 2j), [(3, 2)])
    check(lambda m, a: m.view_as_complex(a.transpose(0, 1)), [(2, 3, 2)])
    base = ember.zeros(2, dtype=ember.complex64)
    r = ember.view_as_real(base)
    r[1, 1] = 3.0
    assert base[1].item() == 3j and r._base is base
    with pytest.raises(RuntimeError):
        ember.view_as_complex(ember.zeros(3))


@pytest.mark.parametrize("fn", [
    lambda m, a: m.ravel(a.t()), lambda m, a: m.unsafe_chunk(a, 2), lambda m, a: m.unsafe_split(a, 1),
    lambda m, a: m.diagonal_copy(a), lambda m, a: m.expand_copy(a, (2, 3, 4)),
    lambda m, a: m.permute_copy(a, (1, 0)), lambda m, a: m.t_copy(a), lambda m, a: m.unbind_copy(a),
    lambda m, a: m.view_copy(a, (4, 3)), lambda m, a: m.transpose_copy(a, 0, 1),
    lambda m, a: m.split_copy(a, 2, 1), lambda m, a: m.squeeze_copy(a),
    lambda m, a: m.unsqueeze_copy(a, 1), lambda m, a: m.diagflat(a[0]),
    lambda m, a: m.narrow_copy(a, 1, 1, 2),
])
def test_view_copies(fn):
    check(fn, [(3, 4)])
    out = fn(ember, ember.zeros(3, 4))
    for o in (out if isinstance(out, tuple) else (out,)):
        if o.ndim and fn.__code__.co_names[-1] not in ("ravel", "unsafe_chunk", "unsafe_split"):
            assert o._base is None


def test_inplace_triangles_and_fill_diagonal():
    def run(m, a):
        out = a * 1
        out.tril_(-1)
        out2 = a * 2
        out2.triu_()
        out3 = a * 3
        out3.fill_diagonal_(0.5)
        out4 = (a * 1).swapaxes_(0, 1)
        return out, out2, out3, out4
    check(run, [(3, 4)])
    check(lambda m, a: (a * 1).fill_diagonal_(2.0, wrap=True), [(7, 3)])
    check(lambda m, a: (a * 1).fill_diagonal_(-1.0), [(3, 3, 3)])


def test_inplace_view_ops_keep_gradients():
    def run(m, a):
        y = a * 2
        y.t_()
        z = a * 3
        z.unsqueeze_(0).squeeze_(0).transpose_(0, 1)
        return y * z
    check(run, [(3, 4)])
    with pytest.raises(RuntimeError, match="leaf Variable"):
        ember.ones(2, 3, requires_grad=True).t_()
