"""Files move both ways between ember.save/load and torch.save/load."""

import io
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

PAIRS = [("float32", "float32"), ("float64", "float64"), ("float16", "float16"),
         ("bfloat16", "bfloat16"), ("int64", "int64"), ("int32", "int32"), ("int16", "int16"),
         ("int8", "int8"), ("uint8", "uint8"), ("bool", "bool"), ("complex64", "complex64"),
         ("complex128", "complex128")]


def _torch_sample(name):
    x = torch.arange(-3, 9, dtype=torch.float64).reshape(3, 4)
    if name == "bool":
        return x > 0
    if name.startswith("complex"):
        return torch.complex(x, -x).to(getattr(torch, name))
    return x.to(getattr(torch, name))


def _bits(t):
    """Raw bytes of a tensor's values in C order (bfloat16-safe, NaN-safe)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        return t.numpy().tobytes()
    return np.ascontiguousarray(t.detach().numpy()).tobytes()


def _assert_same(e, t):
    assert str(e.dtype).split(".")[1] == str(t.dtype).split(".")[1]
    assert tuple(e.shape) == tuple(t.shape)
    assert _bits(e) == _bits(t)


@pytest.mark.parametrize("e_name,t_name", PAIRS, ids=[p[0] for p in PAIRS])
def test_torch_file_loads_in_ember(e_name, t_name):
    t = _torch_sample(t_name)
    buf = io.BytesIO()
    torch.save({"x": t, "xt": t.t(), "row": t[1]}, buf)
    buf.seek(0)
    out = ember.load(buf)
    _assert_same(out["x"], t)
    _assert_same(out["xt"], t.t())
    _assert_same(out["row"], t[1])
    assert out["xt"].stride() == t.t().stride()


@pytest.mark.parametrize("e_name,t_name", PAIRS, ids=[p[0] for p in PAIRS])
def test_ember_file_loads_in_torch(e_name, t_name):
    e = ember.from_numpy(_torch_sample(t_name).view(torch.int16).numpy()).view(
        ember.bfloat16) if e_name == "bfloat16" else ember.from_numpy(
            _torch_sample(t_name).numpy())
    buf = io.BytesIO()
    ember.save({"x": e, "xt": e.t(), "row": e[1]}, buf)
    buf.seek(0)
    out = torch.load(buf, weights_only=True)
    _assert_same(e, out["x"])
    _assert_same(e.t(), out["xt"])
    _assert_same(e[1], out["row"])
    assert out["xt"].stride() == e.t().stride()
    # views saved once come back sharing memory in torch too
    assert out["x"].untyped_storage().data_ptr() == out["row"].untyped_storage().data_ptr()


def test_torch_views_share_memory_in_ember():
    t = torch.arange(10.0)
    buf = io.BytesIO()
    torch.save([t, t[2:6], t.view(2, 5).t()], buf)
    buf.seek(0)
    a, b, c = ember.load(buf)
    a[3] = -1.0
    assert b[1].item() == -1.0 and c[3, 0].item() == -1.0


def test_parameters_both_ways():
    from ember.nn import Parameter
    p = torch.nn.Parameter(torch.randn(3, 2))
    buf = io.BytesIO()
    torch.save(OrderedDict(w=p, frozen=torch.nn.Parameter(torch.ones(2), requires_grad=False)),
               buf)
    buf.seek(0)
    out = ember.load(buf)
    assert type(out) is OrderedDict
    assert isinstance(out["w"], Parameter) and out["w"].requires_grad
    assert isinstance(out["frozen"], Parameter) and not out["frozen"].requires_grad
    _assert_same(out["w"], p)

    buf = io.BytesIO()
    ember.save({"w": out["w"], "frozen": out["frozen"]}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert isinstance(back["w"], torch.nn.Parameter) and back["w"].requires_grad
    assert not back["frozen"].requires_grad
    assert torch.equal(back["w"], p)


def test_torch_module_optimizer_scheduler_state_dicts_load_in_ember():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
        sched.step()
    buf = io.BytesIO()
    ckpt = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
            "epoch": 2}
    torch.save(ckpt, buf)
    buf.seek(0)
    out = ember.load(buf)
    for k, v in ckpt["model"].items():
        _assert_same(out["model"][k], v)
    assert out["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert out["opt"]["param_groups"][0]["params"] == ckpt["opt"]["param_groups"][0]["params"]
    for i, st in ckpt["opt"]["state"].items():
        for k, v in st.items():
            _assert_same(out["opt"]["state"][i][k], v)
    assert out["sched"] == ckpt["sched"] and out["epoch"] == 2

    # ...and ember writes them back in a form torch's weights-only loader accepts
    buf = io.BytesIO()
    ember.save(out, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=True)
    model.load_state_dict(again["model"])
    opt.load_state_dict(again["opt"])
    sched.load_state_dict(again["sched"])


def test_ember_file_loads_in_torch_with_mmap(tmp_path):
    path = tmp_path / "e.pt"
    w = ember.randn(64, 8)
    ember.save({"w": w, "v": w[3:5]}, path)
    out = torch.load(path, mmap=True, weights_only=True)
    assert np.array_equal(out["w"].numpy(), w.numpy())
    assert np.array_equal(out["v"].numpy(), w[3:5].numpy())


def test_torch_file_loads_in_ember_with_mmap(tmp_path):
    path = tmp_path / "t.pt"
    w = torch.randn(64, 8)
    torch.save({"w": w, "v": w[3:5]}, path)
    out = ember.load(path, mmap=True)
    assert np.array_equal(out["w"].numpy(), w.numpy())
    assert np.array_equal(out["v"].numpy(), w[3:5].numpy())


def test_legacy_torch_format():
    t = torch.arange(6.0).reshape(2, 3)
    buf = io.BytesIO()
    torch.save({"t": t, "tt": t.t(), "c": torch.tensor([1 + 2j]).conj(),
                "i": torch.arange(3)}, buf, _use_new_zipfile_serialization=False)
    buf.seek(0)
    out = ember.load(buf)
    _assert_same(out["t"], t)
    _assert_same(out["tt"], t.t())
    _assert_same(out["i"], torch.arange(3))
    assert out["c"].tolist() == [1 - 2j]
    out["t"][0, 1] = 9.0
    assert out["tt"][1, 0].item() == 9.0


def test_torch_special_values_and_conj_bit():
    t = torch.tensor([float("nan"), float("inf"), -0.0, 1e-45])
    c = torch.tensor([1 + 1j, 2 - 3j]).conj()
    buf = io.BytesIO()
    torch.save([t, c, torch.tensor(7), torch.empty(0, 3)], buf)
    buf.seek(0)
    a, b, s, e = ember.load(buf)
    _assert_same(a, t)
    assert b.tolist() == [1 - 1j, 2 + 3j]
    assert s.item() == 7 and s.shape == () and e.shape == (0, 3)


def test_loading_does_not_import_torch(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.randn(3), "p": torch.nn.Parameter(torch.ones(2))}, path)
    code = (
        "import sys, ember\n"
        f"d = ember.load({str(path)!r})\n"
        "assert d['w'].shape == (3,) and d['p'].requires_grad\n"
        f"ember.save(d, {str(tmp_path / 'e.pt')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(tmp_path),
                   env={"PYTHONPATH": str(__import__("pathlib").Path(ember.__file__).parents[1])})
    assert torch.load(tmp_path / "e.pt", weights_only=True)["p"].requires_grad


def test_tensor_and_parameter_attributes_from_torch():
    t = torch.arange(3.0)
    t.note = "kept"
    p = torch.nn.Parameter(torch.ones(2))
    p.tag = 5
    buf = io.BytesIO()
    torch.save({"t": t, "p": p}, buf)
    buf.seek(0)
    out = ember.load(buf)
    assert out["t"].note == "kept" and out["t"].tolist() == [0.0, 1.0, 2.0]
    assert out["p"].tag == 5 and out["p"].requires_grad


def test_ember_objects_become_torch_objects():
    obj = {"dtype": ember.bfloat16, "device": ember.device("cpu"), "size": ember.Size([2, 3]),
           "layout": ember.strided, "bytes": b"\x00\x01", "set": {1, 2}, "c": 1 + 2j,
           "od": OrderedDict(a=1)}
    buf = io.BytesIO()
    ember.save(obj, buf)
    buf.seek(0)
    out = torch.load(buf, weights_only=True)
    assert out["dtype"] is torch.bfloat16 and out["device"] == torch.device("cpu")
    assert isinstance(out["size"], torch.Size) and out["size"] == (2, 3)
    assert out["layout"] is torch.strided
    assert out["bytes"] == b"\x00\x01" and out["set"] == {1, 2} and out["c"] == 1 + 2j
    assert type(out["od"]) is OrderedDict
    buf.seek(0)
    back = ember.load(buf)
    assert back["dtype"] is ember.bfloat16 and back["layout"] is ember.strided


def test_random_views_roundtrip_through_torch_and_ember():
    rng = np.random.default_rng(7)
    for _ in range(40):
        base = ember.arange(120.0).reshape(4, 5, 6)
        views = []
        for _ in range(rng.integers(1, 4)):
            idx = tuple(slice(int(rng.integers(0, n)), n, int(rng.integers(1, 3)))
                        for n in base.shape)
            v = base[idx]
            if rng.random() < 0.5:
                v = v.permute(*rng.permutation(3).tolist())
            views.append(v)
        buf = io.BytesIO()
        ember.save(views, buf)
        for loaded in (torch.load(io.BytesIO(buf.getvalue()), weights_only=True),
                       ember.load(io.BytesIO(buf.getvalue()))):
            for v, w in zip(views, loaded):
                if v.numel() > 1:  # ember reports contiguous strides for 1-element tensors
                    assert tuple(w.stride()) == v.stride()
                assert np.array_equal(np.asarray(w.numpy()), v.numpy())
