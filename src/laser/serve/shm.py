"""System shared memory (Triton's extension): tensors exchanged through POSIX shared-memory regions.

A client creates ``/dev/shm/<key>``, registers a window of it (offset, byte size) under a region name,
then names the region, an offset inside the window and a byte size in an input's or requested output's
parameters instead of sending the bytes. Every offset and size is checked against the registered window
and the window against the file, so a bad one is a 400, never a read or write outside the region. Keys
are plain ``/dev/shm`` names (no directories, no symlinks followed); nothing is created or unlinked here.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from laser.serve.codec import ShmRef, check_name
from laser.serve.errors import ServeError

SHM_DIR = "/dev/shm"
KEY = re.compile(r"^/?[A-Za-z0-9_.\-]{1,250}$")
MAX_REGIONS = 256


@dataclass
class _Region:
    name: str
    key: str
    offset: int
    byte_size: int
    map: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


class SharedMemory:
    """The system shared-memory regions registered with one server."""

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        check_name("shared memory region name", name)
        if name in self._regions:
            raise ServeError(400, f"shared memory region {name!r} is already registered; unregister it first")
        if len(self._regions) >= MAX_REGIONS:
            raise ServeError(400, f"{MAX_REGIONS} shared memory regions are registered; unregister some first")
        if not KEY.match(key) or ".." in key:
            raise ServeError(400, f"shared memory key {key[:60]!r} must name a file in {SHM_DIR} such as "
                                  "'/input_data' (letters, digits, '_', '.', '-')")
        if offset < 0 or byte_size < 1:
            raise ServeError(400, f"shared memory region {name!r}: offset must be >= 0 and byte_size >= 1")
        path = os.path.join(SHM_DIR, key.lstrip("/"))
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ServeError(400, f"cannot open shared memory key {key!r} ({exc.strerror}); create it first "
                                  "(shm_open) and register its name") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ServeError(400, f"shared memory key {key!r} is not a shared memory object")
            if offset + byte_size > info.st_size:
                raise ServeError(400, f"shared memory region {name!r}: offset {offset} + byte_size {byte_size} "
                                      f"exceeds the {info.st_size} bytes of key {key!r}")
            view = mmap.mmap(fd, info.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._regions[name] = _Region(name, key, offset, byte_size, view)

    def unregister(self, name: str = "") -> None:
        """Unregister one region, or all of them (``name`` empty). Unknown names are a no-op, as in Triton."""
        for region in [self._regions.pop(name, None)] if name else [self._regions.pop(n) for n in list(self._regions)]:
            if region is not None:
                region.map.close()

    def status(self, name: str = "") -> list[dict[str, Any]]:
        if name:
            if name not in self._regions:
                raise ServeError(404, f"no shared memory region {name[:60]!r} is registered")
            return [self._regions[name].status()]
        return [r.status() for r in self._regions.values()]

    def _window(self, ref: ShmRef, what: str) -> tuple[_Region, int]:
        region = self._regions.get(ref.region)
        if region is None:
            raise ServeError(400, f"{what}: no shared memory region {ref.region[:60]!r} is registered; register it "
                                  "first")
        if ref.offset + ref.byte_size > region.byte_size:
            raise ServeError(400, f"{what}: offset {ref.offset} + byte size {ref.byte_size} exceeds the "
                                  f"{region.byte_size} bytes of shared memory region {ref.region!r}")
        return region, region.offset + ref.offset

    def read(self, ref: ShmRef, what: str) -> bytes:
        """A copy of the bytes an input names (the client may reuse the region once answered)."""
        region, start = self._window(ref, what)
        return region.map[start:start + ref.byte_size]

    def write(self, ref: ShmRef, data: bytes, what: str) -> None:
        region, start = self._window(ref, what)
        if len(data) > ref.byte_size:
            raise ServeError(400, f"{what} needs {len(data)} bytes; its shared memory window has {ref.byte_size}")
        region.map[start:start + len(data)] = data

    def close(self) -> None:
        self.unregister()


def cuda_refused() -> ServeError:
    return ServeError(400, "CUDA shared memory is not supported on this server (it has no GPU path); use system "
                           "shared memory (/v2/systemsharedmemory) or send the tensors in the request")
