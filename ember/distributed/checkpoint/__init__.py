"""``ember.distributed.checkpoint``: sharded checkpoints (PyTorch's DCP API).

``save(state_dict, checkpoint_id=path)``: every rank writes the pieces of the tensors it holds
(its shards of DTensors; rank 0 writes plain tensors, which are replicated) into one data file,
and rank 0 writes ``.metadata`` (JSON: each tensor's global shape, dtype and the pieces, with
their offsets, in which file at which byte). ``load(state_dict, checkpoint_id=path)`` fills the
given state dict in place: each rank reads the parts of the saved pieces that overlap what it
holds, so a checkpoint saved at one world size loads at any other (re-sharding).
Saving is atomic: data files get names unique to the save, and the new ``.metadata`` (written to
a temporary file, then renamed) is the commit point, made only after every rank has written and
synced its file; until then the previous ``.metadata`` and the files it names stay as they were.
``async_save`` stages the state dict in memory and runs ``save`` in a background thread (its
collectives on a duplicate communicator); it returns a future of the ``Metadata``.
"""

from ._fs import FileSystemReader, FileSystemWriter, Metadata, async_save, load, save
from . import state_dict, state_dict_saver  # noqa: F401

__all__ = ["FileSystemReader", "FileSystemWriter", "Metadata", "load", "save",
           "async_save", "state_dict"]
