"""``ember.func``: functional transforms. ``functional_call`` runs a module with swapped
parameters and buffers (see ``ember.nn.utils.stateless``)."""

from .nn.utils.stateless import functional_call

__all__ = ["functional_call"]
