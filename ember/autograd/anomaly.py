"""Anomaly detection: nodes remember the forward call that made them, and the engine raises
when a backward produces NaN, naming that node (and printing the forward traceback)."""

from __future__ import annotations

from .graph import _anomaly_enabled, _anomaly_nan

_CHECK_NAN = [True]  # the check_nan setting, kept while anomaly mode is off (PyTorch's)


class detect_anomaly:
    """Context manager/decorator enabling anomaly detection (slow: for debugging)."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = (_anomaly_enabled[0], _CHECK_NAN[0])
        set_anomaly_enabled(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        set_anomaly_enabled(*self._prev)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with detect_anomaly(self.check_nan):
                return fn(*a, **k)
        return wrapper


class set_detect_anomaly(detect_anomaly):
    def __init__(self, mode, check_nan=True):
        self._prev = (_anomaly_enabled[0], _CHECK_NAN[0])
        set_anomaly_enabled(mode, check_nan)
        self.check_nan = check_nan

    def __enter__(self):
        return self


def is_anomaly_enabled():
    """Whether anomaly detection is on (``ember.is_anomaly_enabled``)."""
    return _anomaly_enabled[0]


def is_anomaly_check_nan_enabled():
    """Whether anomaly mode also checks every gradient for NaN."""
    return _CHECK_NAN[0]


def set_anomaly_enabled(enabled, check_nan=True):
    """Turn anomaly detection on or off globally (``ember.set_anomaly_enabled``):
    nodes record their forward's traceback (printed when their backward fails) and, with
    ``check_nan``, a gradient holding NaN raises."""
    _anomaly_enabled[0] = bool(enabled)
    _CHECK_NAN[0] = bool(check_nan)
    _anomaly_nan[0] = _anomaly_enabled[0] and _CHECK_NAN[0]
