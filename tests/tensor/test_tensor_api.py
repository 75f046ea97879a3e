"""Tensor attributes, conversions, constructors and Python protocols, against PyTorch."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _pair(a, **kw):
    return ember.tensor(a, **kw), torch.tensor(a, **kw)


# ---------------------------------------------------------------- strides and layout
def _views(mod):
    base = mod.arange(24.0).reshape(2, 3, 4)
    return {
        "contiguous": base,
        "transposed": base.transpose(0, 2),
        "permuted": base.permute(1, 2, 0),
        "sliced": base[:, 1:, ::2],
        "select": base[1],
        "expanded": mod.ones(3, 1).expand(3, 4),
        "unsqueezed": base.unsqueeze(1),
        "scalar": mod.tensor(1.0),
        "size1": mod.ones(1, 3),
        "empty": mod.ones(0, 3),
        "T": base[0].T,
        "mT": base.mT,
        "step_slice": mod.arange(10.0)[::3],
    }


def test_stride_is_contiguous_shape():
    ev, tv = _views(ember), _views(torch)
    for k in tv:
        e, t = ev[k], tv[k]
        assert e.shape == t.shape, k
        assert e.stride() == t.stride(), k
        assert e.is_contiguous() == t.is_contiguous(), k
        if e.dim():
            assert e.stride(-1) == t.stride(-1) and e.size(0) == t.size(0), k
        c = e.contiguous()
        assert c.is_contiguous() and c.stride() == t.contiguous().stride(), k
        np.testing.assert_array_equal(c.numpy(), t.contiguous().numpy())


def test_basic_attributes():
    e, t = _pair([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert e.shape == t.shape == (2, 3) and isinstance(e.shape, ember.Size)
    assert repr(e.shape) == repr(t.shape).replace("torch.", "ember.")
    assert e.size() == t.size() and e.size(1) == t.size(1) == e.size(-1)
    assert e.dim() == e.ndim == t.ndim == 2
    assert e.numel() == t.numel() == ember.numel(e) == 6
    assert e.element_size() == t.element_size() and e.nbytes == t.nbytes
    assert e.itemsize == t.itemsize
    assert e.dtype == ember.float32 and e.device == ember.device("cpu")
    assert e.T.shape == t.T.shape and e.mT.shape == t.mT.shape
    assert e.is_leaf and not e.requires_grad and e.grad is None
    with pytest.raises(IndexError):
        e.size(2)


def test_clone_detach_requires_grad():
    e = ember.randn(3, requires_grad=True)
    c = e.clone()
    assert c.requires_grad and c.grad_fn.name() == "CloneBackward0"
    assert not np.shares_memory(c.numpy(force=True), e.numpy(force=True))
    d = e.detach()
    assert np.shares_memory(d.numpy(), e.detach().numpy()) and not d.requires_grad
    x = ember.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        ember.ones(2, dtype=ember.int64).requires_grad_()
    with pytest.raises(RuntimeError, match="only change requires_grad flags of leaf"):
        (e * 2).requires_grad_(False)


def test_item_tolist_scalars():
    e, t = _pair([[1.5, 2.0]])
    assert e.tolist() == t.tolist()
    assert ember.tensor(3).item() == 3 and isinstance(ember.tensor(3).item(), int)
    assert isinstance(ember.tensor(2.5).item(), float)
    assert isinstance(ember.tensor(True).item(), bool)
    assert ember.tensor([[7.0]]).item() == 7.0
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        e.item()
    one = ember.tensor([4.0])
    assert float(one) == 4.0 and int(one) == 4 and bool(one) is True
    assert complex(one) == 4 + 0j
    assert [10, 20, 30][ember.tensor(1)] == 20
    assert list(range(5))[ember.tensor(1):ember.tensor(3)] == [1, 2]
    with pytest.raises(TypeError):
        [1, 2][ember.tensor(1.0)]
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(ember.ones(2))
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        float(ember.ones(2))


def test_len_iter_hash():
    e = ember.arange(6).reshape(3, 2)
    t = torch.arange(6).reshape(3, 2)
    assert len(e) == len(t) == 3
    rows = list(e)
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    assert [r.tolist() for r in rows] == [r.tolist() for r in t]
    rows[0][0] = 100  # rows are views of the tensor
    assert e[0, 0].item() == 100
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(ember.tensor(1.0))
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(ember.tensor(1.0))
    a, b = ember.ones(2), ember.ones(2)
    assert hash(a) != hash(b) and len({a, b, a}) == 2
    d = {a: 1}
    assert d[a] == 1 and b not in d


def test_iteration_with_grad():
    x = ember.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    total = sum((r * (i + 1)).sum() for i, r in enumerate(x))
    total.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1], [2, 2]])


# ---------------------------------------------------------------- numpy, dlpack
def test_numpy_shares_memory_and_refuses_grad():
    e = ember.zeros(3)
    n = e.numpy()
    n[0] = 5
    assert e[0].item() == 5
    e.add_(1)
    assert n[0] == 6
    r = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        r.numpy()
    assert r.numpy(force=True).shape == (2,)
    f = ember.from_numpy(n)
    n[1] = 9
    assert f[1].item() == 9


def test_array_protocol():
    e = ember.tensor([1.0, 2.0])
    a = np.asarray(e)
    assert a.dtype == np.float32 and np.shares_memory(a, e.numpy())
    assert np.asarray(e, dtype=np.float64).dtype == np.float64
    assert np.array(e).tolist() == [1.0, 2.0]


def test_dlpack_exchange():
    e = ember.arange(4.0)
    n = np.from_dlpack(e)
    n[0] = 10
    assert e[0].item() == 10
    t = torch.from_dlpack(e)
    t[1] = 20
    assert e[1].item() == 20
    src = torch.arange(3.0)
    back = ember.from_dlpack(src)
    src[2] = 30
    assert back[2].item() == 30 and back.dtype == ember.float32
    arr = np.arange(3, dtype=np.int32)
    e2 = ember.from_dlpack(arr)
    arr[0] = 7
    assert e2[0].item() == 7 and e2.dtype == ember.int32
    assert e.__dlpack_device__() == (1, 0)


def test_data_ptr():
    e = ember.arange(6.0)
    assert e.data_ptr() == e[0:].data_ptr()
    assert e[1:].data_ptr() == e.data_ptr() + e.element_size()
    assert e.clone().data_ptr() != e.data_ptr()


# ---------------------------------------------------------------- dtype conversions
CASTS = ["float", "double", "half", "bfloat16", "int", "long", "bool", "short", "char", "byte"]


@pytest.mark.parametrize("name", CASTS)
def test_casts(name):
    e, t = _pair([1.7, -2.0, 0.0])
    ce, ct = getattr(e, name)(), getattr(t, name)()
    assert str(ce.dtype).replace("ember.", "") == str(ct.dtype).replace("torch.", "")
    np.testing.assert_array_equal(ce.float().numpy(), ct.float().numpy())


def test_to_variants():
    e = ember.tensor([1.5, 2.5])
    assert e.to(ember.float32) is e
    assert e.to("cpu") is e and e.to(ember.device("cpu")) is e
    assert e.to("cpu", ember.float64).dtype == ember.float64
    assert e.to(device="cpu", dtype=ember.int32).dtype == ember.int32
    assert e.to(ember.ones(1, dtype=ember.float64)).dtype == ember.float64
    c = e.to(ember.float32, copy=True)
    assert c is not e and not np.shares_memory(c.numpy(), e.numpy())
    assert e.to("cpu", non_blocking=True) is e
    assert e.cpu() is e
    assert e.type_as(ember.ones(1, dtype=ember.int64)).dtype == ember.int64
    assert e.type() == "torch.FloatTensor"
    assert e.type(ember.float64).dtype == ember.float64
    assert e.type("torch.LongTensor").dtype == ember.int64
    assert e.type(ember.DoubleTensor).dtype == ember.float64
    x = ember.ones(2, requires_grad=True)
    y = x.to(ember.float64)
    assert y.grad_fn is not None
    y.sum().backward()
    assert x.grad.dtype == ember.float32


def test_floating_complex_predicates():
    assert ember.is_floating_point(ember.ones(1))
    assert not ember.is_floating_point(ember.ones(1, dtype=ember.int64))
    assert ember.ones(1, dtype=ember.bfloat16).is_floating_point()
    assert ember.is_complex(ember.ones(1, dtype=ember.complex64))
    assert not ember.ones(1).is_complex()
    assert ember.is_tensor(ember.ones(1)) and not ember.is_tensor(np.ones(1))


# ---------------------------------------------------------------- devices
def test_device_objects():
    for spec in (("cpu",), ("cpu:0",), ("cpu", 0)):
        e, t = ember.device(*spec), torch.device(*spec)
        assert (e.type, e.index) == (t.type, t.index)
        assert str(e) == str(t) and repr(e) == repr(t)
    assert ember.device("cpu") == "cpu"
    assert ember.device("cuda:1").index == 1
    assert ember.device(ember.device("cpu")) == ember.device("cpu")
    with pytest.raises(RuntimeError):
        ember.device("gpu")
    assert ember.ones(1).device.type == "cpu"
    assert ember.ones(1, device="cpu").device == ember.device("cpu")


def test_no_gpu_answers():
    e = ember.ones(2)
    assert e.is_cuda is False and e.get_device() == -1
    with pytest.raises(RuntimeError, match="cuda"):
        e.cuda()
    with pytest.raises(RuntimeError, match="cuda"):
        e.to("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        ember.ones(2, device="cuda")
    assert ember.cuda.is_available() is False and ember.cuda.device_count() == 0
    assert ember.backends.mps.is_available() is False
    assert ember.accelerator.is_available() is False
    assert ember.accelerator.current_accelerator() is None
    assert isinstance(ember.backends.cudnn.enabled, bool)
    ember.backends.cudnn.benchmark = True
    ember.backends.cudnn.deterministic = True
    assert ember.backends.cudnn.benchmark is True
    ember.backends.cudnn.benchmark = False
    ember.backends.cudnn.deterministic = False
    assert ember.backends.cudnn.is_available() is False


# ---------------------------------------------------------------- constructors
def test_legacy_constructors():
    assert ember.Tensor(2, 3).shape == (2, 3) and ember.Tensor(2, 3).dtype == ember.float32
    t = ember.Tensor([1, 2])
    assert t.dtype == ember.float32 and t.tolist() == [1.0, 2.0]
    assert ember.Tensor().shape == (0,)
    assert ember.Tensor(ember.Size([2])).shape == (2,)
    for name, dt in (("FloatTensor", "float32"), ("DoubleTensor", "float64"),
                     ("LongTensor", "int64"), ("IntTensor", "int32"), ("BoolTensor", "bool"),
                     ("ByteTensor", "uint8")):
        e, t = getattr(ember, name)([1, 0]), getattr(torch, name)([1, 0])
        assert str(e.dtype) == "ember." + dt and e.tolist() == t.tolist()
        assert getattr(ember, name)(2, 3).shape == (2, 3)
    v = ember.autograd.Variable(ember.ones(2), requires_grad=True)
    assert v.requires_grad and v.is_leaf
    assert isinstance(ember.ones(1), ember.Tensor)


def test_new_factories():
    e = ember.ones(2, dtype=ember.float64)
    t = torch.ones(2, dtype=torch.float64)
    for name, args in (("new_zeros", (2, 3)), ("new_ones", ((3,),)), ("new_empty", (4,)),
                       ("new_full", ((2,), 7.0)), ("new_tensor", ([1, 2],))):
        ne, nt = getattr(e, name)(*args), getattr(t, name)(*args)
        assert ne.shape == nt.shape and str(ne.dtype)[6:] == str(nt.dtype)[6:], name
        if name != "new_empty":
            np.testing.assert_array_equal(ne.numpy(), nt.numpy())
    assert e.new_zeros(2, dtype=ember.int32).dtype == ember.int32
    assert e.new_ones(2, requires_grad=True).requires_grad
    assert e.new_tensor([1, 2], dtype=ember.int64).dtype == ember.int64
    src = ember.ones(2)
    nt = e.new_tensor(src)
    assert not np.shares_memory(nt.numpy(), src.numpy())


def test_dtype_suffix_defaults():
    assert ember.tensor([1, 2]).dtype == ember.int64
    assert ember.tensor([1.0]).dtype == ember.float32
    assert ember.tensor([True]).dtype == ember.bool
    assert ember.tensor([1j]).dtype == ember.complex64
    assert ember.tensor(np.array([1.0])).dtype == ember.float64


def test_legacy_types_isinstance():
    assert isinstance(ember.ones(1), ember.FloatTensor)
    assert not isinstance(ember.ones(1), ember.DoubleTensor)
    assert isinstance(ember.ones(1, dtype=ember.int64), ember.LongTensor)
    assert ember.FloatTensor.dtype == ember.float32
    assert ember.FloatTensor().shape == (0,)


def test_storage_offset_dim_order_and_misc():
    for k in ("contiguous", "sliced", "select", "transposed", "step_slice"):
        e, t = _views(ember)[k], _views(torch)[k]
        assert e.storage_offset() == t.storage_offset(), k
        assert e.dim_order() == t.dim_order(), k
    e = ember.tensor([1.0, 2.0, 3.0])
    assert list(reversed(e)) == [3.0, 2.0, 1.0] or [v.item() for v in reversed(e)] == [3, 2, 1]
    assert 2 in e and 5 not in e
    assert e.new(2, 3).shape == (2, 3) and e.new([1, 2]).dtype == ember.float32
    assert e.ravel().shape == (3,) and not e.is_inference()


def test_cuda_amp_without_gpu_is_a_no_op():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ctx = ember.cuda.amp.autocast()
    with ctx:
        y = ember.ones(2) * 2
    assert y.dtype == ember.float32
    with pytest.warns(UserWarning, match="Disabling"):
        scaler = ember.cuda.amp.GradScaler()
    x = ember.ones(2, requires_grad=True)
    loss = (x * 3).sum()
    assert scaler.scale(loss) is loss and not scaler.is_enabled()
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    with ember.backends.cudnn.flags(enabled=False, deterministic=True):
        assert ember.backends.cudnn.deterministic is True
    assert ember.backends.cudnn.deterministic is False


def test_dlpack_refuses_requires_grad():
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="Can't export tensors that require gradient"):
        np.from_dlpack(x)
    assert np.from_dlpack(x.detach()).shape == (2,)


def test_array_protocol_refuses_requires_grad():
    with pytest.raises(RuntimeError, match="requires grad"):
        np.asarray(ember.ones(2, requires_grad=True))
    e = ember.ones(2)
    assert not np.shares_memory(np.array(e, copy=True), e.numpy())
