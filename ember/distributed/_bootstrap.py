"""What every worker of ``emberrun`` runs first: ``python -m ember.distributed._bootstrap
[-m] target args...`` under mpiexec.

It starts MPI, gives the process torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, GROUP_RANK, ROLE_RANK...) from its MPI rank, installs the hook that aborts the
whole job on an uncaught exception (so the other ranks never wait forever), and then runs the
user's script or module as ``__main__``.
"""

from __future__ import annotations

import os
import runpy
import sys


def torchrun_env(rank, world_size, nproc_per_node):
    """The environment torchrun gives worker ``rank`` of ``world_size`` (``nproc_per_node``
    per node, ranks filled node by node)."""
    local = rank % nproc_per_node
    node = rank // nproc_per_node
    return {"RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(nproc_per_node), "GROUP_RANK": str(node),
            "GROUP_WORLD_SIZE": str(max(1, world_size // nproc_per_node)),
            "ROLE_RANK": str(rank), "ROLE_WORLD_SIZE": str(world_size), "ROLE_NAME": "default"}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    as_module = bool(argv) and argv[0] == "-m"
    if as_module:
        argv = argv[1:]
    no_python = bool(argv) and argv[0] == "--no-python"
    if not argv:
        raise SystemExit("usage: python -m ember.distributed._bootstrap [-m] target [args...]")
    from mpi4py import MPI

    from .distributed_c10d import _install_abort_hook
    comm = MPI.COMM_WORLD
    nproc = int(os.environ.get("EMBER_NPROC_PER_NODE", comm.Get_size()))
    os.environ.update(torchrun_env(comm.Get_rank(), comm.Get_size(), nproc))
    if comm.Get_size() > 1:
        _install_abort_hook(comm)
    if no_python:
        os.execvp(argv[1], argv[1:])
    target, sys.argv = argv[0], argv
    if as_module:
        sys.path.insert(0, os.getcwd())
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
