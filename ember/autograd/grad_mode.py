"""Layer 1: grad modes (``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``).

The state lives in ``GradMode``, which the dispatch path reads when an input requires grad.
As in PyTorch it is per thread: a thread starts with grad enabled, and ``no_grad`` in one
thread (say, an evaluation thread) never turns off recording in another. Each mode works as a
context manager and as a decorator, like PyTorch's.
"""

from __future__ import annotations

import functools
import inspect
import threading


class _GradState(threading.local):
    """Per-thread grad mode; the class attributes are each new thread's defaults."""

    enabled = True
    inference = False


GradMode = _GradState()


def is_grad_enabled() -> bool:
    return GradMode.enabled


def is_inference_mode_enabled() -> bool:
    return GradMode.inference


class _Mode:
    """Base of the grad-mode context managers; subclasses set ``_target``."""

    _target = True

    def __enter__(self):
        self._prev = (GradMode.enabled, GradMode.inference)
        GradMode.enabled = self._target
        return self

    def __exit__(self, *exc):
        GradMode.enabled, GradMode.inference = self._prev
        return False

    def __call__(self, fn):
        mode = type(self)
        args = self._args()
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*a, **k):
                # the mode holds while the generator body runs, not while the caller does
                gen = fn(*a, **k)
                sent = None
                while True:
                    try:
                        with mode(*args):
                            item = gen.send(sent)
                    except StopIteration as stop:
                        return stop.value
                    sent = yield item
            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with mode(*args):
                return fn(*a, **k)
        return wrapper

    def _args(self):
        return ()

    def clone(self):
        return type(self)(*self._args())


class no_grad(_Mode):
    """Disable gradient recording inside the block."""

    _target = False

    def __new__(cls, orig_func=None):
        # ``@no_grad`` without parentheses wraps the function directly
        self = super().__new__(cls)
        if orig_func is not None and callable(orig_func):
            return _Mode.__call__(self, orig_func)
        return self

    def __init__(self, orig_func=None):
        pass


class enable_grad(_Mode):
    """Enable gradient recording inside the block (even within ``no_grad``)."""

    _target = True

    def __new__(cls, orig_func=None):
        self = super().__new__(cls)
        if orig_func is not None and callable(orig_func):
            return _Mode.__call__(self, orig_func)
        return self

    def __init__(self, orig_func=None):
        pass


class set_grad_enabled(_Mode):
    """Set grad mode to ``mode``; acts at once when called, and restores on ``__exit__``."""

    def __init__(self, mode: bool):
        self._prev = (GradMode.enabled, GradMode.inference)
        self._target = bool(mode)
        GradMode.enabled = self._target

    def __enter__(self):
        return self

    def _args(self):
        return (self._target,)

    def __call__(self, fn):
        GradMode.enabled, GradMode.inference = self._prev
        return _Mode.__call__(self, fn)


class inference_mode(_Mode):
    """Like ``no_grad`` (ember has no separate inference tensors); ``mode=False`` is a no-op."""

    def __new__(cls, mode=True):
        self = super().__new__(cls)
        if callable(mode) and not isinstance(mode, bool):
            self.__init__(True)
            return _Mode.__call__(self, mode)
        return self

    def __init__(self, mode=True):
        if callable(mode) and not isinstance(mode, bool):
            mode = True
        self._on = bool(mode)
        self._target = GradMode.enabled if not self._on else False

    def __enter__(self):
        self._target = False if self._on else GradMode.enabled
        super().__enter__()
        if self._on:
            GradMode.inference = True
        return self

    def _args(self):
        return (self._on,)
