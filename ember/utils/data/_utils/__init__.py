"""Internals of ``ember.utils.data``, at the paths PyTorch programs import them from
(``torch.utils.data._utils.collate``, ``torch.utils.data._utils.worker``)."""

from . import collate, worker  # noqa: F401
