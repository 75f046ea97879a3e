"""``GeneratedKeywords``: synthesised spoken digits, a SPEECHCOMMANDS-shaped dataset with no
download."""

from __future__ import annotations

import numpy as np

from ...utils.data import Dataset
from . import _keywords

# disjoint speaker pools, so validation and test measure generalisation to new voices
_SPLITS = {"training": (0, 0, 200, 4000), "validation": (1, 200, 240, 500),
           "testing": (2, 240, 300, 1000)}


class GeneratedKeywords(Dataset):
    """Ten spoken-digit-like keywords ("zero" ... "nine"), synthesised on demand.

    Items are ``(waveform, sample_rate, label, speaker_id, utterance_number)`` as
    SPEECHCOMMANDS gives them: ``waveform`` is a float32 ``(1, sample_rate)`` tensor (one
    second), ``label`` the word. Each item is generated from (seed, subset, index), so the
    dataset is deterministic under ``seed`` and costs no memory or disk; training, validation
    and testing draw their speakers from disjoint pools. ``size`` overrides the subset's
    length (4000 / 500 / 1000). ``transform`` receives the waveform tensor.
    """

    classes = list(_keywords.LABELS)

    def __init__(self, subset="training", seed=0, size=None, sample_rate=16000,
                 transform=None):
        if subset not in _SPLITS:
            raise ValueError(f"GeneratedKeywords: subset must be 'training', 'validation' or "
                             f"'testing', got {subset!r}")
        if sample_rate < 8000:
            raise ValueError(f"GeneratedKeywords: sample_rate must be at least 8000 Hz, got "
                             f"{sample_rate}")
        self.subset, self.seed, self.sample_rate = subset, int(seed), int(sample_rate)
        self._split, self._spk_lo, self._spk_hi, default = _SPLITS[subset]
        self._size = default if size is None else int(size)
        self.transform = transform

    def __len__(self):
        return self._size

    def get_metadata(self, n):
        """``(label index, label, speaker_id, utterance_number)`` without synthesising audio."""
        if not -self._size <= n < self._size:
            raise IndexError(f"GeneratedKeywords: index {n} out of range for {self._size} items")
        n %= self._size
        r = np.random.default_rng([self.seed, self._split, n])
        label = int(r.integers(0, len(self.classes)))
        spk = int(r.integers(self._spk_lo, self._spk_hi))
        return label, self.classes[label], f"gen{spk:04d}", int(r.integers(0, 5))

    def __getitem__(self, n):
        from ...ops.creation import from_numpy
        label, word, spk_id, utt = self.get_metadata(n)
        r = np.random.default_rng([self.seed, self._split, n % self._size, 1])
        spk = _keywords.speaker(self.seed, int(spk_id[3:]))
        wave = _keywords.synthesise(word, spk, r, self.sample_rate, self.sample_rate)
        waveform = from_numpy(wave[None])
        if self.transform is not None:
            waveform = self.transform(waveform)
        return waveform, self.sample_rate, word, spk_id, utt
