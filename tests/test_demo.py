"""The demo runs end to end (small sizes), is deterministic under a seed, and its checkpoint
loads back into the same model."""

import os
import re
import subprocess
import sys

import ember

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, out):
    env = dict(os.environ, PYTHONPATH=ROOT, EMBER_CACHE=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-m", "ember.demo", "--epochs", "2", "--train-size",
                          "1000", "--test-size", "300", "--out", str(out), "--seed", "3"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def test_demo_runs_and_is_deterministic(tmp_path):
    a = _run(tmp_path, tmp_path / "a")
    b = _run(tmp_path, tmp_path / "b")
    acc_a = re.search(r"final test accuracy: ([\d.]+)", a).group(1)
    acc_b = re.search(r"final test accuracy: ([\d.]+)", b).group(1)
    assert acc_a == acc_b
    assert float(acc_a) > 0.3  # two short epochs on 1000 images: well above chance (0.1)
    losses = [float(x) for x in re.findall(r"train loss ([\d.]+)", a)]
    assert losses and losses[0] < 2.3
    ckpt = ember.load(str(tmp_path / "a" / "digits_cnn.pt"))
    from ember.demo import build_model
    model = build_model(ember.nn)
    model.load_state_dict(ckpt["model"])
    assert set(ckpt) == {"model", "optimizer", "epochs", "test_acc"}


def test_demo_help():
    res = subprocess.run([sys.executable, "-m", "ember.demo", "--help"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0 and "--epochs" in res.stdout and "--seed" in res.stdout
