"""``emberrun`` / ``python -m ember.distributed.run``: torchrun's command line, on MPI.

    emberrun --nproc-per-node 2 train.py --epochs 3          # one node, 2 workers
    emberrun --standalone --nproc-per-node auto -m pkg.train  # a module, one per CPU core
    emberrun --nnodes 2 --nproc-per-node 4 --hostfile hosts train.py   # two nodes (see below)

The workers are started by ``mpiexec`` (the mpich wheel's Hydra) and each gets torchrun's
environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
MASTER_PORT, TORCHELASTIC_*), so ``init_process_group()`` with ``env://`` works unchanged.

Faults: an uncaught exception on any rank prints that rank's traceback and aborts the whole job
(MPI_Abort), a rank killed by a signal makes Hydra end the others, and the launcher exits with
a non-zero status. ``--max-restarts k`` runs the whole group again up to k times after a
failure (``TORCHELASTIC_RESTART_COUNT`` tells the script which attempt it is, so it can resume
from its checkpoint). On SIGINT/SIGTERM the launcher kills the whole job; no worker outlives it.

Several nodes: MPI starts every worker from one place. Run the launcher once, on the first
host, with a hostfile listing the hosts (one per line, ``host:slots`` allowed) and
passwordless ssh between them (Hydra's default launcher); ``--nnodes`` and
``--nproc-per-node`` give ``-n nnodes*nproc -ppn nproc``. ``--node-rank`` other than 0 has
nothing to do under MPI and is refused with that explanation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid


def _parser():
    p = argparse.ArgumentParser(
        prog="emberrun", description="Start a distributed ember job (torchrun's options) "
        "through MPI.")

    def opt(*names, **kw):
        # torchrun accepts both --nproc-per-node and --nproc_per_node
        more = [n.replace("-", "_") if n.startswith("--") else n for n in names]
        more = [m.replace("__", "--", 1) for m in more]
        p.add_argument(*dict.fromkeys(list(names) + more), **kw)
    opt("--nproc-per-node", default="1", help="workers per node: an integer or 'auto' "
        "(one per CPU core)")
    opt("--nnodes", default="1", help="number of nodes (or MIN:MAX; MAX is used)")
    opt("--node-rank", type=int, default=0)
    opt("--master-addr", default="127.0.0.1")
    opt("--master-port", type=int, default=29500)
    opt("--rdzv-endpoint", default="", help="host[:port]; sets MASTER_ADDR/MASTER_PORT")
    opt("--rdzv-backend", default="static")
    opt("--rdzv-id", default="none")
    opt("--rdzv-conf", default="")
    opt("--standalone", action="store_true", help="single node, a free local port")
    opt("--max-restarts", type=int, default=0)
    opt("--monitor-interval", type=float, default=0.1)
    opt("--start-method", default="spawn")
    opt("--role", default="default")
    opt("--log-dir", default=None)
    opt("--redirects", default="0")
    opt("--tee", default="0")
    opt("--local-addr", default=None)
    opt("--hostfile", default=None, help="MPI hostfile for multi-node runs (ember only)")
    opt("--mpiexec", default=None, help="the mpiexec to use (default: the mpich wheel's)")
    p.add_argument("-m", "--module", action="store_true",
                   help="run the target as a module (python -m)")
    opt("--no-python", action="store_true", help="run the target as an executable")
    opt("--run-path", action="store_true")
    p.add_argument("training_script")
    p.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return p


def find_mpiexec(explicit=None):
    """The mpiexec to start workers with: ``explicit``, the one beside this interpreter (the
    mpich wheel installs it there), or the first on PATH."""
    if explicit:
        return explicit
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(here):
        return here
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("emberrun: mpiexec not found; pip install 'ember[distributed]' "
                         "(mpi4py and the mpich wheel)")
    return found


def _nproc(value):
    if value == "auto":
        return os.cpu_count() or 1
    n = int(value)
    if n < 1:
        raise SystemExit(f"emberrun: --nproc-per-node must be >= 1, got {n}")
    return n


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(args):
    """The mpiexec command line and the environment shared by all workers."""
    nproc = _nproc(args.nproc_per_node)
    nnodes = int(str(args.nnodes).split(":")[-1])
    if args.node_rank != 0:
        raise SystemExit("emberrun: under MPI the whole job is started from one place: run "
                         "emberrun only on the first node (--node-rank 0) with --hostfile "
                         "listing every node")
    if nnodes > 1 and not args.hostfile:
        raise SystemExit(f"emberrun: --nnodes {nnodes} needs --hostfile (the MPI hostfile "
                         f"naming the {nnodes} hosts)")
    addr, port = args.master_addr, args.master_port
    if args.standalone:
        addr, port = "127.0.0.1", _free_port()
    elif args.rdzv_endpoint:
        host, _, p = args.rdzv_endpoint.rpartition(":") if ":" in args.rdzv_endpoint else \
            (args.rdzv_endpoint, "", "")
        addr, port = host or addr, int(p) if p else port
    world = nproc * nnodes
    cmd = [find_mpiexec(args.mpiexec), "-n", str(world)]
    if args.hostfile:
        cmd += ["-f", args.hostfile, "-ppn", str(nproc)]
    cmd += [sys.executable, "-m", "ember.distributed._bootstrap"]
    if args.module:
        cmd.append("-m")
    if args.no_python:
        cmd.append("--no-python")
    cmd += [args.training_script, *args.training_script_args]
    env = {"MASTER_ADDR": addr, "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
           "LOCAL_WORLD_SIZE": str(nproc), "EMBER_NPROC_PER_NODE": str(nproc),
           "TORCHELASTIC_RUN_ID": args.rdzv_id if args.rdzv_id != "none" else
           uuid.uuid4().hex[:12], "TORCHELASTIC_MAX_RESTARTS": str(args.max_restarts),
           "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}
    if world > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = "1"  # as torchrun: one thread per worker unless told
    return cmd, env


def _run_once(cmd, env):
    """Run mpiexec in its own process group; kill that group on our way out."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum, frame):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise SystemExit(128 + signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        try:  # anything Hydra left behind (it normally cleans up itself)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv=None):
    """Parse torchrun's options, start the job, restart it up to ``--max-restarts`` times."""
    args = _parser().parse_args(argv)
    cmd, extra = build(args)
    for attempt in range(args.max_restarts + 1):
        env = {**os.environ, **extra, "TORCHELASTIC_RESTART_COUNT": str(attempt)}
        rc = _run_once(cmd, env)
        if rc == 0:
            return 0
        sys.stderr.write(f"emberrun: the job failed with exit status {rc} (attempt "
                         f"{attempt + 1} of {args.max_restarts + 1})\n")
    return rc if rc > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
