"""``torch.PyTorchFileReader`` / ``PyTorchFileWriter``: the record-level view of PyTorch's
checkpoint archive (a zip whose entries sit under one top-level folder, ``archive/`` by
default: ``data.pkl``, ``data/0``, ``version``, ...). ``ember.save``/``ember.load`` write and
read the same format; these classes serve libraries that read records themselves
(Lightning's lazy loader)."""

from __future__ import annotations


import os
import zipfile

__all__ = ["PyTorchFileReader", "PyTorchFileWriter"]


class PyTorchFileReader:
    """Records of a checkpoint archive, by name relative to its top-level folder."""

    def __init__(self, name_or_buffer):
        if isinstance(name_or_buffer, (str, os.PathLike)):
            name_or_buffer = os.fspath(name_or_buffer)
        self._zip = zipfile.ZipFile(name_or_buffer, "r")
        names = self._zip.namelist()
        if not names or "/" not in names[0]:
            raise RuntimeError("PytorchStreamReader failed locating file: not a PyTorch zip "
                               "archive (no top-level folder)")
        self._prefix = names[0].split("/", 1)[0] + "/"

    def get_all_records(self):
        """Every record name, relative to the archive folder."""
        n = len(self._prefix)
        return [name[n:] for name in self._zip.namelist() if name.startswith(self._prefix)]

    def has_record(self, name):
        return self._prefix + name in self._zip.NameToInfo

    def get_record(self, name):
        """The bytes of record ``name``."""
        try:
            return self._zip.read(self._prefix + name)
        except KeyError:
            raise RuntimeError(f"PytorchStreamReader failed locating file {name}: file not "
                               f"found") from None

    def get_record_offset(self, name):
        """Where record ``name``'s bytes start in the file (records are stored uncompressed)."""
        info = self._zip.getinfo(self._prefix + name)
        self._zip.fp.seek(info.header_offset + 26)
        n_name, n_extra = (int.from_bytes(self._zip.fp.read(2), "little") for _ in range(2))
        return info.header_offset + 30 + n_name + n_extra

    def get_storage_from_record(self, name, numel, dtype):
        """Record ``name``'s first ``numel`` bytes as an ``UntypedStorage`` (a ``uint8``
        tensor's storage when ``dtype`` is a tensor dtype)."""
        import numpy as np

        from . import from_numpy, uint8
        data = np.frombuffer(bytearray(self.get_record(name)), dtype=np.uint8)[:numel]
        t = from_numpy(data)
        if dtype is not None and not isinstance(dtype, type):
            return t.view(uint8)
        return t.untyped_storage()

    def serialization_id(self):
        return ""

    def get_record_names(self):
        return self.get_all_records()


class PyTorchFileWriter:
    """Writes a checkpoint archive record by record, uncompressed, under ``archive/`` (or the
    file's stem, as PyTorch names the folder), into a temporary file renamed on
    ``write_end_of_file`` so a reader never sees half a file."""

    def __init__(self, file_name, compute_crc32=True, storage_alignment=64):
        self._path = None
        if isinstance(file_name, (str, os.PathLike)):
            self._path = os.fspath(file_name)
            self._target = f"{self._path}.tmp{os.getpid()}"
            self._prefix = "archive/"
        else:
            self._target = file_name
            self._prefix = "archive/"
        self._zip = zipfile.ZipFile(self._target, "w", zipfile.ZIP_STORED)
        self._written = []

    def write_record(self, name, data, size=None):
        """Add record ``name`` with ``data`` (bytes, or a buffer of which ``size`` bytes)."""
        if not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast("B").tobytes()
        if size is not None:
            data = bytes(data[:size])
        self._zip.writestr(self._prefix + name, bytes(data))
        self._written.append(name)

    def get_all_written_records(self):
        return set(self._written)

    def archive_name(self):
        return self._prefix.rstrip("/")

    def set_min_version(self, version):
        pass

    def write_end_of_file(self):
        """Finish the archive (and move it into place)."""
        if "version" not in self._written:
            self.write_record("version", b"3\n")
        self._zip.close()
        if self._path is not None:
            os.replace(self._target, self._path)



