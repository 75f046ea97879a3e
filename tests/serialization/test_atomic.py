"""Saving over a checkpoint never leaves it half-written, whatever happens mid-save."""

import os
import pathlib
import signal
import subprocess
import sys
import zipfile

import pytest

import ember

ROOT = str(pathlib.Path(ember.__file__).parents[1])

CHILD = r"""
import sys, time, zipfile
import ember

big = {"w": ember.ones(4_000_000), "b": ember.zeros(1_000_000)}   # ~20 MB
orig = zipfile._ZipWriteFile.write

def write(self, data):
    n = orig(self, data[: len(data) // 2])
    if len(data) > 1_000_000:   # halfway through a storage record: tell the parent, then hang
        print("mid-save", flush=True)
        time.sleep(60)
    return n + orig(self, data[len(data) // 2:])

zipfile._ZipWriteFile.write = write
ember.save(big, sys.argv[1])
print("finished", flush=True)
"""


def _old_checkpoint(path):
    ember.save({"version": "old", "w": ember.arange(10.0)}, path)


def _assert_old(path):
    out = ember.load(path)
    assert out["version"] == "old" and out["w"].tolist() == list(map(float, range(10)))


def test_sigkill_mid_save_leaves_old_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    _old_checkpoint(path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert child.stdout.readline().strip() == "mid-save"
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and temps[0].stat().st_size > 0  # the new data is on its way
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    _assert_old(path)


def test_exception_mid_save_leaves_old_checkpoint_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    _old_checkpoint(path)
    orig = zipfile._ZipWriteFile.write

    def failing(self, data):
        if len(data) > 1000:
            raise OSError(28, "No space left on device")
        return orig(self, data)

    monkeypatch.setattr(zipfile._ZipWriteFile, "write", failing)
    with pytest.raises(OSError, match="No space"):
        ember.save({"w": ember.ones(10_000)}, path)
    monkeypatch.undo()
    _assert_old(path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_save_through_symlink_replaces_target(tmp_path):
    real = tmp_path / "real.pt"
    link = tmp_path / "link.pt"
    _old_checkpoint(real)
    link.symlink_to(real)
    ember.save({"version": "new"}, link)
    assert link.is_symlink()
    assert ember.load(real)["version"] == "new"
