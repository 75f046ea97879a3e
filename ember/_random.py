"""Layer 0: random generators and ``manual_seed``.

A ``Generator`` wraps NumPy's PCG64 bit generator; same seed, same numbers, every run.
The streams differ from PyTorch's (statistics match, values do not).
"""

from __future__ import annotations

import time

import numpy as np

_DEFAULT_SEED = 67280421310721  # PyTorch's default CPU seed


class Generator:
    """A source of random numbers (``ember.Generator``)."""

    def __init__(self, device="cpu"):
        from ._device import to_device
        self.device = to_device(device)
        self._seed = _DEFAULT_SEED
        self._rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed):
        seed = int(seed)
        if seed < 0:
            seed &= 0xFFFFFFFFFFFFFFFF
        self._seed = seed
        self._rng = np.random.Generator(np.random.PCG64(seed))
        return self

    def seed(self):
        s = time.time_ns() & 0xFFFFFFFFFFFFFFFF
        self.manual_seed(s)
        return s

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """The generator's state as a uint8 tensor (opaque bytes, as in PyTorch)."""
        import json

        from ._tensor import _make
        blob = json.dumps([self._seed, self._rng.bit_generator.state]).encode()
        return _make(np.frombuffer(blob, dtype=np.uint8).copy())

    def set_state(self, state):
        import json

        from ._tensor import Tensor
        if not isinstance(state, Tensor) or state._data.dtype != np.uint8:
            raise TypeError(f"expected a torch.ByteTensor, but got {type(state).__name__}")
        try:
            seed, st = json.loads(state._data.tobytes().decode())
        except ValueError:
            raise RuntimeError("Invalid RNG state: expected the bytes of Generator.get_state() "
                               f"(got {state._data.size} bytes that are not)") from None
        self._seed = seed
        self._rng = np.random.Generator(np.random.PCG64())
        self._rng.bit_generator.state = st
        return self

    def clone_state(self):
        return self._seed, self._rng.bit_generator.state

    def restore_state(self, saved):
        self._seed = saved[0]
        self._rng.bit_generator.state = saved[1]


default_generator = Generator()


def _rng(generator=None) -> np.random.Generator:
    return (generator or default_generator)._rng


def manual_seed(seed):
    """Seed the default generator; returns it."""
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)
