"""Audio datasets: folder-layout readers on small files written here; GeneratedKeywords."""

import numpy as np
import pytest

import ember
from ember import audio
from ember.audio.datasets import LIBRISPEECH, SPEECHCOMMANDS, YESNO, GeneratedKeywords


def _wav(path, n=160, sr=16000, value=0.25):
    path.parent.mkdir(parents=True, exist_ok=True)
    audio.save(path, ember.full((1, n), value), sr, bits_per_sample=16)


def test_speechcommands_layout_and_subsets(tmp_path):
    base = tmp_path / "SpeechCommands" / "speech_commands_v0.02"
    files = ["yes/aa11_nohash_0.wav", "yes/bb22_nohash_1.wav", "no/aa11_nohash_2.wav",
             "no/cc33_nohash_0.wav", "_background_noise_/white_nohash_0.wav"]
    for i, f in enumerate(files):
        _wav(base / f, n=100 + i, value=0.1 * (i + 1))
    (base / "validation_list.txt").write_text("no/aa11_nohash_2.wav\n")
    (base / "testing_list.txt").write_text("yes/bb22_nohash_1.wav\n")
    ds = SPEECHCOMMANDS(tmp_path)
    assert len(ds) == 4  # background noise excluded
    w, sr, label, spk, utt = ds[0]  # sorted: no/aa11, no/cc33, yes/aa11, yes/bb22
    assert (sr, label, spk, utt) == (16000, "no", "aa11", 2)
    assert tuple(w.shape) == (1, 102)
    np.testing.assert_allclose(w.numpy(), 0.3, atol=1 / 32768)
    train = SPEECHCOMMANDS(tmp_path, subset="training")
    assert [train[i][2:4] for i in range(len(train))] == [("no", "cc33"), ("yes", "aa11")]
    assert [x[2:] for x in SPEECHCOMMANDS(tmp_path, subset="validation")] == [("no", "aa11", 2)]
    assert [x[2:] for x in SPEECHCOMMANDS(tmp_path, subset="testing")] == [("yes", "bb22", 1)]
    assert ds.get_metadata(3)[2:] == ("yes", "bb22", 1)
    with pytest.raises(ValueError, match="subset"):
        SPEECHCOMMANDS(tmp_path, subset="train")
    with pytest.raises(RuntimeError, match="not found"):
        SPEECHCOMMANDS(tmp_path / "missing")
    with pytest.raises(RuntimeError, match="download"):
        SPEECHCOMMANDS(tmp_path / "missing", download=True)


def test_yesno_layout(tmp_path):
    for name in ("1_0_1_1_0_0_0_1", "0_0_0_0_1_1_1_1"):
        _wav(tmp_path / "waves_yesno" / f"{name}.wav", sr=8000)
    ds = YESNO(tmp_path)
    assert len(ds) == 2
    w, sr, labels = ds[0]
    assert sr == 8000 and labels == [0, 0, 0, 0, 1, 1, 1, 1] and tuple(w.shape) == (1, 160)


@pytest.mark.parametrize("ext", [".flac", ".wav"])
def test_librispeech_layout(tmp_path, ext):
    if ext == ".flac":
        pytest.importorskip("soundfile")
    d = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    for utt in (0, 1):
        d.mkdir(parents=True, exist_ok=True)
        audio.save(d / f"84-121123-{utt:04d}{ext}", ember.full((1, 200), 0.1 * (utt + 1)),
                   16000, bits_per_sample=16)
    (d / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n"
                                           "84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
    ds = LIBRISPEECH(tmp_path, url="dev-clean", ext_audio=ext)
    assert len(ds) == 2
    w, sr, text, spk, ch, utt = ds[1]
    assert (sr, text, spk, ch, utt) == (16000, "BUT IN LESS THAN FIVE MINUTES", 84, 121123, 1)
    np.testing.assert_allclose(w.numpy(), 0.2, atol=1 / 32768)
    assert ds.get_metadata(0)[2] == "GO DO YOU HEAR"


def test_generated_keywords_deterministic_and_shaped():
    a = GeneratedKeywords("validation", seed=3, size=6)
    b = GeneratedKeywords("validation", seed=3, size=6)
    c = GeneratedKeywords("validation", seed=4, size=6)
    assert len(a) == 6
    for i in range(6):
        wa, sr, label, spk, utt = a[i]
        wb = b[i][0]
        assert tuple(wa.shape) == (1, 16000) and wa.dtype == ember.float32 and sr == 16000
        assert label in GeneratedKeywords.classes and spk.startswith("gen")
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
        assert float(wa.abs().max()) <= 1.0 and float(wa.abs().max()) > 0.05
    assert not np.array_equal(a[0][0].numpy(), c[0][0].numpy())
    np.testing.assert_array_equal(a[-1][0].numpy(), a[5][0].numpy())
    with pytest.raises(IndexError):
        a[6]
    assert a.get_metadata(2)[1] == a[2][2]


def test_generated_keywords_splits_and_options():
    train = GeneratedKeywords("training", size=300)
    test = GeneratedKeywords("testing", size=100)
    spk_train = {train.get_metadata(i)[2] for i in range(len(train))}
    spk_test = {test.get_metadata(i)[2] for i in range(len(test))}
    assert not spk_train & spk_test  # disjoint speakers
    labels = [train.get_metadata(i)[0] for i in range(len(train))]
    assert set(labels) == set(range(10))  # every class present, roughly balanced
    assert max(np.bincount(labels)) < 60
    assert len(GeneratedKeywords("testing")) == 1000
    w = GeneratedKeywords("testing", size=2, sample_rate=8000, transform=lambda x: x * 2)[0][0]
    assert tuple(w.shape) == (1, 8000)
    with pytest.raises(ValueError, match="subset"):
        GeneratedKeywords("train")


def test_generated_keywords_words_are_distinguishable():
    # a nearest-centroid classifier on the loudest frames' mean log-mel profile, fit on
    # training speakers, is far above chance (0.1) on unseen test speakers
    from ember.audio.transforms import MelSpectrogram
    mel = MelSpectrogram(16000, n_fft=512, hop_length=512, n_mels=24)

    def profiles(ds):
        waves = ember.cat([ds[i][0] for i in range(len(ds))])
        m = ember.log(mel(waves) + 1e-6).numpy()  # (n, mels, frames)
        loud = np.argsort(m.mean(1), axis=1)[:, -8:]  # the word's frames, not the silence
        feats = np.stack([m[i][:, loud[i]].mean(1) for i in range(len(ds))])
        labels = [ds.get_metadata(i)[0] for i in range(len(ds))]
        return feats - feats.mean(1, keepdims=True), np.array(labels)

    xtr, ytr = profiles(GeneratedKeywords("training", size=150))
    xte, yte = profiles(GeneratedKeywords("testing", size=60))
    centroids = np.stack([xtr[ytr == k].mean(0) for k in range(10)])
    pred = np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yte).mean() > 0.4
