"""The file system under the column store: every open, write, fsync, rename and unlink of the
store goes through a `FileSystem`, so tests can put a fault-injecting one underneath.

`OsFileSystem` is the real one (thin wrappers over `os`). `FaultInjectingFileSystem` (tests)
wraps it: it remembers what has not been made durable yet (bytes written since a file's last
fsync, files created or renamed since their directory's last fsync) and `crash()` throws all of
that away, as a power cut would (after LevelDB's db/fault_injection_test.cc). It can also fail
chosen operations with an errno (ENOSPC, EIO) to test a full disk or a failing fsync.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class File(Protocol):
    """An open file: positional reads and writes, fsync, preallocation."""

    def pread(self, length: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes | memoryview, offset: int) -> int: ...

    def pwritev(self, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        """Write the buffers back to back at `offset` (one syscall); bytes written."""

    def sync(self) -> None:
        """fdatasync: the file's bytes (and size) are durable when it returns."""

    def allocate(self, offset: int, length: int) -> None: ...

    def size(self) -> int: ...

    def truncate(self, length: int) -> None: ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    def open_read(self, path: Path) -> File: ...

    def open_write(self, path: Path, *, create: bool = False, truncate: bool = False) -> File:
        """Open for reading and writing; `create` makes it when missing."""

    def rename(self, src: Path, dst: Path) -> None: ...

    def unlink(self, path: Path) -> None: ...

    def listdir(self, path: Path) -> list[str]: ...

    def mkdir(self, path: Path) -> None: ...

    def exists(self, path: Path) -> bool: ...

    def sync_dir(self, path: Path) -> None: ...

    def free_bytes(self, path: Path) -> int: ...

    def lock(self, path: Path) -> File:
        """Create `path` if needed and hold an exclusive flock on it until the file is closed;
        BlockingIOError when another process holds it."""


class OsFile:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(self.fd, data, offset)

    def pwritev(self, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        return os.pwritev(self.fd, buffers, offset)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def allocate(self, offset: int, length: int) -> None:
        os.posix_fallocate(self.fd, offset, length)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            try:  # noqa: SIM105 - contextlib may be torn down at interpreter exit too
                self.close()
            except Exception:  # noqa: BLE001 - at interpreter exit `os` may be torn down
                pass


class OsFileSystem:
    def open_read(self, path: Path) -> File:
        return OsFile(os.open(path, os.O_RDONLY))

    def open_write(self, path: Path, *, create: bool = False, truncate: bool = False) -> File:
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | (os.O_TRUNC if truncate else 0)
        return OsFile(os.open(path, flags, 0o644))

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def listdir(self, path: Path) -> list[str]:
        return sorted(os.listdir(path))

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def sync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def free_bytes(self, path: Path) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def lock(self, path: Path) -> File:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return OsFile(fd)


def write_file_atomically(fs: FileSystem, path: Path, data: bytes) -> None:
    """Write `path.tmp`, fsync it, rename it over `path`, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    f = fs.open_write(tmp, create=True, truncate=True)
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += f.pwrite(view[offset:], offset)
        f.sync()
    finally:
        f.close()
    fs.rename(tmp, path)
    fs.sync_dir(path.parent)


def read_file(fs: FileSystem, path: Path) -> bytes:
    f = fs.open_read(path)
    try:
        return f.pread(f.size(), 0)
    finally:
        f.close()


# --- fault injection (tests) -----------------------------------------------------------------


@dataclass
class _FileState:
    """What a crash would undo in one file: its size at the last fsync, and the old bytes
    of every range written since (restored newest first)."""

    path: Path
    durable_size: int
    undo: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class Fault:
    """Fail operation `op` ("write", "sync", "create", "rename", "open", "allocate") on paths
    containing `path_part` with `error`, `times` times (-1: until removed)."""

    op: str
    error: int = errno.EIO
    path_part: str = ""
    times: int = -1


class _FaultFile:
    def __init__(self, fs: FaultInjectingFileSystem, inner: OsFile, state: _FileState) -> None:
        self._fs = fs
        self._inner = inner
        self._state = state
        self._generation = fs.generation

    def _live(self) -> None:
        if self._generation != self._fs.generation or self._inner.fd < 0:
            raise OSError(errno.EIO, "file system crashed (simulated)")

    def pread(self, length: int, offset: int) -> bytes:
        with self._fs.mutex:
            self._live()
            return self._inner.pread(length, offset)

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        with self._fs.mutex:
            self._live()
            self._fs.check("write", self._state.path)
            size = self._inner.size()
            self._fs.check_quota(offset + len(data) - size, self._state.path)
            overlap = min(size, offset + len(data)) - offset
            if overlap > 0:
                self._state.undo.append((offset, self._inner.pread(overlap, offset)))
            return self._inner.pwrite(data, offset)

    def pwritev(self, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        return self.pwrite(b"".join(buffers), offset)

    def sync(self) -> None:
        with self._fs.mutex:
            self._live()
            self._fs.check("sync", self._state.path)
            if not self._fs.sync_enabled:
                return
            self._inner.sync()
            self._state.undo.clear()
            self._state.durable_size = self._inner.size()

    def allocate(self, offset: int, length: int) -> None:
        with self._fs.mutex:
            self._live()
            self._fs.check("allocate", self._state.path)
            self._fs.check_quota(offset + length - self._inner.size(), self._state.path)
            self._inner.allocate(offset, length)

    def size(self) -> int:
        with self._fs.mutex:
            self._live()
            return self._inner.size()

    def truncate(self, length: int) -> None:
        with self._fs.mutex:
            self._live()
            size = self._inner.size()
            if length < size:
                self._state.undo.append((length, self._inner.pread(size - length, length)))
            self._inner.truncate(length)

    def close(self) -> None:
        with self._fs.mutex:
            if self._generation == self._fs.generation:
                self._fs.opened.discard(self._inner)
                self._inner.close()


class FaultInjectingFileSystem:
    """A test file system over the real one that can lose what was never made durable.

    `crash()` closes every file it opened (releasing locks), restores each file to its state at
    its last fsync, and undoes creates and renames whose directory was not fsynced since; after
    it every operation fails with EIO (the crashed process does nothing more), so a test
    reopens the directory with a new file system. `sync_enabled=False` turns every
    fsync into a no-op (so a crash loses everything: the control experiment). `faults` fail
    operations with an errno.
    """

    def __init__(self, *, sync_enabled: bool = True, quota: tuple[Path, int] | None = None) -> None:
        """`quota` (root, bytes): a small disk: growing the files under root past that many
        bytes fails with ENOSPC (the stand-in for a small tmpfs where none can be mounted)."""
        self.real = OsFileSystem()
        self.quota = quota
        self.sync_enabled = sync_enabled
        self.mutex = threading.RLock()
        self.generation = 0
        self.faults: list[Fault] = []
        self.opened: set[OsFile] = set()
        self._states: dict[Path, _FileState] = {}
        # Per directory: undo actions for entries changed since its last fsync, oldest first.
        self._dir_undo: dict[Path, list[Callable[[], None]]] = {}
        self.on_op: Callable[[str, Path], None] | None = None
        # After crash(): every operation fails, as nothing runs after a power cut.
        self.dead = False

    def check(self, op: str, path: Path) -> None:
        if self.dead:
            raise OSError(errno.EIO, "file system crashed (simulated)", str(path))
        if self.on_op is not None:
            self.on_op(op, path)
        for fault in list(self.faults):
            if fault.op == op and fault.path_part in str(path):
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                raise OSError(fault.error, f"{os.strerror(fault.error)} (injected)", str(path))

    def quota_used(self) -> int:
        assert self.quota is not None
        return sum(f.stat().st_size for f in self.quota[0].rglob("*") if f.is_file())

    def check_quota(self, growth: int, path: Path) -> None:
        if self.quota is not None and growth > 0 and self.quota_used() + growth > self.quota[1]:
            raise OSError(errno.ENOSPC, "No space left on device (quota)", str(path))

    def _state(self, path: Path) -> _FileState:
        state = self._states.get(path)
        if state is None:
            size = path.stat().st_size if path.exists() else 0
            state = self._states[path] = _FileState(path, size)
        return state

    def _track(self, inner: OsFile, path: Path) -> _FaultFile:
        self.opened.add(inner)
        return _FaultFile(self, inner, self._state(path))

    def open_read(self, path: Path) -> File:
        with self.mutex:
            self.check("open", path)
            return self._track(OsFile(os.open(path, os.O_RDONLY)), path)

    def open_write(self, path: Path, *, create: bool = False, truncate: bool = False) -> File:
        with self.mutex:
            self.check("open", path)
            existed = path.exists()
            if not existed and create:
                self.check("create", path)
            state = self._state(path)
            if truncate and existed:
                state.undo.append((0, path.read_bytes()))
            inner = self.real.open_write(path, create=create, truncate=truncate)
            assert isinstance(inner, OsFile)
            if not existed:
                state.durable_size = 0
                state.undo.clear()
                self._dir_undo.setdefault(path.parent, []).append(
                    lambda: path.unlink(missing_ok=True)
                )
            return self._track(inner, path)

    def rename(self, src: Path, dst: Path) -> None:
        with self.mutex:
            self.check("rename", dst)
            saved = self._durable_bytes(dst) if dst.exists() else None
            self.real.rename(src, dst)
            moved = self._states.pop(src, None) or _FileState(dst, dst.stat().st_size)
            moved.path = dst
            self._states[dst] = moved

            def undo() -> None:
                if dst.exists():
                    os.replace(dst, src)
                if saved is not None:
                    dst.write_bytes(saved)

            self._dir_undo.setdefault(dst.parent, []).append(undo)

    def _durable_bytes(self, path: Path) -> bytes:
        data = bytearray(path.read_bytes())
        state = self._states.get(path)
        if state is None:
            return bytes(data)
        for offset, old in reversed(state.undo):
            if offset + len(old) > len(data):
                data.extend(bytes(offset + len(old) - len(data)))
            data[offset : offset + len(old)] = old
        return bytes(data[: state.durable_size])

    def unlink(self, path: Path) -> None:
        with self.mutex:
            self.check("unlink", path)
            self.real.unlink(path)
            self._states.pop(path, None)

    def listdir(self, path: Path) -> list[str]:
        self.check("listdir", path)
        return self.real.listdir(path)

    def mkdir(self, path: Path) -> None:
        self.check("mkdir", path)
        self.real.mkdir(path)

    def exists(self, path: Path) -> bool:
        self.check("exists", path)
        return path.exists()

    def sync_dir(self, path: Path) -> None:
        with self.mutex:
            self.check("sync", path)
            if self.sync_enabled:
                self.real.sync_dir(path)
                self._dir_undo.pop(path, None)

    def free_bytes(self, path: Path) -> int:
        if self.quota is not None:
            return max(0, self.quota[1] - self.quota_used())
        for fault in self.faults:
            if fault.error == errno.ENOSPC:
                return 0
        return self.real.free_bytes(path)

    def lock(self, path: Path) -> File:
        with self.mutex:
            self.check("lock", path)
            inner = self.real.lock(path)
            assert isinstance(inner, OsFile)
            return self._track(inner, path)

    def crash(self) -> None:
        """Lose everything not durable, as a power cut would; old file objects go dead."""
        with self.mutex:
            self.dead = True
            self.generation += 1
            for inner in list(self.opened):
                inner.close()
            self.opened.clear()
            for path, state in list(self._states.items()):
                if not path.exists():
                    continue
                if state.undo or path.stat().st_size != state.durable_size:
                    data = self._durable_bytes(path)
                    with path.open("r+b") as f:
                        f.write(data)
                        f.truncate(len(data))
            for directory in list(self._dir_undo):
                for undo in reversed(self._dir_undo[directory]):
                    undo()
            self._dir_undo.clear()
            self._states.clear()
            self.faults.clear()
