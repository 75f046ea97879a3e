"""Anomaly mode's two switches, as PyTorch's: ``detect_anomaly(check_nan=False)`` still
records each node's forward traceback (and prints it when that node's backward fails) but
does not check gradients for NaN."""

import warnings

import pytest

import ember

torch = pytest.importorskip("torch")


def _flags(m):
    return m.is_anomaly_enabled(), m.is_anomaly_check_nan_enabled()


@pytest.mark.parametrize("check_nan", [True, False])
def test_flags_follow_pytorch(check_nan):
    out = []
    for m in (torch, ember):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = [_flags(m)]
            with m.autograd.detect_anomaly(check_nan=check_nan):
                got.append(_flags(m))
            got.append(_flags(m))
            with m.autograd.set_detect_anomaly(True, check_nan):
                got.append(_flags(m))
            got.append(_flags(m))
        out.append(got)
    assert out[0] == out[1]


def _nan_backward(m):
    x = m.tensor([0.0, 1.0], requires_grad=True)
    y = (x.sqrt() * 0.0).sum()  # sqrt's gradient at 0 is inf; times 0 gives NaN
    y.backward()
    return x.grad


@pytest.mark.parametrize("check_nan", [True, False])
def test_nan_check_only_with_check_nan(check_nan):
    for m in (torch, ember):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with m.autograd.detect_anomaly(check_nan=check_nan):
                if check_nan:
                    with pytest.raises(RuntimeError, match="returned nan values"):
                        _nan_backward(m)
                else:
                    assert bool(_nan_backward(m).isnan().any())


class _Broken(ember.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        raise ValueError("broken backward")


def test_failing_backward_prints_forward_trace(capsys):
    x = ember.ones(2, requires_grad=True)
    with ember.autograd.detect_anomaly(check_nan=False):
        y = _Broken.apply(x).sum()
        with pytest.raises(ValueError, match="broken backward"):
            y.backward()
    err = capsys.readouterr().err
    assert "Traceback of forward call that caused the error" in err
    assert "_Broken.apply(x)" in err
    # outside anomaly mode: the error alone
    y = _Broken.apply(x).sum()
    with pytest.raises(ValueError, match="broken backward"):
        y.backward()
    assert "Traceback of forward call" not in capsys.readouterr().err
