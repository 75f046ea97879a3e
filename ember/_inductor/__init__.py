"""``ember._inductor``: PyTorch's AOTInductor packaging entry points over ember's C library.

``aoti_compile_and_package(ep, package_path=...)`` compiles an ``ExportedProgram`` with
``ember.export.aot_compile`` and stores the library, its weights, header and C source in one
zip file (``.pt2`` by PyTorch's convention, though the contents are ember's);
``aoti_load_package(path)`` unpacks it (once, into a directory named by the file's hash) and
returns a callable taking the program's user inputs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile

__all__ = ["aoti_compile_and_package", "aoti_load_package"]

_FILES = ("ember_model.c", "ember_model.h", "ember_model.weights", "ember_model.json",
          "libember_model.so")


def aoti_compile_and_package(exported_program, _deprecated_unused_args=None,
                             _deprecated_unused_kwargs=None, *, package_path=None,
                             inductor_configs=None):
    """Compile ``exported_program`` to a C library and package it; returns the package's
    path (a new temporary ``.pt2`` file when ``package_path`` is None).
    ``inductor_configs`` may hold ``"blas"`` (a CBLAS to link) and ``"march_native"``."""
    from ..export import aot_compile
    cfg = dict(inductor_configs or {})
    unknown = set(cfg) - {"blas", "march_native"}
    if unknown:
        raise ValueError(f"aoti_compile_and_package: unsupported inductor_configs {sorted(unknown)}"
                         " (ember reads 'blas' and 'march_native')")
    if package_path is None:
        fd, package_path = tempfile.mkstemp(suffix=".pt2", prefix="ember_aoti_")
        os.close(fd)
    package_path = os.fspath(package_path)
    if not package_path.endswith(".pt2"):
        raise ValueError(f"aoti_compile_and_package: expected a package path ending in .pt2, got "
                         f"{package_path!r}")
    with tempfile.TemporaryDirectory(prefix="ember_aoti_build_") as build:
        aot_compile(exported_program, build, blas=cfg.get("blas"),
                    march_native=bool(cfg.get("march_native", False)))
        d = os.path.dirname(os.path.abspath(package_path))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=".pt2")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for f in _FILES:
                    z.write(os.path.join(build, f), f"model/{f}")
            os.replace(tmp, package_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return package_path


def aoti_load_package(path, run_single_threaded=False, device_index=-1):
    """The packaged model as a callable (``ember.export.aot_load`` of the unpacked files)."""
    from .._cc import cache_dir
    from ..export import aot_load
    path = os.fspath(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:32]
    target = os.path.join(cache_dir(), "aoti_packages", digest)
    if not all(os.path.exists(os.path.join(target, f)) for f in _FILES):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=".tmp_")
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [f for f in _FILES if f"model/{f}" not in names]
            if missing:
                raise RuntimeError(f"aoti_load_package: {path} is not an ember AOT package "
                                   f"(missing {missing})")
            for f in _FILES:
                with z.open(f"model/{f}") as src, open(os.path.join(tmp, f), "wb") as dst:
                    dst.write(src.read())
        try:
            os.replace(tmp, target)
        except OSError:  # another process unpacked it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return aot_load(target)
