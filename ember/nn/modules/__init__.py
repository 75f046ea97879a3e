"""Every ``nn`` layer class; ``ember.nn`` re-exports this namespace."""

from .module import Module

__all__ = ["Module"]
