"""``ember.distributed.device_mesh``: PyTorch's ``DeviceMesh`` on MPI communicators.

A mesh is an n-d array of global ranks. Each mesh dimension gets its own process group per
"line" of the mesh along that dimension (one ``MPI_Comm_split`` per dimension, every rank of the
default group taking part); a rank's group for dimension ``i`` holds the ranks that share all
its other coordinates. Sub-meshes (``mesh["tp"]``) reuse those groups, so slicing a mesh runs
no collective.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import distributed_c10d as c10d

__all__ = ["DeviceMesh", "init_device_mesh"]


def _mesh_array(mesh):
    from .._tensor import Tensor
    if isinstance(mesh, Tensor):
        arr = np.asarray(mesh._data)
    else:
        arr = np.asarray(mesh)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"DeviceMesh: mesh must hold integer ranks, got dtype {arr.dtype}")
    return arr.astype(np.int64)


_LIVE = weakref.WeakValueDictionary()  # layout -> a mesh made in this process


def _unpickle_mesh(device_type, mesh, mesh_dim_names):
    """A pickled DeviceMesh: the mesh of the same layout made in this process (so it shares
    its process groups), else the layout alone, whose ``get_group`` explains what to do;
    never a collective (only the unpickling rank may be running this)."""
    arr = _mesh_array(mesh)
    names = tuple(mesh_dim_names) if mesh_dim_names is not None else None
    live = _LIVE.get((str(device_type), tuple(arr.reshape(-1).tolist()), arr.shape, names))
    if live is not None:
        return live
    rank = c10d.get_rank() if c10d.is_initialized() else -1
    return DeviceMesh(device_type, arr, mesh_dim_names=names, _groups=[None] * arr.ndim,
                      _rank=rank, _unpickled=True)


class DeviceMesh:
    """An n-d arrangement of ranks with one process group per mesh dimension.

    ``DeviceMesh("cpu", [[0, 1], [2, 3]], mesh_dim_names=("dp", "tp"))`` must be made on every
    rank of the default group (it is collective). Ranks outside the mesh get a mesh whose
    ``get_coordinate()`` is None.
    """

    _unpickled = False  # made by unpickling without a live mesh of its layout

    def __init__(self, device_type, mesh, *, mesh_dim_names=None, _init_backend=True,
                 _groups=None, _rank=None, _unpickled=False):
        self.device_type = str(device_type)
        if self.device_type not in ("cpu", "meta"):
            raise NotImplementedError(
                f"DeviceMesh: device type {device_type!r} is not supported: ember's process "
                f"groups run on MPI over CPU memory (use 'cpu')")
        arr = _mesh_array(mesh)
        if arr.ndim == 0:
            raise ValueError("DeviceMesh: mesh must have at least one dimension")
        flat = arr.reshape(-1).tolist()
        if len(set(flat)) != len(flat):
            raise ValueError(f"DeviceMesh: mesh {arr.tolist()} has duplicate ranks")
        if mesh_dim_names is not None:
            mesh_dim_names = tuple(mesh_dim_names)
            if len(mesh_dim_names) != arr.ndim:
                raise ValueError(
                    f"DeviceMesh: mesh_dim_names {mesh_dim_names} has {len(mesh_dim_names)} "
                    f"names, the mesh has {arr.ndim} dimensions (shape {tuple(arr.shape)})")
            if len(set(mesh_dim_names)) != len(mesh_dim_names):
                raise RuntimeError(f"DeviceMesh: mesh_dim_names {mesh_dim_names} must be "
                                   f"unique")
        self._mesh = arr
        self.mesh_dim_names = mesh_dim_names
        if _groups is not None:
            self._groups = list(_groups)
            self._rank = c10d.get_rank() if _rank is None else _rank
            self._unpickled = _unpickled
        else:
            if not c10d.is_initialized():
                c10d.init_process_group()
            world = c10d._world()
            n = world.size()
            for r in flat:
                if not 0 <= r < n:
                    raise ValueError(f"DeviceMesh: rank {r} of mesh {arr.tolist()} is outside "
                                     f"the default group's ranks [0, {n - 1}]")
            self._rank = world.rank()
            self._groups = [self._split(world, d) for d in range(arr.ndim)]
        where = np.argwhere(arr == self._rank)
        self._coordinate = [int(c) for c in where[0]] if len(where) else None
        if not self._unpickled:
            _LIVE.setdefault(self._key(), self)

    def _key(self):
        return (self.device_type, tuple(self._mesh.reshape(-1).tolist()), self._mesh.shape,
                self.mesh_dim_names)

    def __reduce__(self):
        # pickled by its layout; unpickling finds the mesh of that layout made in the
        # loading process (its process groups), see _unpickle_mesh
        return (_unpickle_mesh, (self.device_type, self._mesh.tolist(), self.mesh_dim_names))

    def _split(self, world, dim):
        """This rank's group along mesh dimension ``dim`` (one communicator split)."""
        MPI = c10d._mpi()
        arr = self._mesh
        where = np.argwhere(arr == world.rank())
        if not len(where):
            world.comm.Split(MPI.UNDEFINED, 0)
            return None
        coord = list(where[0])
        # The colour names the line: this rank's coordinates on every other dimension.
        other = [c for i, c in enumerate(coord) if i != dim]
        shape = [s for i, s in enumerate(arr.shape) if i != dim]
        color = int(np.ravel_multi_index(other, shape)) if other else 0
        comm = world.comm.Split(color, int(coord[dim]))
        comm.Set_errhandler(MPI.ERRORS_RETURN)
        idx = [slice(None) if i == dim else int(c) for i, c in enumerate(coord)]
        ranks = arr[tuple(idx)].tolist()
        c10d._GROUP_COUNT += 1
        name = (self.mesh_dim_names[dim] if self.mesh_dim_names else f"dim{dim}")
        return c10d.ProcessGroup(comm, ranks, world.backend, f"mesh_{name}_{c10d._GROUP_COUNT}")

    # -------------------------------------------------------------- queries
    @property
    def mesh(self):
        """The mesh of ranks as an int64 Tensor."""
        from .._tensor import _make
        return _make(self._mesh.copy())

    @property
    def ndim(self):
        return self._mesh.ndim

    @property
    def shape(self):
        return tuple(self._mesh.shape)

    def size(self, mesh_dim=None):
        """The number of ranks in the mesh, or along ``mesh_dim``."""
        if mesh_dim is None:
            return int(self._mesh.size)
        return int(self._mesh.shape[self._dim(mesh_dim)])

    def _dim(self, mesh_dim):
        if isinstance(mesh_dim, str):
            if not self.mesh_dim_names or mesh_dim not in self.mesh_dim_names:
                raise KeyError(f"Mesh dimension '{mesh_dim}' does not exist. Available mesh "
                               f"dimensions are: mesh_dim_names={self.mesh_dim_names}")
            return self.mesh_dim_names.index(mesh_dim)
        d = int(mesh_dim)
        if not -self.ndim <= d < self.ndim:
            raise IndexError(f"mesh_dim {mesh_dim} is out of range for a {self.ndim}-d mesh")
        return d % self.ndim

    def get_group(self, mesh_dim=None):
        """The process group of this rank along ``mesh_dim`` (an index or a name)."""
        if mesh_dim is None:
            if self.ndim != 1:
                raise RuntimeError(
                    f"Found the DeviceMesh have {self.ndim} dimensions. Optional kwarg "
                    f"`mesh_dim` needs to be specified when device_mesh.ndim > 1.")
            mesh_dim = 0
        g = self._groups[self._dim(mesh_dim)]
        if g is None and self._unpickled:
            raise RuntimeError(
                f"{self!r} was unpickled in a process where no mesh of that layout exists, so "
                f"it has no process groups: create it (init_device_mesh / DeviceMesh, on "
                f"every rank) before loading, then load again")
        if g is None:
            raise RuntimeError(f"rank {self._rank} is not part of the mesh {self._mesh.tolist()}")
        return g

    def get_all_groups(self):
        return [self.get_group(i) for i in range(self.ndim)]

    def get_rank(self):
        """This process's global rank."""
        return self._rank

    def get_local_rank(self, mesh_dim=None):
        """This rank's coordinate along ``mesh_dim``."""
        if mesh_dim is None:
            if self.ndim != 1:
                raise RuntimeError(
                    f"Found the DeviceMesh have {self.ndim} dimensions. Optional kwarg "
                    f"`mesh_dim` needs to be specified when device_mesh.ndim > 1.")
            mesh_dim = 0
        if self._coordinate is None:
            raise RuntimeError(f"rank {self._rank} is not part of the mesh {self._mesh.tolist()}")
        return self._coordinate[self._dim(mesh_dim)]

    def get_coordinate(self):
        """This rank's coordinates in the mesh (None when it is not part of it)."""
        return None if self._coordinate is None else list(self._coordinate)

    # -------------------------------------------------------------- sub-meshes
    def __getitem__(self, names):
        """The sub-mesh of the named dimensions that contains this rank (no collective)."""
        if self.mesh_dim_names is None:
            raise RuntimeError("Cannot slice a DeviceMesh without mesh_dim_names.")
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        dims = [self._dim(n) for n in names]
        if len(set(dims)) != len(dims):
            raise KeyError(f"Mesh dimensions {names} repeat a dimension")
        if dims == list(range(self.ndim)):
            return self
        if self._coordinate is None:
            raise RuntimeError(f"rank {self._rank} is not part of the mesh {self._mesh.tolist()}")
        keep = set(dims)
        idx = tuple(slice(None) if i in keep else c for i, c in enumerate(self._coordinate))
        sub = self._mesh[idx]
        kept_order = [i for i in range(self.ndim) if i in keep]
        sub = np.transpose(sub, [kept_order.index(d) for d in dims])
        return DeviceMesh(self.device_type, sub, mesh_dim_names=names,
                          _groups=[self._groups[d] for d in dims])

    def __eq__(self, other):
        if not isinstance(other, DeviceMesh):
            return False
        return (self is other or (self._mesh.shape == other._mesh.shape
                                  and np.array_equal(self._mesh, other._mesh)
                                  and self.mesh_dim_names == other.mesh_dim_names))

    def __hash__(self):
        return hash((tuple(self._mesh.reshape(-1).tolist()), self._mesh.shape,
                     self.mesh_dim_names))

    def __repr__(self):
        names = f", mesh_dim_names={self.mesh_dim_names}" if self.mesh_dim_names else ""
        return f"DeviceMesh('{self.device_type}', {self._mesh.tolist()}{names})"


def init_device_mesh(device_type, mesh_shape, *, mesh_dim_names=None, backend_override=None):
    """A mesh of ``mesh_shape`` over ranks ``0..prod(mesh_shape)-1`` in row-major order
    (initialises the default process group when needed). Collective: call on every rank."""
    mesh_shape = tuple(int(s) for s in mesh_shape)
    if mesh_dim_names is not None:
        if len(mesh_dim_names) != len(mesh_shape):
            raise RuntimeError(
                f"mesh_shape and mesh_dim_names should have same length! Found "
                f"len(mesh_dim_names): {len(mesh_dim_names)} and len(mesh_shape):"
                f"{len(mesh_shape)}.")
        if len(set(mesh_dim_names)) != len(mesh_dim_names):
            raise RuntimeError(f"Each mesh_dim_name must be unique. Found repeated "
                               f"mesh_dim_name in mesh_dim_names {tuple(mesh_dim_names)}")
    if not c10d.is_initialized():
        c10d.init_process_group()
    n = c10d.get_world_size()
    total = int(np.prod(mesh_shape)) if mesh_shape else 1
    if total != n:
        raise RuntimeError(f"init_device_mesh: mesh_shape {mesh_shape} holds {total} ranks, the "
                           f"world size is {n}")
    return DeviceMesh(device_type, np.arange(total).reshape(mesh_shape),
                      mesh_dim_names=mesh_dim_names)
