"""The file format and the save/load collectives of ``ember.distributed.checkpoint``.

Layout of a checkpoint directory::

    .metadata                 JSON: {"version", "save_id", "world_size", "entries": {key: ...}}
    __<rank>_<save_id>.distcp  raw bytes of the tensor pieces that rank wrote

A key is the path of a value in the (nested) state dict, joined with dots. A tensor entry has
``shape``, ``dtype`` and ``chunks`` (``file``, byte ``offset``, ``offsets`` and ``sizes`` of the
piece in the global tensor); any other value is stored in the JSON (tuples tagged).
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np

from ..._tensor import Tensor, _bump_version
from .. import distributed_c10d as c10d

__all__ = ["FileSystemReader", "FileSystemWriter", "Metadata", "async_save", "load",
           "save"]

_META = ".metadata"


class Metadata:
    """What ``.metadata`` says: ``state_dict_metadata`` maps each key to its entry."""

    def __init__(self, raw):
        self.raw = raw
        self.state_dict_metadata = raw["entries"]
        self.world_size = raw.get("world_size")


class FileSystemWriter:
    """Write a checkpoint into directory ``path`` (created if needed)."""

    def __init__(self, path, single_file_per_rank=True, sync_files=True, thread_count=1,
                 per_thread_copy_ahead=10_000_000, cache_staged_state_dict=False,
                 overwrite=True):
        self.path = os.fspath(path)
        self.sync_files = sync_files
        self.overwrite = overwrite


class FileSystemReader:
    """Read a checkpoint from directory ``path``."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def read_metadata(self):
        """The checkpoint's ``Metadata`` (raises FileNotFoundError naming the path)."""
        name = os.path.join(self.path, _META)
        if not os.path.exists(name):
            raise FileNotFoundError(f"no checkpoint at {self.path!r}: {_META} is missing (a save "
                                    "that did not finish leaves no metadata)")
        with open(name) as f:
            return Metadata(json.load(f))


# ------------------------------------------------------------------ flattening
def _flatten(obj, prefix, out):
    """``{dotted key: leaf}``: dicts and tensor-holding lists are walked, the rest are leaves."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}{k}.", out)
    elif isinstance(obj, (list, tuple)) and any(_has_tensor(v) for v in obj):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}{i}.", out)
    else:
        out[prefix[:-1]] = obj
    return out


def _has_tensor(obj):
    if isinstance(obj, Tensor):
        return True
    if isinstance(obj, dict):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(v) for v in obj)
    return False


def _set_path(root, key, value):
    """Replace the leaf at dotted ``key`` of the nested ``root`` (walking as ``_flatten``)."""
    node, parts = root, []
    # walk greedily: dict keys may themselves contain dots (module FQNs)
    rest = key
    while True:
        if isinstance(node, dict):
            match = None
            for k in node:
                ks = str(k)
                if rest == ks or rest.startswith(ks + "."):
                    if match is None or len(ks) > len(str(match)):
                        match = k
            if match is None:
                raise KeyError(key)
            if rest == str(match):
                node[match] = value
                return
            node, rest = node[match], rest[len(str(match)) + 1:]
        elif isinstance(node, list):
            i, _, tail = rest.partition(".")
            if not tail:
                node[int(i)] = value
                return
            node, rest = node[int(i)], tail
        else:
            raise KeyError(key)
        parts.append(rest)


def _encode(v, key):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x, key) for x in v]}
    if isinstance(v, list):
        return [_encode(x, key) for x in v]
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            return {"__items__": [[_encode(k, key), _encode(x, key)] for k, x in v.items()]}
        return {k: _encode(x, key) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"checkpoint: cannot save {key!r}: a {type(v).__name__} is neither a "
                    "tensor nor a plain value (None, bool, int, float, str, list, tuple, dict)")


def _decode(v):
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_decode(x) for x in v["__tuple__"])
        if set(v) == {"__items__"}:
            return {_decode(k): _decode(x) for k, x in v["__items__"]}
        return {k: _decode(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------ pieces
def _is_dtensor(t):
    return hasattr(t, "_spec") and hasattr(t, "_local")


class _Staged(Tensor):
    """A tensor of a state dict staged for ``async_save``: its ``_region`` taken when the save
    was asked for, over a private copy of the values (training may go on changing them)."""

    def __init__(self, region):  # (no Tensor state: only ``_region`` reads it)
        self.region = region


def _stage(state_dict):
    """A flat copy of ``state_dict`` for a save that runs later: tensors as ``_Staged``
    copies of the pieces this rank holds, other values deep-copied (and checked now)."""
    import copy
    staged = {}
    for key, v in _flatten(state_dict, "", {}).items():
        if isinstance(v, Tensor):
            gshape, lshape, offs, arr, writer = _region(v)
            staged[key] = _Staged((gshape, lshape, offs, np.array(arr, copy=True), writer))
        else:
            _encode(v, key)
            staged[key] = copy.deepcopy(v)
    return staged


def _region(t):
    """(global shape, local shape, offsets, local array, whether this rank writes it)."""
    if type(t) is _Staged:
        return t.region
    if _is_dtensor(t):
        from ..tensor import Partial, Replicate
        spec = t._spec
        if any(isinstance(p, Partial) for p in spec.placements):
            raise NotImplementedError("checkpoint: a Partial DTensor must be reduced "
                                      "(redistribute to Replicate or Shard) before saving")
        shape, offsets = spec.local_shape_and_offset()
        coord = spec.mesh.get_coordinate()
        writer = all(coord[i] == 0 for i, p in enumerate(spec.placements)
                     if isinstance(p, Replicate))
        return spec.shape, shape, offsets, t._local._data, writer
    a = t._data
    return tuple(a.shape), tuple(a.shape), (0,) * a.ndim, a, None


def _dtype_name(dt):
    return np.dtype(dt).name


def _group_info(process_group, no_dist):
    if no_dist or not c10d.is_initialized():
        return None, 0, 1
    pg = c10d._group(process_group)
    return process_group, pg.rank(), pg.size()


def _path_of(checkpoint_id, storage, what):
    if storage is not None:
        return storage.path
    if checkpoint_id is None:
        raise ValueError(f"{what}: give checkpoint_id= (a directory) or a storage "
                         f"{'writer' if what == 'save' else 'reader'}")
    return os.fspath(checkpoint_id)


def save(state_dict, *, checkpoint_id=None, storage_writer=None, planner=None,
         process_group=None, no_dist=False):
    """Save ``state_dict`` (nested dicts of tensors, DTensors and plain values) as a sharded
    checkpoint in directory ``checkpoint_id`` (collective over ``process_group``). Returns the
    checkpoint's ``Metadata``."""
    if planner is not None:
        raise NotImplementedError("checkpoint.save(planner=...): custom planners are not "
                                  "supported")
    path = _path_of(checkpoint_id, storage_writer, "save")
    sync = storage_writer.sync_files if storage_writer is not None else True
    group, rank, world = _group_info(process_group, no_dist)
    for key, v in _flatten(state_dict, "", {}).items():  # bad values fail alike on every rank
        if not isinstance(v, Tensor):
            _encode(v, key)
    ids = [uuid.uuid4().hex[:12] if rank == 0 else None]
    if world > 1:
        c10d.broadcast_object_list(ids, src=c10d.get_global_rank(c10d._group(group), 0),
                                   group=group)
    save_id = ids[0]
    fname = f"__{rank}_{save_id}.distcp"
    entries, error = {}, None
    try:
        os.makedirs(path, exist_ok=True)
        entries = _write_rank_file(state_dict, os.path.join(path, fname), fname, rank, sync)
    except Exception as e:  # every rank must still reach the gather below
        error = f"rank {rank}: {type(e).__name__}: {e}"
    if world > 1:
        every = [None] * world if rank == 0 else None
        c10d.gather_object((entries, error), every,
                           dst=c10d.get_global_rank(c10d._group(group), 0), group=group)
    else:
        every = [(entries, error)]
    outcome = [None]
    if rank == 0:
        errors = [e for _, e in every if e]
        if errors:
            outcome[0] = "; ".join(errors)
        else:
            try:
                meta = _merge(every, save_id, world)
                _commit(path, meta)
                outcome[0] = "ok"
            except Exception as e:
                outcome[0] = f"rank 0: {type(e).__name__}: {e}"
    if world > 1:
        c10d.broadcast_object_list(outcome, src=c10d.get_global_rank(c10d._group(group), 0),
                                   group=group)
    if outcome[0] != "ok":
        if error is not None and rank != 0:
            raise RuntimeError(f"checkpoint.save to {path!r} failed: {outcome[0]}")
        raise RuntimeError(f"checkpoint.save to {path!r} failed (the previous checkpoint, if "
                           f"any, is unchanged): {outcome[0]}")
    return FileSystemReader(path).read_metadata()


_ASYNC: dict = {}  # "pool": the one thread that runs async saves; id(group) -> its twin


def async_save(state_dict, *, checkpoint_id=None, storage_writer=None, planner=None,
               process_group=None, async_checkpointer_type=None, async_stager=None,
               no_dist=False, use_collectives=True):
    """``save`` in a background thread: the state dict is staged first (its tensors copied,
    so training may change them at once), then written as ``save`` writes it, with the same
    atomic commit. Returns a ``concurrent.futures.Future`` whose result is the checkpoint's
    ``Metadata`` (or the error ``save`` raised). Collective: every rank of the group calls it
    in the same order. The background save runs its collectives on a duplicate of the
    group's communicator, so the training's own collectives can go on meanwhile."""
    if planner is not None:
        raise NotImplementedError("checkpoint.async_save(planner=...): custom planners are not "
                                  "supported")
    if async_stager is not None:
        raise NotImplementedError("checkpoint.async_save(async_stager=...): ember stages into "
                                  "memory itself")
    kind = getattr(async_checkpointer_type, "value", async_checkpointer_type)
    if kind not in (None, "thread"):
        raise NotImplementedError(f"checkpoint.async_save(async_checkpointer_type={kind!r}): "
                                  "only the thread kind is supported")
    if not use_collectives:
        raise NotImplementedError("checkpoint.async_save(use_collectives=False) is not "
                                  "supported")
    path = _path_of(checkpoint_id, storage_writer, "async_save")
    staged = _stage(state_dict)
    group, rank, world = _group_info(process_group, no_dist)
    twin = _twin_group(group) if world > 1 else None
    pool = _ASYNC.get("pool")
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor
        # one thread: saves run in the order they were asked for, on every rank alike
        pool = _ASYNC["pool"] = ThreadPoolExecutor(1, thread_name_prefix="ember-dcp-save")
    fut = pool.submit(save, staged, checkpoint_id=path, storage_writer=storage_writer,
                      process_group=twin, no_dist=no_dist or world == 1)
    pending = _ASYNC.setdefault("pending", [])
    pending[:] = [f for f in pending if not f.done()] + [fut]
    return fut


def _wait_pending():
    """Let every async save still running finish, then free their communicators
    (``destroy_process_group`` calls this first); their errors stay in their futures."""
    from concurrent.futures import wait
    wait(_ASYNC.pop("pending", ()))
    for key in [k for k in _ASYNC if k != "pool"]:
        try:
            _ASYNC.pop(key).comm.Free()
        except Exception:  # a communicator the job already tore down
            pass


def _twin_group(group):
    """A process group over the same ranks as ``group`` with its own communicator (made
    once, collectively, on first use)."""
    pg = c10d._group(group)
    twin = _ASYNC.get(id(pg))
    if twin is None:
        comm = pg.comm.Dup()
        comm.Set_errhandler(c10d._mpi().ERRORS_RETURN)
        twin = _ASYNC[id(pg)] = c10d.ProcessGroup(comm, pg.ranks, pg.backend,
                                                  f"{pg.group_name}.checkpoint")
    return twin


def _write_rank_file(state_dict, name, fname, rank, sync):
    """Write this rank's pieces into ``name``; returns their entries."""
    entries = {}
    flat = _flatten(state_dict, "", {})
    tmp = name + ".tmp"
    with open(tmp, "wb") as f:
        pos = 0
        for key, v in flat.items():
            if not isinstance(v, Tensor):
                if rank == 0:
                    entries[key] = {"kind": "object", "value": _encode(v, key)}
                continue
            gshape, lshape, offs, arr, writer = _region(v)
            e = {"kind": "tensor", "shape": list(gshape), "dtype": _dtype_name(arr.dtype),
                 "chunks": []}
            if writer is None:  # a plain tensor: replicated, rank 0 writes it
                writer = rank == 0
            if writer and (arr.size or (rank == 0 and int(np.prod(gshape)) == 0)):
                data = np.ascontiguousarray(arr).tobytes()
                _write_piece(f, data, key)
                e["chunks"].append({"file": fname, "offset": pos, "offsets": list(offs),
                                    "sizes": list(lshape)})
                pos += len(data)
            entries[key] = e
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, name)
    return entries


def _write_piece(f, data, key):
    f.write(data)


def _merge(every, save_id, world):
    merged = {}
    for entries, _ in every:
        for key, e in entries.items():
            m = merged.get(key)
            if m is None:
                merged[key] = dict(e, chunks=list(e.get("chunks", ())))
            elif e["kind"] == "tensor":
                if m["kind"] != "tensor" or m["shape"] != e["shape"]:
                    raise RuntimeError(f"checkpoint: ranks disagree on {key!r}: shape "
                                       f"{m.get('shape')} vs {e['shape']}")
                m["chunks"].extend(e["chunks"])
    return {"version": 1, "save_id": save_id, "world_size": world, "entries": merged}


def _commit(path, meta):
    """Make ``meta`` the checkpoint (one atomic rename), then drop files it does not name."""
    name = os.path.join(path, _META)
    tmp = name + f".tmp{meta['save_id']}"
    with open(tmp, "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, name)
    keep = {c["file"] for e in meta["entries"].values() for c in e.get("chunks", ())}
    for f in os.listdir(path):
        if (f.endswith(".distcp") or ".distcp.tmp" in f or f.startswith(_META + ".tmp")) \
                and f not in keep:
            try:
                os.remove(os.path.join(path, f))
            except OSError:
                pass


def load(state_dict, *, checkpoint_id=None, storage_reader=None, planner=None,
         process_group=None, no_dist=False):
    """Fill ``state_dict`` in place from the checkpoint: tensors (and each rank's shards of
    DTensors) get the saved values, whatever world size saved them; plain values are
    replaced."""
    if planner is not None:
        raise NotImplementedError("checkpoint.load(planner=...): custom planners are not "
                                  "supported")
    path = _path_of(checkpoint_id, storage_reader, "load")
    meta = FileSystemReader(path).read_metadata()
    entries = meta.state_dict_metadata
    flat = _flatten(state_dict, "", {})
    missing = [k for k in flat if k not in entries]
    if missing:
        raise RuntimeError(f"checkpoint.load from {path!r}: missing keys in the checkpoint: "
                           f"{missing}")
    files = {}
    try:
        for key, v in flat.items():
            e = entries[key]
            if not isinstance(v, Tensor):
                if e["kind"] != "object":
                    raise RuntimeError(f"checkpoint.load: {key!r} is a tensor in the checkpoint "
                                       f"but a {type(v).__name__} in the state dict")
                _set_path(state_dict, key, _decode(e["value"]))
                continue
            if e["kind"] != "tensor":
                raise RuntimeError(f"checkpoint.load: {key!r} is a plain value in the "
                                   "checkpoint but a tensor in the state dict")
            gshape, lshape, offs, arr, _ = _region(v)
            if list(gshape) != e["shape"]:
                raise RuntimeError(f"checkpoint.load: {key!r} has shape {tuple(e['shape'])} in "
                                   f"the checkpoint but {tuple(gshape)} in the state dict")
            _fill(arr, lshape, offs, e, path, files, key)
            _bump_version(v._local if _is_dtensor(v) else v)
    finally:
        for f in files.values():
            f.close()
    return None


def _fill(arr, lshape, offs, e, path, files, key):
    """Copy the parts of the saved pieces that overlap ``[offs, offs + lshape)`` into ``arr``."""
    dtype = np.dtype(e["dtype"])
    filled = 0
    for c in e["chunks"]:
        lo = [max(a, b) for a, b in zip(offs, c["offsets"])]
        hi = [min(a + n, b + m) for a, n, b, m in zip(offs, lshape, c["offsets"], c["sizes"])]
        if any(h <= lo_ for lo_, h in zip(lo, hi)) and arr.ndim:
            continue
        f = files.get(c["file"])
        if f is None:
            f = files[c["file"]] = open(os.path.join(path, c["file"]), "rb")
        count = int(np.prod(c["sizes"], dtype=np.int64))
        f.seek(c["offset"])
        piece = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
        if piece.size != count:
            raise RuntimeError(f"checkpoint.load: {c['file']} is truncated (reading {key!r})")
        piece = piece.reshape(c["sizes"])
        src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, c["offsets"]))
        dst = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offs))
        arr[dst] = piece[src]
        filled += int(np.prod([b - a for a, b in zip(lo, hi)], dtype=np.int64))
    want = int(np.prod(lshape, dtype=np.int64))
    if filled != want:
        raise RuntimeError(f"checkpoint.load: the checkpoint holds {filled} of the {want} "
                           f"elements this rank needs of {key!r}")
