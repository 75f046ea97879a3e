"""Readers for the standard speech-dataset folder layouts (SPEECHCOMMANDS, YESNO,
LibriSpeech). Nothing is downloaded: point ``root`` at the extracted archive."""

from __future__ import annotations

import os

from ...utils.data import Dataset
from .._io import load


def _no_download(name, path):
    raise RuntimeError(f"{name}: ember does not download datasets; extract the archive so that "
                       f"{path!r} exists (or use ember.audio.datasets.GeneratedKeywords, which "
                       f"needs no files)")


def _check_dir(name, path):
    if not os.path.isdir(path):
        raise RuntimeError(f"{name}: dataset folder {path!r} not found. Extract the archive "
                           f"there, or use ember.audio.datasets.GeneratedKeywords.")


HASH_DIVIDER = "_nohash_"


def _base(url):
    """The folder an archive named by ``url`` extracts to ("x.tar.gz" -> "x")."""
    name = os.path.basename(url)
    for ext in (".tar.gz", ".tgz", ".zip"):
        if name.endswith(ext):
            return name[:-len(ext)]
    return name


class SPEECHCOMMANDS(Dataset):
    """Google Speech Commands in its folder layout: ``root/SpeechCommands/<url>/<label>/
    <speaker>_nohash_<n>.wav`` with ``validation_list.txt`` and ``testing_list.txt`` beside.

    Items are ``(waveform, sample_rate, label, speaker_id, utterance_number)``. ``subset`` is
    None (every file), "training" (those in neither list), "validation" or "testing".
    """

    def __init__(self, root, url="speech_commands_v0.02", folder_in_archive="SpeechCommands",
                 download=False, subset=None):
        if subset not in (None, "training", "validation", "testing"):
            raise ValueError(f"SPEECHCOMMANDS: subset must be None, 'training', 'validation' "
                             f"or 'testing', got {subset!r}")
        self._path = os.path.join(os.fspath(root), folder_in_archive, _base(url))
        if download and not os.path.isdir(self._path):
            _no_download("SPEECHCOMMANDS", self._path)
        _check_dir("SPEECHCOMMANDS", self._path)

        def listed(name):
            p = os.path.join(self._path, name)
            if not os.path.exists(p):
                return []
            with open(p) as f:
                return [os.path.normpath(os.path.join(self._path, line.strip()))
                        for line in f if line.strip()]

        if subset == "validation":
            self._walker = listed("validation_list.txt")
        elif subset == "testing":
            self._walker = listed("testing_list.txt")
        else:
            excluded = set(listed("validation_list.txt") + listed("testing_list.txt")) \
                if subset == "training" else set()
            walker = []
            for label in sorted(os.listdir(self._path)):
                d = os.path.join(self._path, label)
                if not os.path.isdir(d) or label == "_background_noise_":
                    continue
                for f in sorted(os.listdir(d)):
                    p = os.path.normpath(os.path.join(d, f))
                    if f.endswith(".wav") and HASH_DIVIDER in f and p not in excluded:
                        walker.append(p)
            self._walker = walker

    def get_metadata(self, n):
        """``(relative path, sample_rate, label, speaker_id, utterance_number)`` without
        reading the audio (sample rate from the header)."""
        path = self._walker[n]
        rel = os.path.relpath(path, os.path.dirname(self._path))
        label, filename = os.path.split(os.path.relpath(path, self._path))
        speaker_id, utt = os.path.splitext(filename)[0].split(HASH_DIVIDER)
        from .._io import info
        return rel, info(path).sample_rate, label, speaker_id, int(utt)

    def __getitem__(self, n):
        path = self._walker[n]
        waveform, sr = load(path)
        label, filename = os.path.split(os.path.relpath(path, self._path))
        speaker_id, utt = os.path.splitext(filename)[0].split(HASH_DIVIDER)
        return waveform, sr, label, speaker_id, int(utt)

    def __len__(self):
        return len(self._walker)


class YESNO(Dataset):
    """The YesNo recordings: ``root/waves_yesno/<0_1_1_0_...>.wav``; items are
    ``(waveform, sample_rate, labels)`` with one 0/1 label per word in the file name."""

    def __init__(self, root, url=None, folder_in_archive="waves_yesno", download=False):
        self._path = os.path.join(os.fspath(root), folder_in_archive)
        if download and not os.path.isdir(self._path):
            _no_download("YESNO", self._path)
        _check_dir("YESNO", self._path)
        self._walker = sorted(os.path.splitext(f)[0] for f in os.listdir(self._path)
                              if f.endswith(".wav"))

    def __getitem__(self, n):
        fileid = self._walker[n]
        waveform, sr = load(os.path.join(self._path, fileid + ".wav"))
        return waveform, sr, [int(c) for c in fileid.split("_")]

    def __len__(self):
        return len(self._walker)


class LIBRISPEECH(Dataset):
    """LibriSpeech: ``root/LibriSpeech/<url>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
    with ``<speaker>-<chapter>.trans.txt`` transcripts. Items are ``(waveform, sample_rate,
    transcript, speaker_id, chapter_id, utterance_id)``. FLAC needs ``soundfile``
    (``pip install ember[audio]``); ``ext_audio=".wav"`` reads a WAV copy of the corpus.
    """

    _ext_txt = ".trans.txt"

    def __init__(self, root, url="train-clean-100", folder_in_archive="LibriSpeech",
                 download=False, ext_audio=".flac"):
        self._path = os.path.join(os.fspath(root), folder_in_archive,
                                  _base(url))
        if download and not os.path.isdir(self._path):
            _no_download("LIBRISPEECH", self._path)
        _check_dir("LIBRISPEECH", self._path)
        self._ext_audio = ext_audio
        walker = []
        for speaker in sorted(os.listdir(self._path)):
            sd = os.path.join(self._path, speaker)
            if not os.path.isdir(sd):
                continue
            for chapter in sorted(os.listdir(sd)):
                cd = os.path.join(sd, chapter)
                if os.path.isdir(cd):
                    walker += sorted(f[:-len(ext_audio)] for f in os.listdir(cd)
                                     if f.endswith(ext_audio))
        self._walker = walker

    def _transcript(self, speaker, chapter, fileid):
        p = os.path.join(self._path, speaker, chapter, f"{speaker}-{chapter}{self._ext_txt}")
        with open(p) as f:
            for line in f:
                key, _, text = line.strip().partition(" ")
                if key == fileid:
                    return text
        raise FileNotFoundError(f"LIBRISPEECH: no transcript for {fileid!r} in {p!r}")

    def get_metadata(self, n):
        """``(relative path, sample_rate, transcript, speaker_id, chapter_id, utterance_id)``
        without decoding the audio."""
        fileid = self._walker[n]
        speaker, chapter, utt = fileid.split("-")
        rel = os.path.join(speaker, chapter, fileid + self._ext_audio)
        from .._io import info
        sr = info(os.path.join(self._path, rel)).sample_rate
        return (rel, sr, self._transcript(speaker, chapter, fileid), int(speaker), int(chapter),
                int(utt))

    def __getitem__(self, n):
        fileid = self._walker[n]
        speaker, chapter, utt = fileid.split("-")
        waveform, sr = load(os.path.join(self._path, speaker, chapter, fileid + self._ext_audio))
        return (waveform, sr, self._transcript(speaker, chapter, fileid), int(speaker),
                int(chapter), int(utt))

    def __len__(self):
        return len(self._walker)
