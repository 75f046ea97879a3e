"""Batching variable-length token sequences: padding with lengths (ready for
``nn.utils.rnn.pack_padded_sequence``) and batches of similar lengths."""

from __future__ import annotations

from ...utils.data import Sampler


def pad_batch(sequences, padding_value=0, batch_first=True, dtype=None, max_length=None):
    """Pad a list of 1D sequences (lists of ints or tensors) to a common length.

    Returns ``(padded, lengths)``: ``padded`` is ``(batch, time)`` (``(time, batch)`` when not
    ``batch_first``), ``lengths`` an int64 tensor of the true lengths, in the input order,
    which ``pack_padded_sequence(padded, lengths, batch_first, enforce_sorted=False)`` takes.
    ``max_length`` truncates longer sequences.
    """
    import ember
    if len(sequences) == 0:
        raise ValueError("pad_batch: expected at least one sequence")
    seqs = [s if isinstance(s, ember.Tensor) else ember.tensor(list(s), dtype=dtype or
                                                               ember.int64) for s in sequences]
    if max_length is not None:
        seqs = [s[:max_length] for s in seqs]
    for s in seqs:
        if s.ndim != 1:
            raise ValueError(f"pad_batch: expected 1D sequences, got shape {list(s.shape)}")
    lengths = ember.tensor([s.shape[0] for s in seqs], dtype=ember.int64)
    width = int(lengths.max()) if len(seqs) else 0
    out = ember.full((len(seqs), width), padding_value, dtype=dtype or seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]] = s
    return (out if batch_first else out.t().contiguous()), lengths


class PadCollate:
    """A ``collate_fn`` for ``(label, token ids)`` items (or bare token-id items): returns
    ``(labels, padded, lengths)`` (or ``(padded, lengths)``)."""

    def __init__(self, padding_value=0, batch_first=True, max_length=None):
        self.padding_value, self.batch_first, self.max_length = padding_value, batch_first, \
            max_length

    def __call__(self, batch):
        import ember
        pairs = isinstance(batch[0], (tuple, list)) and len(batch[0]) == 2 and \
            not isinstance(batch[0][0], (list, ember.Tensor))
        seqs = [b[1] for b in batch] if pairs else list(batch)
        padded, lengths = pad_batch(seqs, self.padding_value, self.batch_first,
                                    max_length=self.max_length)
        if pairs:
            return ember.tensor([b[0] for b in batch]), padded, lengths
        return padded, lengths


class BucketBatchSampler(Sampler):
    """Batches of indices whose sequences have similar lengths, so little padding is wasted.

    The indices are shuffled (with ``generator``), cut into pools of ``batch_size *
    bucket_size_multiplier``, each pool sorted by length and cut into batches; the batches are
    then shuffled. Without ``shuffle`` the whole dataset is sorted by length once.
    """

    def __init__(self, lengths, batch_size, bucket_size_multiplier=100, shuffle=True,
                 drop_last=False, generator=None):
        if batch_size <= 0:
            raise ValueError(f"BucketBatchSampler: batch_size must be positive, got "
                             f"{batch_size}")
        self.lengths = [int(x) for x in lengths]
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.pool = batch_size * max(1, bucket_size_multiplier)
        self.generator = generator

    def _perm(self, n):
        import ember
        return ember.randperm(n, generator=self.generator).tolist()

    def __iter__(self):
        n = len(self.lengths)
        order = self._perm(n) if self.shuffle else list(range(n))
        pools = [order[i:i + self.pool] for i in range(0, n, self.pool)] if self.shuffle \
            else [order]
        batches = []
        for pool in pools:
            pool = sorted(pool, key=lambda i: self.lengths[i])
            for i in range(0, len(pool), self.batch_size):
                b = pool[i:i + self.batch_size]
                if len(b) == self.batch_size or not self.drop_last:
                    batches.append(b)
        if self.shuffle:
            batches = [batches[i] for i in self._perm(len(batches))]
        yield from batches

    def __len__(self):
        n = len(self.lengths)
        if not self.shuffle:
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        (full, _), count = divmod(n, self.pool), 0
        sizes = [self.pool] * full + ([n - full * self.pool] if n % self.pool else [])
        for s in sizes:
            count += s // self.batch_size if self.drop_last else -(-s // self.batch_size)
        return count
