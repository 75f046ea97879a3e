"""``ember.text.functional``: the functions behind ``ember.text.transforms``."""

from __future__ import annotations


def _nested(x):
    return len(x) > 0 and isinstance(x[0], (list, tuple))


def to_tensor(input, padding_value=None, dtype=None):
    """Token ids -> a tensor: a list gives 1D; a list of lists gives 2D, padded on the right
    with ``padding_value`` (required when the lengths differ)."""
    import ember
    dtype = dtype or ember.long
    if isinstance(input, ember.Tensor):
        return input.to(dtype)
    if not isinstance(input, (list, tuple)):
        raise TypeError(f"to_tensor: expected a list of ints or a list of lists, got "
                        f"{type(input).__name__}")
    if not _nested(input):
        return ember.tensor(list(input), dtype=dtype)
    if padding_value is None:
        lengths = {len(x) for x in input}
        if len(lengths) > 1:
            raise ValueError(f"to_tensor: sequences have different lengths {sorted(lengths)}; "
                             f"pass padding_value to pad them")
        return ember.tensor([list(x) for x in input], dtype=dtype)
    width = max(len(x) for x in input)
    return ember.tensor([list(x) + [padding_value] * (width - len(x)) for x in input],
                        dtype=dtype)


def truncate(input, max_seq_len):
    """Keep the first ``max_seq_len`` tokens of a sequence, or of each sequence in a list."""
    if _nested(input):
        return [list(x)[:max_seq_len] for x in input]
    return list(input)[:max_seq_len]


def add_token(input, token_id, begin=True):
    """Put ``token_id`` (an int or a str) at the start (or end) of a sequence or of each one."""
    if _nested(input):
        return [add_token(x, token_id, begin) for x in input]
    return [token_id] + list(input) if begin else list(input) + [token_id]


def str_to_int(input):
    """Strings of digits -> ints (also inside a list of lists)."""
    if _nested(input):
        return [[int(x) for x in row] for row in input]
    return [int(x) for x in input]
