"""Recurrent layers, cells and sequence packing against PyTorch (copied weights)."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _copy(tm, em):
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


def _cmp(a, b, tol=1e-10):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=tol, rtol=tol)


CONFIGS = [
    ("LSTM", dict()), ("LSTM", dict(num_layers=3)), ("LSTM", dict(bidirectional=True)),
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(proj_size=3)), ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True)),
    ("LSTM", dict(bias=False)), ("GRU", dict()), ("GRU", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(batch_first=True, bias=False)), ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
    ("LSTM", dict(num_layers=2, dropout=0.0)),
]


@pytest.mark.parametrize("mode,kw", CONFIGS)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("input_grad", [True, False])
def test_layer_parity(mode, kw, with_state, input_grad):
    torch.manual_seed(0)
    tm = getattr(torch.nn, mode)(4, 5, **kw).double()
    em = getattr(ember.nn, mode)(4, 5, dtype=ember.float64, **kw)
    _copy(tm, em)
    rng = np.random.default_rng(0)
    bf = kw.get("batch_first", False)
    x = rng.standard_normal((3, 7, 4) if bf else (7, 3, 4))
    dirs = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1) * dirs
    hsz = kw.get("proj_size", 0) or 5
    h0 = rng.standard_normal((L, 3, hsz))
    c0 = rng.standard_normal((L, 3, 5))
    outs = []
    for m, mod in ((torch, tm), (ember, em)):
        xs = m.tensor(x, requires_grad=input_grad)  # without: the fused op skips that GEMM
        hx = None
        if with_state:
            h = m.tensor(h0, requires_grad=True)
            hx = (h, m.tensor(c0, requires_grad=True)) if mode == "LSTM" else h
        out, hn = mod(xs, hx)
        hn_t = hn[0] if mode == "LSTM" else hn
        loss = (out * out).sum() + hn_t.sum() + (hn[1].sum() if mode == "LSTM" else 0)
        loss.backward()
        outs.append((out, hn, xs, hx, mod))
    (ot, ht, xt, hxt, _), (oe, he, xe, hxe, _) = outs
    _cmp(ot, oe)
    if mode == "LSTM":
        _cmp(ht[0], he[0])
        _cmp(ht[1], he[1])
    else:
        _cmp(ht, he)
    if input_grad:
        _cmp(xt.grad, xe.grad)
    else:
        assert xe.grad is None
    if with_state:
        pairs = zip(hxt, hxe) if mode == "LSTM" else [(hxt, hxe)]
        for a, b in pairs:
            _cmp(a.grad, b.grad)
    ep = dict(em.named_parameters())
    for n, p in tm.named_parameters():
        _cmp(p.grad, ep[n].grad)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_input(mode, bidirectional):
    torch.manual_seed(0)
    tm = getattr(torch.nn, mode)(4, 5, bidirectional=bidirectional).double()
    em = getattr(ember.nn, mode)(4, 5, bidirectional=bidirectional, dtype=ember.float64)
    _copy(tm, em)
    x = np.random.default_rng(1).standard_normal((6, 3, 4))
    lens = [4, 6, 2]
    res = []
    for m, mod in ((torch, tm), (ember, em)):
        xs = m.tensor(x, requires_grad=True)
        packed = m.nn.utils.rnn.pack_padded_sequence(xs, lens, enforce_sorted=False)
        out, hn = mod(packed)
        hn_t = hn[0] if mode == "LSTM" else hn
        padded, out_lens = m.nn.utils.rnn.pad_packed_sequence(out, total_length=6)
        ((padded ** 2).sum() + hn_t.sum()).backward()
        res.append((padded, out_lens, hn_t, xs))
    for a, b in zip(res[0], res[1]):
        _cmp(a if not a.requires_grad else a, b)
    _cmp(res[0][3].grad, res[1][3].grad)


@pytest.mark.parametrize("cell,n", [("RNNCell", 1), ("LSTMCell", 2), ("GRUCell", 1)])
def test_cells(cell, n):
    torch.manual_seed(0)
    tm = getattr(torch.nn, cell)(4, 5).double()
    em = getattr(ember.nn, cell)(4, 5, dtype=ember.float64)
    _copy(tm, em)
    x = np.random.default_rng(2).standard_normal((3, 4))
    h = np.random.default_rng(3).standard_normal((3, 5))
    res = []
    for m, mod in ((torch, tm), (ember, em)):
        xs = m.tensor(x, requires_grad=True)
        hs = m.tensor(h)
        out = mod(xs, (hs, hs) if n == 2 else hs)
        o = out[0] if n == 2 else out
        (o ** 2).sum().backward()
        res.append((o, xs))
        res.append(mod(xs[0]))  # unbatched
    _cmp(res[0][0], res[2][0])
    _cmp(res[0][1].grad, res[2][1].grad)
    u_t = res[1][0] if n == 2 else res[1]
    u_e = res[3][0] if n == 2 else res[3]
    _cmp(u_t, u_e)


def test_parameter_names_shapes_and_repr():
    for mode, kw in [("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)),
                     ("GRU", dict(batch_first=True, dropout=0.5, num_layers=2)),
                     ("RNN", dict(nonlinearity="relu", bias=False))]:
        tm = getattr(torch.nn, mode)(3, 4, **kw)
        em = getattr(ember.nn, mode)(3, 4, **kw)
        assert [(n, tuple(p.shape)) for n, p in tm.named_parameters()] == \
            [(n, tuple(p.shape)) for n, p in em.named_parameters()]
        assert repr(tm) == repr(em)


def test_default_init_range():
    em = ember.nn.LSTM(8, 16)
    for p in em.parameters():
        a = p.detach().numpy()
        assert np.abs(a).max() <= 0.25 and a.std() > 0.1


def test_unbatched_input():
    tm = torch.nn.GRU(4, 5).double()
    em = ember.nn.GRU(4, 5, dtype=ember.float64)
    _copy(tm, em)
    x = np.random.default_rng(4).standard_normal((7, 4))
    ot, ht = tm(torch.tensor(x))
    oe, he = em(ember.tensor(x))
    _cmp(ot, oe)
    _cmp(ht, he)


def test_long_sequence_backward_no_recursion():
    lstm = ember.nn.LSTM(2, 4)
    x = ember.randn(1000, 1, 2, requires_grad=True)
    out, _ = lstm(x)
    out.sum().backward()
    assert x.grad.shape == (1000, 1, 2)
    cell = ember.nn.LSTMCell(2, 4)  # the composed path: 1000 steps through the engine
    h = c = ember.zeros(1, 4)
    for t in range(1000):
        h, c = cell(x[t], (h, c))
    h.sum().backward()
    assert cell.weight_ih.grad is not None


def test_bad_input_errors():
    lstm = ember.nn.LSTM(4, 5)
    with pytest.raises(RuntimeError, match="input_size"):
        lstm(ember.randn(3, 2, 6))
    with pytest.raises(RuntimeError, match="hidden size"):
        lstm(ember.randn(3, 2, 4), (ember.zeros(1, 3, 5), ember.zeros(1, 3, 5)))
    with pytest.raises(ValueError):
        ember.nn.LSTM(4, 5, proj_size=5)
    with pytest.raises(ValueError):
        ember.nn.GRU(4, 5, proj_size=2)


def test_pad_pack_utilities():
    seqs_np = [np.arange(n * 2, dtype=np.float64).reshape(n, 2) for n in (3, 5, 1)]
    for bf in (False, True):
        for side in ("right", "left"):
            pt = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs_np], batch_first=bf,
                                                 padding_value=-1.0, padding_side=side)
            pe = ember.nn.utils.rnn.pad_sequence([ember.tensor(s) for s in seqs_np], batch_first=bf,
                                                 padding_value=-1.0, padding_side=side)
            _cmp(pt, pe)
    pt = torch.nn.utils.rnn.pack_sequence([torch.tensor(s) for s in seqs_np], enforce_sorted=False)
    pe = ember.nn.utils.rnn.pack_sequence([ember.tensor(s) for s in seqs_np], enforce_sorted=False)
    _cmp(pt.data, pe.data)
    np.testing.assert_array_equal(pt.batch_sizes.numpy(), pe.batch_sizes.numpy())
    np.testing.assert_array_equal(pt.sorted_indices.numpy(), pe.sorted_indices.numpy())
    for a, b in zip(torch.nn.utils.rnn.unpack_sequence(pt), ember.nn.utils.rnn.unpack_sequence(pe)):
        _cmp(a, b)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        ember.nn.utils.rnn.pack_padded_sequence(ember.zeros(5, 2, 1), [2, 5])


# ---------------------------------------------------------------------- batch rows on threads
def _run_layer(mode, kw, dtype, x, lens, h0, c0):
    """Output, final states and every gradient of one ember layer (copied weights)."""
    torch.manual_seed(0)
    tm = getattr(torch.nn, mode)(6, 5, **kw).to(getattr(torch, dtype))
    em = getattr(ember.nn, mode)(6, 5, dtype=getattr(ember, dtype), **kw)
    _copy(tm, em)
    res = []
    for m, mod in ((torch, tm), (ember, em)):
        xs = m.tensor(x, requires_grad=True)
        h = m.tensor(h0, requires_grad=True)
        hx = (h, m.tensor(c0, requires_grad=True)) if mode == "LSTM" else h
        inp = xs if lens is None else m.nn.utils.rnn.pack_padded_sequence(
            xs, lens, enforce_sorted=False)
        out, hn = mod(inp, hx)
        if lens is not None:
            out = m.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])[0]
        hs = list(hn) if mode == "LSTM" else [hn]
        (out * out).sum().backward(retain_graph=True)
        sum(t.sum() for t in hs).backward()
        grads = [xs.grad] + [t.grad for t in (hx if mode == "LSTM" else [hx])] + \
            [p.grad for _, p in mod.named_parameters()]
        res.append([a.detach().numpy() for a in [out] + hs + grads])
    return res


@pytest.mark.parametrize("mode,kw", [
    ("LSTM", dict()), ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=3)), ("GRU", dict(bidirectional=True)), ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu"))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("packed", [False, True])
def test_layers_split_by_batch_rows_agree_with_torch_and_one_thread(mode, kw, dtype, packed,
                                                                    monkeypatch):
    """With the split forced on small shapes, the time loops run as blocks of batch rows on
    2 and 3 threads: PyTorch's values and gradients, and one thread's to rounding (OpenBLAS
    rounds a product's rows differently with the row count: a 1-row block is a GEMV)."""
    from ember.ops import rnn as R
    monkeypatch.setattr(R, "_ROWS_SPLIT_MIN", 1)
    monkeypatch.setattr(R, "_ROWS_MIN", 1)
    monkeypatch.setattr(ember._parallel, "GEMM_SPLIT_MIN", 1)
    rng = np.random.default_rng(3)
    n = 7  # odd: uneven blocks
    dirs = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1) * dirs
    x = rng.standard_normal((9, n, 6)).astype(dtype)
    h0 = rng.standard_normal((L, n, kw.get("proj_size", 0) or 5)).astype(dtype)
    c0 = rng.standard_normal((L, n, 5)).astype(dtype)
    lens = [9, 4, 7, 1, 9, 2, 5] if packed else None
    before = ember.get_num_threads()
    try:
        got = {}
        for th in (1, 2, 3):
            ember.set_num_threads(th)
            want, got[th] = _run_layer(mode, kw, dtype, x, lens, h0, c0)
    finally:
        ember.set_num_threads(before)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for a, b in zip(want, got[1]):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    close = 1e-6 if dtype == "float32" else 1e-13
    for th in (2, 3):
        for a, b in zip(got[1], got[th]):
            np.testing.assert_allclose(b, a, rtol=close, atol=close)


def test_empty_batch():
    for mode in ("LSTM", "GRU", "RNN"):
        m = getattr(ember.nn, mode)(4, 5)
        x = ember.zeros((5, 0, 4), requires_grad=True)
        out, _ = m(x)
        assert tuple(out.shape) == (5, 0, 5)
        out.sum().backward()
        assert tuple(x.grad.shape) == (5, 0, 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_lstm_backward_c_step_equals_numpy_loop(dtype, threads, monkeypatch):
    """The C step of the LSTM backward (ember/ops/_nn_c.py) does the NumPy loop's
    operations in the same order: the same bits, at 1 and 2 threads (rows split)."""
    from ember.ops import _nn_c
    from ember.ops import rnn as R
    if _nn_c.lstm_bwd_kernel(np.float32) is None:
        pytest.skip("no C compiler: the NumPy loop is the only path")
    monkeypatch.setattr(R, "_ROWS_SPLIT_MIN", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((11, 9, 6)).astype(dtype)
    h0 = rng.standard_normal((2, 9, 5)).astype(dtype)
    c0 = rng.standard_normal((2, 9, 5)).astype(dtype)
    kw = dict(num_layers=2)
    before = ember.get_num_threads()
    try:
        ember.set_num_threads(threads)
        want, c_path = _run_layer("LSTM", kw, dtype, x, None, h0, c0)
        monkeypatch.setattr(_nn_c, "lstm_bwd_kernel", lambda dt: None)
        _, np_path = _run_layer("LSTM", kw, dtype, x, None, h0, c0)
    finally:
        ember.set_num_threads(before)
    for a, b in zip(np_path, c_path):
        np.testing.assert_array_equal(b, a)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for a, b in zip(want, c_path):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
