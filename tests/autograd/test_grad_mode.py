"""Grad modes as context managers and decorators; anomaly detection."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def test_no_grad_context_and_decorators():
    x = ember.ones(2, requires_grad=True)
    with ember.no_grad():
        assert not ember.is_grad_enabled()
        assert (x * 2).grad_fn is None
    assert ember.is_grad_enabled()

    @ember.no_grad()
    def f():
        return ember.is_grad_enabled()

    @ember.no_grad
    def g():
        return ember.is_grad_enabled()
    assert f() is False and g() is False and ember.is_grad_enabled()
    assert f.__name__ == "f" and g.__name__ == "g"


def test_enable_grad_inside_no_grad():
    x = ember.ones(2, requires_grad=True)

    @ember.enable_grad()
    def f():
        return x * 2

    @ember.enable_grad
    def g():
        return x * 2
    with ember.no_grad():
        with ember.enable_grad():
            assert (x * 2).requires_grad
        assert f().requires_grad and g().requires_grad
        assert not (x * 2).requires_grad


def test_set_grad_enabled():
    x = ember.ones(2, requires_grad=True)
    with ember.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert ember.is_grad_enabled()
    ember.set_grad_enabled(False)  # as a function: acts at once
    assert not ember.is_grad_enabled()
    ember.set_grad_enabled(True)
    assert ember.is_grad_enabled()

    @ember.set_grad_enabled(False)
    def f():
        return ember.is_grad_enabled()
    assert ember.is_grad_enabled()
    assert f() is False and ember.is_grad_enabled()


def test_inference_mode():
    x = ember.ones(2, requires_grad=True)
    with ember.inference_mode():
        assert not ember.is_grad_enabled() and ember.is_inference_mode_enabled()
        assert not (x * 2).requires_grad
    assert ember.is_grad_enabled() and not ember.is_inference_mode_enabled()
    with ember.inference_mode(False):
        assert (x * 2).requires_grad

    @ember.inference_mode()
    def f():
        return (x * 2).requires_grad

    @ember.inference_mode
    def g():
        return (x * 2).requires_grad
    assert f() is False and g() is False


def test_modes_restore_after_exception():
    with pytest.raises(ValueError):
        with ember.no_grad():
            raise ValueError
    assert ember.is_grad_enabled()


def test_autograd_namespace_modes():
    assert ember.autograd.no_grad is ember.no_grad
    assert ember.autograd.grad_mode.no_grad is ember.no_grad
    with ember.autograd.set_grad_enabled(False):
        assert not ember.autograd.is_grad_enabled()


def test_mode_is_per_generator_function_call():
    # PyTorch's decorator also works on generator functions, keeping the mode during iteration
    @ember.no_grad()
    def gen():
        yield ember.is_grad_enabled()
        yield ember.is_grad_enabled()
    assert list(gen()) == [False, False]
    assert ember.is_grad_enabled()


def test_detect_anomaly_names_node():
    x = ember.tensor([0.0, 1.0], requires_grad=True)
    with ember.autograd.detect_anomaly():
        y = (x / x).sum()
        with pytest.raises(RuntimeError,
                           match=r"Function 'DivBackward0' returned nan values in its 1th output"):
            y.backward()  # d(x/x)/d(divisor) = -x/x**2 is 0/0 at 0, as PyTorch reports
        z = (x.sqrt() * 0).sum()
        with pytest.raises(RuntimeError,
                           match=r"Function 'SqrtBackward0' returned nan values in its 0th output"):
            z.backward()
    assert not ember.autograd.anomaly.is_anomaly_enabled()


def test_detect_anomaly_decorator_and_set():
    @ember.autograd.detect_anomaly()
    def f():
        return ember.autograd.anomaly.is_anomaly_enabled()
    assert f() is True
    ember.autograd.set_detect_anomaly(True)
    assert ember.is_anomaly_enabled()
    ember.autograd.set_detect_anomaly(False)
    assert not ember.is_anomaly_enabled()


def test_no_anomaly_nan_passes_without_mode():
    x = ember.tensor([0.0, 1.0], requires_grad=True)
    (x / x).sum().backward()
    assert np.isnan(x.grad.numpy()[0])


def test_grad_mode_is_thread_local():
    import threading
    seen = {}

    def worker():
        seen["start"] = ember.is_grad_enabled()
        with ember.no_grad():
            seen["inside"] = ember.is_grad_enabled()
            started.set()
            release.wait(5)

    started, release = threading.Event(), threading.Event()
    with ember.no_grad():
        th = threading.Thread(target=worker)
        th.start()
        started.wait(5)
    x = ember.ones(2, requires_grad=True)
    assert (x * 2).requires_grad  # the other thread's no_grad does not leak here
    release.set()
    th.join()
    assert seen == {"start": True, "inside": False}


def test_detect_anomaly_in_custom_function():
    class BadGrad(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    x = ember.ones(2, requires_grad=True)
    with ember.autograd.detect_anomaly():
        y = BadGrad.apply(x).sum()
        with pytest.raises(RuntimeError, match="Function 'BadGradBackward' returned nan values"):
            y.backward()
