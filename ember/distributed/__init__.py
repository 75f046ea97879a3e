"""``ember.distributed``: not implemented yet (planned on MPI through mpi4py; see DESIGN.md).
``is_available()`` answers False, as PyTorch built without distributed support does."""

from .._not_yet import missing


def is_available():
    return False


def is_initialized():
    return False


init_process_group = missing("ember.distributed.init_process_group", " (the MPI backend is "
                             "planned)")
get_rank = missing("ember.distributed.get_rank", " (no process group)")
get_world_size = missing("ember.distributed.get_world_size", " (no process group)")
all_reduce = missing("ember.distributed.all_reduce")
broadcast = missing("ember.distributed.broadcast")
barrier = missing("ember.distributed.barrier")
