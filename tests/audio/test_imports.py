"""ember.audio and ember.text import without their optional extras and stay lazy."""

import subprocess
import sys

CODE = """
import sys
import ember
assert "ember.audio" not in sys.modules and "ember.text" not in sys.modules
import ember.audio.functional, ember.audio.transforms, ember.audio.datasets
import ember.text.data, ember.text.vocab, ember.text.transforms, ember.text.datasets
import ember.text.tokenizers
heavy = [m for m in ("soundfile", "tokenizers", "scipy", "torch") if m in sys.modules]
assert not heavy, heavy
print("ok", ember.audio.load.__name__, ember.text.vocab.Vocab.__name__)
"""


def test_lazy_and_light_imports():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok load Vocab")
