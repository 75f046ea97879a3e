"""``ember.signal``: signal-processing helpers (PyTorch's ``torch.signal``)."""

from . import windows  # noqa: F401
