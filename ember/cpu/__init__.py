"""``ember.cpu``: the CPU device's namespace (``ember.cpu.amp.autocast``)."""

from . import amp  # noqa: F401


def is_available():
    """The CPU is always available."""
    return True


def device_count():
    return 1


def synchronize(device=None):
    """CPU work is synchronous: nothing to wait for."""
