"""``ember.random``: the default generator's seed and state, and ``fork_rng``."""

from __future__ import annotations

import contextlib

from ._random import (default_generator, get_rng_state, initial_seed, manual_seed, seed,
                      set_rng_state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled=True, _caller="fork_rng", _devices_kw="devices",
             device_type="cuda"):
    """Run the block with a forked random state: the default generator's state on entry is
    restored on exit, so random draws inside do not change the draws after it."""
    if not enabled:
        yield
        return
    state = default_generator.get_state()
    try:
        yield
    finally:
        default_generator.set_state(state)


__all__ = ["fork_rng", "get_rng_state", "set_rng_state", "manual_seed", "seed", "initial_seed"]
