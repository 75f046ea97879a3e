"""The default DDP communication hooks: plain all-reduce, and all-reduce of a float16 or
bfloat16 copy (half the bytes on the wire, decompressed into the bucket afterwards).

A hook is ``hook(state, bucket) -> Future`` whose value is the bucket's averaged flat
gradient; ``state`` is the process group (or None for the default group).
"""

from __future__ import annotations

from ... import distributed_c10d as c10d


def _group(state):
    return state if isinstance(state, c10d.ProcessGroup) else None


def _allreduce_fut(process_group, tensor):
    """Average ``tensor`` over the group, asynchronously: divide first, then sum."""
    n = c10d.get_world_size(process_group)
    tensor.div_(n)
    work = c10d.all_reduce(tensor, group=process_group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def allreduce_hook(process_group, bucket):
    """Average the bucket's gradients over the group (what DDP does without a hook)."""
    return _allreduce_fut(_group(process_group), bucket.buffer())


def _compress_hook(dtype, process_group, bucket):
    group = _group(process_group)
    buffer = bucket.buffer()
    compressed = buffer.to(dtype)
    fut = _allreduce_fut(group, compressed)

    def decompress(f):
        buffer.copy_(f.value())
        return buffer
    return fut.then(decompress)


def fp16_compress_hook(process_group, bucket):
    """All-reduce a float16 copy of the bucket (half the bytes), then write it back."""
    import ember
    return _compress_hook(ember.float16, process_group, bucket)


def bf16_compress_hook(process_group, bucket):
    """All-reduce a bfloat16 copy of the bucket (half the bytes), then write it back."""
    import ember
    return _compress_hook(ember.bfloat16, process_group, bucket)
