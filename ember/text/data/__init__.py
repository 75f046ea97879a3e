"""``ember.text.data``: tokenizers (``get_tokenizer``) and batching helpers (padding with
lengths for ``pack_padded_sequence``, length-bucketed batch sampling)."""

from .batching import BucketBatchSampler, PadCollate, pad_batch
from .utils import get_tokenizer, ngrams_iterator

__all__ = ["get_tokenizer", "ngrams_iterator", "pad_batch", "PadCollate", "BucketBatchSampler"]
