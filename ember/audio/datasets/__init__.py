"""Audio datasets: readers for the SPEECHCOMMANDS, YESNO and LibriSpeech folder layouts, and
the built-in generated keywords (no files)."""

from .files import LIBRISPEECH, SPEECHCOMMANDS, YESNO
from .keywords import GeneratedKeywords

__all__ = ["SPEECHCOMMANDS", "YESNO", "LIBRISPEECH", "GeneratedKeywords"]
