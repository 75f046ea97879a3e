"""The pieces of PyTorch that the ecosystem libraries needed (issue 23), each against PyTorch:
``utils._pytree``, ``library.custom_op``, ``nn.attention.flex_attention``, ``nn.utils.prune``,
``utils.flop_counter``, ``PyTorchFileReader``, ``vision.io``, and two fixes (writing through
a non-repeating ``expand`` view; reassigning a buffer keeps its place)."""

from collections import OrderedDict, namedtuple

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _t(a, dtype=np.float32, grad=False):
    a = np.asarray(a, dtype=dtype)
    return (ember.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad))


# ---------------------------------------------------------------------- _pytree
def test_pytree_flatten_unflatten_and_map_match_torch():
    from torch.utils import _pytree as tp

    from ember.utils import _pytree as ep
    Point = namedtuple("Point", "x y")
    tree = {"a": [1, (2, 3)], "b": OrderedDict(c=None, d=Point(4, 5)), "e": 6.5}
    leaves, spec = ep.tree_flatten(tree)
    tleaves, tspec = tp.tree_flatten(tree)
    assert leaves == tleaves and spec.num_leaves == tspec.num_leaves
    assert ep.tree_unflatten(leaves, spec) == tree
    def double(v):
        return None if v is None else v * 2
    assert ep.tree_map(double, tree) == tp.tree_map(double, tree)
    assert ep.tree_structure(tree) == spec and ep.tree_leaves([]) == []
    paths = [ep.keystr(p) for p, _ in ep.tree_flatten_with_path(tree)[0]]
    tpaths = [tp.keystr(p) for p, _ in tp.tree_flatten_with_path(tree)[0]]
    assert paths == tpaths
    with pytest.raises(ValueError):
        ep.tree_unflatten([1, 2], spec)


def test_pytree_register_node():
    from ember.utils import _pytree as ep

    class Box:
        def __init__(self, a, b):
            self.a, self.b = a, b

    ep.register_pytree_node(Box, lambda x: ([x.a, x.b], None), lambda xs, _: Box(*xs))
    leaves, spec = ep.tree_flatten([Box(1, [2, 3])])
    assert leaves == [1, 2, 3]
    back = ep.tree_unflatten([7, 8, 9], spec)
    assert back[0].a == 7 and back[0].b == [8, 9]
    with pytest.raises(ValueError):
        ep.register_pytree_node(Box, lambda x: ([], None), lambda xs, _: Box(0, 0))


# ---------------------------------------------------------------------- library
def test_custom_op_with_autograd_and_ops_namespace():
    from ember import library

    @library.custom_op("ember_test::cube", mutates_args=())
    def cube(x):
        return ember.from_numpy(x.numpy() ** 3)  # an opaque kernel: no graph of its own

    def setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g

    library.register_autograd("ember_test::cube", backward, setup_context=setup)
    library.register_fake("ember_test::cube", lambda x: ember.empty_like(x))
    for dt in (np.float32, np.float64):
        x, tx = _t([0.5, -1.0, 2.0], dt, grad=True)
        y = ember.ops.ember_test.cube(x)
        y.sum().backward()
        (tx ** 3).sum().backward()
        np.testing.assert_allclose(y.detach().numpy(), (tx ** 3).detach().numpy())
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())
    with pytest.raises(ValueError):
        library.custom_op("no_namespace", lambda x: x, mutates_args=())
    with pytest.raises(ValueError):
        library.custom_op("shape::f", lambda x: x, mutates_args=())  # ember's own family


# ---------------------------------------------------------------------- flex_attention
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flex_attention_matches_torch(dtype):
    from torch.nn.attention import flex_attention as tfa

    from ember.nn.attention import flex_attention as efa
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4, 6, 8)).astype(dtype) for _ in range(3))
    kv2 = [rng.standard_normal((2, 2, 6, 8)).astype(dtype) for _ in range(2)]

    def causal(b, h, qi, ki):
        return qi >= ki

    def bias(score, b, h, qi, ki):
        return score + (qi - ki) * 0.1 + h

    tol = 1e-5 if dtype == np.float32 else 1e-10
    for gqa in (False, True):
        kk, vv = (kv2 if gqa else (k, v))
        eq, ek, ev = (ember.tensor(a, requires_grad=True) for a in (q, kk, vv))
        tq, tk, tv = (torch.tensor(a) for a in (q, kk, vv))
        emask = efa.create_block_mask(causal, None, None, 6, 6)
        tmask = tfa.create_block_mask(causal, None, None, 6, 6, device="cpu")
        eo, else_ = efa.flex_attention(eq, ek, ev, score_mod=bias, block_mask=emask,
                                       enable_gqa=gqa, return_lse=True)
        to, tlse = tfa.flex_attention(tq, tk, tv, score_mod=bias, block_mask=tmask,
                                      enable_gqa=gqa, return_lse=True)
        np.testing.assert_allclose(eo.detach().numpy(), to.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(else_.detach().numpy(), tlse.numpy(), rtol=tol, atol=tol)
        # PyTorch has no flex_attention backward on CPU: gradients against the same math
        # written with PyTorch's plain ops
        rq, rk, rv = (torch.tensor(a, requires_grad=True) for a in (q, kk, vv))
        rep = 2 if gqa else 1
        s_ = rq @ rk.repeat_interleave(rep, 1).transpose(-2, -1) / np.sqrt(8)
        qi, ki = torch.arange(6).view(6, 1), torch.arange(6).view(1, 6)
        s_ = s_ + (qi - ki) * 0.1 + torch.arange(4).view(1, 4, 1, 1)
        s_ = s_.masked_fill(~(qi >= ki), float("-inf"))
        ro = s_.softmax(-1) @ rv.repeat_interleave(rep, 1)
        np.testing.assert_allclose(eo.detach().numpy(), ro.detach().numpy(), rtol=1e-4,
                                   atol=1e-5)
        (eo * eo).sum().backward()
        (ro * ro).sum().backward()
        for e, r in ((eq, rq), (ek, rk), (ev, rv)):
            np.testing.assert_allclose(e.grad.numpy(), r.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(emask.to_dense().numpy(), tmask.to_dense().numpy())
    big_e = efa.create_block_mask(causal, 1, 1, 256, 256, BLOCK_SIZE=128)
    big_t = tfa.create_block_mask(causal, 1, 1, 256, 256, device="cpu", BLOCK_SIZE=128)
    np.testing.assert_array_equal(big_e.to_dense().numpy(), big_t.to_dense().numpy())
    assert big_e.sparsity() == pytest.approx(big_t.sparsity())


# ---------------------------------------------------------------------- prune
def _pair_linear(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, 5)).astype(np.float32)
    el, tl = ember.nn.Linear(5, 6), torch.nn.Linear(5, 6)
    b = rng.standard_normal(6).astype(np.float32)
    with ember.no_grad():
        el.weight.copy_(ember.tensor(w))
        el.bias.copy_(ember.tensor(b))
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(w))
        tl.bias.copy_(torch.tensor(b))
    return el, tl


def test_prune_l1_ln_iterative_global_and_remove_match_torch():
    from torch.nn.utils import prune as tprune

    from ember.nn.utils import prune as eprune
    el, tl = _pair_linear()
    eprune.l1_unstructured(el, "weight", amount=0.3)
    tprune.l1_unstructured(tl, "weight", amount=0.3)
    eprune.ln_structured(el, "weight", amount=2, n=2, dim=0)
    tprune.ln_structured(tl, "weight", amount=2, n=2, dim=0)
    eprune.l1_unstructured(el, "weight", amount=3)  # of the entries still unpruned
    tprune.l1_unstructured(tl, "weight", amount=3)
    np.testing.assert_array_equal(el.weight_mask.numpy(), tl.weight_mask.numpy())
    np.testing.assert_array_equal(el.weight.detach().numpy(), tl.weight.detach().numpy())
    assert sorted(n for n, _ in el.named_parameters()) == ["bias", "weight_orig"]
    assert eprune.is_pruned(el)
    x = np.ones((2, 5), np.float32)
    np.testing.assert_allclose(el(ember.tensor(x)).detach().numpy(),
                               tl(torch.tensor(x)).detach().numpy(), rtol=1e-6)
    eprune.remove(el, "weight")
    tprune.remove(tl, "weight")
    assert sorted(n for n, _ in el.named_parameters()) == ["bias", "weight"]
    np.testing.assert_array_equal(el.weight.detach().numpy(), tl.weight.detach().numpy())
    assert not eprune.is_pruned(el)

    (ea, ta), (eb, tb) = _pair_linear(1), _pair_linear(2)
    eprune.global_unstructured([(ea, "weight"), (eb, "weight")], eprune.L1Unstructured,
                               amount=0.5)
    tprune.global_unstructured([(ta, "weight"), (tb, "weight")], tprune.L1Unstructured,
                               amount=0.5)
    for e, t in ((ea, ta), (eb, tb)):
        np.testing.assert_array_equal(e.weight_mask.numpy(), t.weight_mask.numpy())
    with pytest.raises(ValueError):
        eprune.l1_unstructured(ember.nn.Linear(2, 2), "weight", amount=5)
    with pytest.raises(ValueError):
        eprune.remove(ember.nn.Linear(2, 2), "weight")


# ---------------------------------------------------------------------- flop counter
def test_flop_counter_matches_torch():
    from torch.utils.flop_counter import FlopCounterMode as TF

    from ember.utils.flop_counter import FlopCounterMode as EF

    def build(nn):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    em, tm = build(ember.nn), build(torch.nn)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with EF(display=False) as ef:
        em(ember.tensor(x))
    with TF(display=False) as tf:
        tm(torch.tensor(x))
    assert ef.get_total_flops() == tf.get_total_flops() > 0
    # backward: the convolution's weight gradient is counted as PyTorch counts it (the
    # linear layer's backward runs as array kernels the mode does not see)
    with EF(display=False) as efb:
        em(ember.tensor(x)).sum().backward()
    conv_w_grad = 2 * (2 * 4 * 6 * 6) * (3 * 3 * 3)
    assert efb.get_total_flops() == ef.get_total_flops() + conv_w_grad
    counts = ef.get_flop_counts()
    assert sum(counts["Sequential"].values()) == ef.get_total_flops()
    with EF(display=False) as ef2:
        ember.randn(3, 4) @ ember.randn(4, 5)
    assert ef2.get_total_flops() == 2 * 3 * 4 * 5


# ---------------------------------------------------------------------- files
def test_pytorch_file_reader_reads_torch_save(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.arange(6, dtype=torch.float32)}, path)
    r = ember.PyTorchFileReader(str(path))
    assert "data.pkl" in r.get_all_records() and r.has_record("data.pkl")
    raw = r.get_record("data/0")
    np.testing.assert_array_equal(np.frombuffer(raw, np.float32), np.arange(6))
    with pytest.raises(RuntimeError):
        r.get_record("missing")
    w = ember.PyTorchFileWriter(str(tmp_path / "w.zip"))
    w.write_record("data.pkl", b"abc", 3)
    w.write_end_of_file()
    assert ember.PyTorchFileReader(str(tmp_path / "w.zip")).get_record("data.pkl") == b"abc"


def test_vision_io_png_round_trip(tmp_path):
    pytest.importorskip("PIL")
    from ember.vision import io
    img = ember.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 5, 7), np.uint8))
    io.write_png(img, str(tmp_path / "a.png"))
    back = io.read_image(str(tmp_path / "a.png"))
    assert back.dtype == ember.uint8 and tuple(back.shape) == (3, 5, 7)
    np.testing.assert_array_equal(back.numpy(), img.numpy())
    gray = io.read_image(str(tmp_path / "a.png"), io.ImageReadMode.GRAY)
    assert tuple(gray.shape) == (1, 5, 7)
    with pytest.raises(ValueError):
        io.encode_png(img.float())


# ---------------------------------------------------------------------- fixes
def test_write_through_expand_without_repeats_like_torch():
    e = ember.arange(4).expand(1, -1)
    t = torch.arange(4).expand(1, -1)
    e.copy_(ember.tensor([[9, 8, 7, 6]]))
    t.copy_(torch.tensor([[9, 8, 7, 6]]))
    np.testing.assert_array_equal(e.numpy(), t.numpy())


def test_reassigning_a_buffer_keeps_its_position():
    m = ember.nn.Module()
    m.register_buffer("a", ember.zeros(1))
    m.register_buffer("b", ember.zeros(1), persistent=False)
    for name, buf in m.named_buffers():
        setattr(m, name, buf + 1)  # PyTorch allows this while iterating
    assert list(m._buffers) == ["a", "b"] and "b" in m._non_persistent_buffers_set
    assert m.a.item() == 1 and m.b.item() == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_tbc_matches_torch(dtype):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((7, 2, 3), (3, 3, 4), (4,)))
    ex, ew, eb = (ember.tensor(a, requires_grad=True) for a in (x, w, b))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    eo = ember.nn.functional.conv_tbc(ex, ew, eb, 1)
    to = torch.conv_tbc(tx, tw, tb, 1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=tol, atol=tol)
    (eo ** 2).sum().backward()
    (to ** 2).sum().backward()
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=tol, atol=tol)
    assert ember.conv_tbc is ember.nn.functional.conv_tbc
    with pytest.raises(RuntimeError):
        ember.nn.functional.conv_tbc(ex, ember.zeros(3, 5, 4), eb)


def test_functional_helpers_like_torch():
    import torch.nn.functional as TF

    import ember.nn.functional as EF
    assert EF.GRID_SAMPLE_INTERPOLATION_MODES == TF.GRID_SAMPLE_INTERPOLATION_MODES
    assert EF.GRID_SAMPLE_PADDING_MODES == TF.GRID_SAMPLE_PADDING_MODES
    assert set(EF.reproducibility_notes) == set(TF.reproducibility_notes)
    for mod in (EF, TF):
        f = mod.boolean_dispatch("flag", 1, False, lambda a, flag=False: ("t", a),
                                 lambda a, flag=False: ("f", a), None, "f")
        assert f(1) == ("f", 1) and f(1, True) == ("t", 1) and f(1, flag=True) == ("t", 1)
        mod.assert_int_or_pair(3, "k", "{} bad")
        with pytest.raises(AssertionError, match="k bad"):
            mod.assert_int_or_pair([1, 2, 3], "k", "{} bad")
