"""``ember.distributed.algorithms``: DDP communication hooks and the Join context manager for
uneven inputs."""

from .join import Join, Joinable, JoinHook  # noqa: F401

__all__ = ["Join", "Joinable", "JoinHook"]
