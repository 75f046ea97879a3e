"""The exact int8 GEMM: every formulation (C kernel, float BLAS with K blocking, NumPy)
equals an int64 reference, including the worst-case magnitudes, odd K tails and asymmetric
weights; the per-shape choice and the no-compiler fallback."""

import numpy as np
import pytest

from ember.ao import _gemm


def _ref(a, w, zw):
    return a.astype(np.int64) @ (w.astype(np.int64) - np.asarray(zw)[..., None]).T


SHAPES = [(1, 512, 784), (3, 10, 512), (64, 30, 40), (5, 7, 1), (2, 3, 33), (1, 17, 31),
          (8, 64, 65)]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("extreme", [False, True])
def test_all_formulations_are_exact(M, N, K, extreme):
    rng = np.random.default_rng(M * 1000 + K)
    if extreme:  # the largest magnitudes: every product is 255 * 128
        a = np.full((M, K), -255, np.int16)
        w = np.full((N, K), -128, np.int8)
    else:
        a = rng.integers(-255, 256, (M, K)).astype(np.int16)
        w = rng.integers(-128, 128, (N, K)).astype(np.int8)
    pw = _gemm.PackedWeight(w, 0)
    ref = _ref(a, w, np.zeros(N, np.int64))
    amax = int(np.abs(a).max())
    np.testing.assert_array_equal(_gemm.gemm_blas(a, pw, amax), ref)
    np.testing.assert_array_equal(_gemm.gemm_numpy(a, pw), ref)
    if _gemm._c_kernel() is not None:
        np.testing.assert_array_equal(_gemm.gemm_c(a, pw), ref)
    np.testing.assert_array_equal(_gemm.gemm(a, pw, amax), ref)


def test_large_k_is_blocked_and_exact():
    # K * 255 * 128 far beyond 2**24: float32 alone would round; the blocks keep it exact
    rng = np.random.default_rng(0)
    K = 5000
    a = rng.integers(-255, 256, (3, K)).astype(np.int16)
    a[0] = 255
    w = rng.integers(-128, 128, (4, K)).astype(np.int8)
    w[0] = 127
    pw = _gemm.PackedWeight(w, 0)
    out = _gemm.gemm_blas(a, pw, 255)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, _ref(a, w, np.zeros(4, np.int64)))


def test_asymmetric_weights():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (30, 70)).astype(np.int8)
    zw = rng.integers(-5, 6, 30)
    pw = _gemm.PackedWeight(w, zw)
    a = rng.integers(-255, 256, (3, 70)).astype(np.int16)
    ref = _ref(a, w, zw)
    np.testing.assert_array_equal(_gemm.gemm_blas(a, pw, 255), ref)
    np.testing.assert_array_equal(_gemm.gemm_numpy(a, pw), ref)
    if _gemm._c_kernel() is not None:
        np.testing.assert_array_equal(_gemm.gemm_c(a, pw), ref)


def test_choice_per_shape_and_forcing():
    if _gemm._c_kernel() is not None:
        assert _gemm.choose(1, 512, 784) == "c"
    assert _gemm.choose(64, 512, 784) == "blas"
    assert _gemm.choose(1, 10, 16) == "blas"  # tiny weights: the call costs more than BLAS
    _gemm.set_backend("numpy")
    try:
        assert _gemm.choose(1, 512, 784) == "numpy"
    finally:
        _gemm.set_backend(None)
    with pytest.raises(ValueError):
        _gemm.set_backend("fast")


def test_kernel_isa_is_reported():
    isa = _gemm.kernel_isa()
    assert isa in (None, "avx512vnni", "avx2", "scalar")
    if isa is not None:
        flags = open("/proc/cpuinfo").read() if __import__("os").path.exists(
            "/proc/cpuinfo") else ""
        if "avx512_vnni" in flags and "avx512bw" in flags:
            assert isa == "avx512vnni"
        elif " avx2" in flags:
            assert isa == "avx2"


def test_no_compiler_falls_back(monkeypatch):
    monkeypatch.setattr(_gemm, "_KERNEL", [None])
    rng = np.random.default_rng(2)
    a = rng.integers(-127, 128, (1, 600)).astype(np.int16)
    w = rng.integers(-128, 128, (100, 600)).astype(np.int8)
    pw = _gemm.PackedWeight(w, 0)
    assert _gemm.choose(1, 100, 600) == "blas"
    np.testing.assert_array_equal(_gemm.gemm(a, pw, 127), _ref(a, w, np.zeros(100, np.int64)))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(_gemm, "_KERNEL", [])
    import ember._cc as cc
    monkeypatch.setattr(cc, "c_compiler", lambda: None)
    assert _gemm._c_kernel() is None and _gemm.kernel_isa() is None


@pytest.mark.parametrize("M,N,K", SHAPES)
def test_u8_kernel_is_exact(M, N, K):
    # activations below 128 (reduce_range): the u8 x s8 pair sums cannot saturate
    if _gemm._c_kernel() is None:
        pytest.skip("no C compiler")
    rng = np.random.default_rng(K)
    w = rng.integers(-128, 128, (N, K)).astype(np.int8)
    w[0] = -128
    for zw in (np.zeros(N, np.int64), rng.integers(-3, 4, N)):
        pw = _gemm.PackedWeight(w, zw)
        q = rng.integers(0, 128, (M, K)).astype(np.uint8)
        q[0] = 127
        za = int(rng.integers(0, 128))
        ref = (q.astype(np.int64) - za) @ (w.astype(np.int64) - zw[:, None]).T
        np.testing.assert_array_equal(_gemm.gemm_u8(q, za, pw), ref)
        np.testing.assert_array_equal(_gemm.gemm_q(q, za, pw), ref)
        q[-1, -1] = 200  # one activation above 127: the centred formulations take over
        ref = (q.astype(np.int64) - za) @ (w.astype(np.int64) - zw[:, None]).T
        np.testing.assert_array_equal(_gemm.gemm_q(q, za, pw), ref)


def test_fused_dynamic_linear_matches_the_numpy_path():
    from ember.ao import _qfast
    from ember.ao.nn.quantized import functional as QF
    if not _qfast.available():
        pytest.skip("no C compiler")
    rng = np.random.default_rng(4)
    import ember
    for zw in (0, 3):
        w = ember.quantize_per_tensor(ember.from_numpy(
            rng.standard_normal((33, 70)).astype(np.float32)), 0.02, zw, ember.qint8)
        pk = QF.PackedLinearWeight(w, ember.from_numpy(rng.standard_normal(33).astype(
            np.float32)))
        for rows in (1, 7, 40):
            x = (rng.standard_normal((rows, 70)) * 5 + 1).astype(np.float32)
            fused = QF.linear_dynamic(x, pk, True)
            _gemm.set_backend("blas")
            try:
                plain = QF.linear_dynamic(x, pk, True)
            finally:
                _gemm.set_backend(None)
            np.testing.assert_array_equal(fused, plain)
