"""Sharding rules (placement propagation) for the ops a transformer block needs."""

from __future__ import annotations


def inplace_pointwise(cls, target, args, kwargs):
    raise NotImplementedError(f"DTensor: in-place op {cls.__name__} has no sharding rule")
