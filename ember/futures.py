"""``ember.futures.Future``: the result of an asynchronous operation (PyTorch's
``torch.futures.Future``), as returned by ``Work.get_future()`` and DDP communication hooks.

A future is either given its value (``set_result``) or made from a waiter, a function that
completes the underlying operation on the first ``wait()``; ``then(callback)`` chains a
function of the completed future and returns the future of its result.
"""

from __future__ import annotations

__all__ = ["Future", "collect_all", "wait_all"]


class Future:
    """A value that may not be ready yet."""

    def __init__(self, *, devices=None, _waiter=None):
        self._waiter = _waiter
        self._done = False
        self._value = None
        self._error = None
        self._callbacks = []

    def done(self):
        """Whether the value (or an error) is set."""
        return self._done

    def set_result(self, result):
        """Set the value and run the callbacks added with ``then``/``add_done_callback``."""
        if self._done:
            raise RuntimeError("Future.set_result: the future's value is already set")
        self._value, self._done = result, True
        self._run_callbacks()

    def set_exception(self, result):
        self._error, self._done = result, True
        self._run_callbacks()

    def _run_callbacks(self):
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def wait(self):
        """Complete the operation if needed, then return the value (or raise its error)."""
        if not self._done:
            if self._waiter is None:
                raise RuntimeError("Future.wait: the value is never going to be set (no "
                                   "operation is attached to this future)")
            waiter, self._waiter = self._waiter, None
            try:
                value = waiter()
            except Exception as e:  # keep it and re-raise: later waits raise it again
                self.set_exception(e)
            else:
                self.set_result(value)
        if self._error is not None:
            raise self._error
        return self._value

    def value(self):
        """The value of a completed future."""
        if not self._done:
            raise RuntimeError("Future.value: the future is not completed yet; call wait()")
        if self._error is not None:
            raise self._error
        return self._value

    def then(self, callback):
        """A future of ``callback(self)``, run once this future completes."""
        parent = self

        def run():
            parent.wait()
            return callback(parent)
        child = Future(_waiter=run)
        if self._done:
            child.wait()
        return child

    def add_done_callback(self, callback):
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)


def collect_all(futures):
    """A future of the list of ``futures``, completed when all are."""
    futures = list(futures)

    def run():
        for f in futures:
            f.wait()
        return futures
    return Future(_waiter=run)


def wait_all(futures):
    """Wait for every future and return their values."""
    return [f.wait() for f in futures]
