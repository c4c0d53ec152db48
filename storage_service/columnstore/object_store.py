"""Sealed segments in an S3-compatible object store, read by ranged GETs through a bounded
local block cache; the log, the MANIFEST and the memtable stay on the local disk.

It is a `FileSystem` (fs.py) under the column store, so the store's own crash-safe sequence is
unchanged and decides when things happen:

- `write_segment` writes `segments/N.seg.tmp`, fsyncs it and renames it to `segments/N.seg`.
  Here that rename *uploads* the fsynced file as `<prefix>/segments/N.seg` (and checks the
  stored size) before it returns, then drops the local file (its blocks go to the cache). The
  MANIFEST names the segment only after that, so a crash between the upload and the MANIFEST
  loses nothing (the rows are still in the log, which is retired only after the MANIFEST) and
  leaves at worst an orphan object, which the next flush of that id overwrites.
- `SegmentReader` opens `segments/N.seg`: a local file of that name wins (segments written
  before object storage was configured stay where they are); otherwise a `RemoteSegmentFile`
  whose `pread` is served from the block cache, missing blocks fetched by ranged GET.
- `retire()` (after compaction, once the new MANIFEST is durable) unlinks `segments/N.seg`:
  the object is deleted once no open reader uses it (as an unlinked POSIX file stays readable
  through its descriptor). Names waiting for that are kept in `object-deletes` in the data
  directory, so a process that exits first deletes them at its next start.

An unreachable object store is an `ObjectStoreUnavailableError` (an OSError, so the servicer
answers UNAVAILABLE "storage I/O error: object store unavailable ..."); a failed upload makes
the flush fail, which the store latches as a BackgroundError and retries with backoff.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from storage_service.columnstore.fs import File, FileSystem, OsFileSystem

log = logging.getLogger("storage_service.object_store")

DEFAULT_BLOCK_BYTES = 256 * 1024
DELETES_FILE = "object-deletes"
STORE_ID_FILE = "object-store-id"
_SEGMENT_NAME = re.compile(r"^\d+\.seg$")


class ObjectStoreUnavailableError(OSError):
    """The object store did not answer (down, unreachable, timing out, 5xx)."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(errno.EIO, f"object store unavailable ({what}: {cause})")


@dataclass(frozen=True)
class SegmentsUrl:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> SegmentsUrl:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"STORAGE_SEGMENTS_URL {url!r} is not s3://bucket/prefix")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def key(self, name: str) -> str:
        return f"{self.prefix}/segments/{name}" if self.prefix else f"segments/{name}"

    def owner_key(self) -> str:
        return f"{self.prefix}/store-id" if self.prefix else "store-id"


class S3Objects:
    """The few object operations segments need, over boto3, errors made OSErrors."""

    def __init__(self, client: Any, url: SegmentsUrl) -> None:
        self.client = client
        self.url = url

    def _call(self, what: str, name: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.url.bucket, **kwargs)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(
                    errno.ENOENT, f"{name} is missing from the object store"
                ) from e
            if status >= 500 or status == 0:
                raise ObjectStoreUnavailableError(f"{what} {name}", e) from e
            raise OSError(errno.EIO, f"object store refused {what} {name}: {e}") from e
        except BotoCoreError as e:
            raise ObjectStoreUnavailableError(f"{what} {name}", e) from e

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.url.bucket)
            return
        except ClientError:
            pass
        except Exception as e:  # noqa: BLE001 - BotoCoreError: unreachable
            raise ObjectStoreUnavailableError(f"bucket {self.url.bucket}", e) from e
        self._call("create bucket", self.url.bucket, self.client.create_bucket)

    def upload(self, name: str, file: File) -> None:
        size = file.size()
        body = _FileBody(file)
        self._call("upload", name, self.client.put_object, Key=self.url.key(name), Body=body)
        stored = self.size(name)
        if stored != size:
            raise OSError(errno.EIO, f"object store holds {stored} bytes of {name}, not {size}")

    def download(self, name: str, path: Path) -> None:
        size = self.size(name)
        data = self.get_range(name, 0, size) if size else b""
        path.write_bytes(data)

    def size(self, name: str) -> int:
        head = self._call("head", name, self.client.head_object, Key=self.url.key(name))
        return int(head["ContentLength"])

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        response = self._call(
            "read",
            name,
            self.client.get_object,
            Key=self.url.key(name),
            Range=f"bytes={offset}-{offset + length - 1}",
        )
        try:
            data: bytes = response["Body"].read()
        except Exception as e:  # noqa: BLE001 - the connection broke mid-body
            raise ObjectStoreUnavailableError(f"read {name}", e) from e
        return data

    def delete(self, name: str) -> None:
        self._call("delete", name, self.client.delete_object, Key=self.url.key(name))

    def has_segments(self) -> bool:
        prefix = self.url.key("")
        listed = self._call("list", prefix, self.client.list_objects_v2, Prefix=prefix, MaxKeys=1)
        return bool(listed.get("KeyCount", 0))

    def owner(self) -> str | None:
        """The id of the store whose segments live under this prefix (None: unclaimed)."""
        key = self.url.owner_key()
        try:
            response = self._call("read", key, self.client.get_object, Key=key)
        except FileNotFoundError:
            return None
        text: str = response["Body"].read().decode().strip()
        return text

    def claim(self, store_id: str) -> None:
        key = self.url.owner_key()
        self._call("write", key, self.client.put_object, Key=key, Body=store_id.encode())


class PrefixOwnedError(OSError):
    """STORAGE_SEGMENTS_URL names a prefix another store's segments live under (or this data
    directory lost the id that ties it to its prefix): refused, as two stores writing the
    same segment names would destroy each other's data."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EEXIST, message)


class _FileBody(io.RawIOBase):
    """A `File` as the seekable stream boto3 uploads from (read through the store's file
    system, so a simulated crash stops an upload too)."""

    def __init__(self, file: File) -> None:
        self._file = file
        self._size = file.size()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        data = self._file.pread(min(len(buffer), max(0, self._size - self._pos)), self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class BlockCache:
    """Fixed-size blocks of remote segments as files in `directory`, least recently used
    evicted past `capacity_bytes`. Each file carries a CRC32 of its block, so a torn or
    damaged cache file is fetched again, never served. Deleting the directory is safe."""

    def __init__(self, directory: Path, capacity_bytes: int, block_bytes: int) -> None:
        self.directory = directory
        self.capacity_bytes = max(0, capacity_bytes)
        self.block_bytes = block_bytes
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        directory.mkdir(parents=True, exist_ok=True)
        found = []
        for entry in os.scandir(directory):
            if entry.name.endswith(".blk"):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    # A block evicted or dropped (its segment deleted) while this scan ran,
                    # e.g. by a store instance that is still closing: it is simply not cached.
                    continue
                found.append((st.st_mtime, entry.name, st.st_size))
        for _mtime, name, size in sorted(found):
            self._lru[name] = size
            self._bytes += size
        self._evict()

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def _file(self, name: str, block: int) -> str:
        return f"{name}.{block}.blk"

    def get(self, name: str, block: int) -> bytes | None:
        file = self._file(name, block)
        try:
            raw = (self.directory / file).read_bytes()
        except OSError:
            with self._lock:
                size = self._lru.pop(file, None)
                if size is not None:
                    self._bytes -= size
                self.misses += 1
            return None
        data = raw[4:]
        if len(raw) < 4 or zlib.crc32(data) != int.from_bytes(raw[:4], "little"):
            self.misses += 1
            return None
        with self._lock:
            self.hits += 1
            if file in self._lru:
                self._lru.move_to_end(file)
        return data

    def put(self, name: str, block: int, data: bytes) -> None:
        if self.capacity_bytes <= 0:
            return
        file = self._file(name, block)
        path = self.directory / file
        tmp = path.with_name(f"{file}.{threading.get_ident()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(zlib.crc32(data).to_bytes(4, "little") + data)
            os.replace(tmp, path)
        except OSError as e:  # a cache that cannot be written is only slower
            log.warning("segment cache write failed", extra={"error": str(e)})
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            old = self._lru.pop(file, None)
            self._bytes += len(data) + 4 - (old or 0)
            self._lru[file] = len(data) + 4
            self._evict()

    def drop(self, name: str) -> None:
        prefix = f"{name}."
        with self._lock:
            for file in [f for f in self._lru if f.startswith(prefix)]:
                self._bytes -= self._lru.pop(file)
                (self.directory / file).unlink(missing_ok=True)

    def _evict(self) -> None:
        while self._bytes > self.capacity_bytes and self._lru:
            file, size = self._lru.popitem(last=False)
            self._bytes -= size
            (self.directory / file).unlink(missing_ok=True)


class RemoteSegmentFile:
    """A read-only `File` over one segment object: positional reads through the cache."""

    def __init__(self, fs: ObjectSegmentFileSystem, name: str, size: int) -> None:
        self._fs = fs
        self.name = name
        self._size = size
        self._closed = False

    def pread(self, length: int, offset: int) -> bytes:
        if self._closed:
            raise OSError(errno.EBADF, "segment file closed")
        end = min(self._size, offset + max(0, length))
        if offset >= end:
            return b""
        block_bytes = self._fs.cache.block_bytes
        parts = []
        for block in range(offset // block_bytes, (end - 1) // block_bytes + 1):
            data = self._fs.read_block(self.name, block, self._size)
            start = block * block_bytes
            parts.append(data[max(0, offset - start) : end - start])
        return b"".join(parts)

    def _read_only(self, *_args: object) -> Any:
        raise OSError(errno.EROFS, f"{self.name} is a sealed segment in the object store")

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        return self._read_only()  # type: ignore[no-any-return]

    def pwritev(self, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        return self._read_only()  # type: ignore[no-any-return]

    def sync(self) -> None:
        pass

    def allocate(self, offset: int, length: int) -> None:
        self._read_only()

    def size(self) -> int:
        return self._size

    def truncate(self, length: int) -> None:
        self._read_only()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fs.closed(self.name)

    def __del__(self) -> None:
        try:  # noqa: SIM105 - contextlib may be torn down at interpreter exit too
            self.close()
        except Exception:  # noqa: BLE001
            pass


class ObjectSegmentFileSystem:
    """The store's file system with `data_dir/segments/N.seg` in an object store (see the
    module doc); every other path goes to `inner`."""

    def __init__(
        self,
        data_dir: Path,
        objects: S3Objects,
        *,
        cache_dir: Path | None = None,
        cache_bytes: int = 1 << 30,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        inner: FileSystem | None = None,
    ) -> None:
        self.inner: FileSystem = inner or OsFileSystem()
        self.data_dir = Path(data_dir)
        self.seg_dir = self.data_dir / "segments"
        self.objects = objects
        self.cache = BlockCache(
            cache_dir or self.data_dir / "segment-cache", cache_bytes, block_bytes
        )
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._deletes_path = self.data_dir / DELETES_FILE
        self._pending_deletes: set[str] = set()
        self.uploads = 0
        self.gets = 0
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._claim_prefix()
        if self._deletes_path.exists():
            self._pending_deletes = set(self._deletes_path.read_text().split())
        self.delete_pending()

    # --- the remote side -----------------------------------------------------------------------

    def _claim_prefix(self) -> None:
        """Tie this data directory to its prefix: a random id in `object-store-id` here and in
        `<prefix>/store-id` there. Refuses a prefix that holds another store's segments (two
        data directories on one prefix, or a data directory that lost its MANIFEST and id)."""
        local = self.data_dir / STORE_ID_FILE
        url = self.objects.url
        where = f"s3://{url.bucket}/{url.prefix}"
        mine = local.read_text().strip() if local.exists() else None
        remote = self.objects.owner()
        if remote is not None and remote != mine:
            raise PrefixOwnedError(
                f"{where} holds the segments of another store (id {remote}, this data "
                f"directory's is {mine or 'missing'}); choose another STORAGE_SEGMENTS_URL"
            )
        if remote is None:
            if mine is None and self.objects.has_segments():
                raise PrefixOwnedError(
                    f"{where} holds segments but no store id: refusing to write over them; "
                    "choose another STORAGE_SEGMENTS_URL"
                )
            if mine is None:
                mine = uuid.uuid4().hex
                tmp = local.with_name(STORE_ID_FILE + ".tmp")
                tmp.write_text(mine + "\n")
                with tmp.open("rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, local)
            self.objects.claim(mine)

    def _remote_name(self, path: Path) -> str | None:
        if path.parent == self.seg_dir and _SEGMENT_NAME.match(path.name):
            return path.name
        return None

    def _size(self, name: str) -> int:
        size = self._sizes.get(name)
        if size is None:
            size = self.objects.size(name)
            self._sizes[name] = size
        return size

    def read_block(self, name: str, block: int, size: int) -> bytes:
        data = self.cache.get(name, block)
        if data is not None:
            return data
        start = block * self.cache.block_bytes
        length = min(self.cache.block_bytes, size - start)
        data = self.objects.get_range(name, start, length)
        self.gets += 1
        if len(data) != length:
            raise OSError(errno.EIO, f"short read of {name} from the object store")
        self.cache.put(name, block, data)
        return data

    def _cache_file(self, name: str, file: File) -> None:
        """Write-through: the blocks of a just-uploaded segment, so its first reads are local."""
        block_bytes = self.cache.block_bytes
        size = file.size()
        for block in range(min(-(-size // block_bytes), self.cache.capacity_bytes // block_bytes)):
            self.cache.put(name, block, file.pread(block_bytes, block * block_bytes))

    def closed(self, name: str) -> None:
        with self._lock:
            count = self._open.get(name, 0) - 1
            if count > 0:
                self._open[name] = count
                return
            self._open.pop(name, None)
            due = name in self._pending_deletes
        if due:
            # Not inline: the last reference may go while the store's lock is held, and a
            # DELETE can take seconds when the object store is slow.
            threading.Thread(target=self._delete_now, args=(name,), daemon=True).start()

    def _save_deletes(self) -> None:
        # A name of its own: a store reopened in the same process (tests, a restart after an
        # error) may still have the old instance's delete thread saving the same list.
        tmp = self._deletes_path.with_name(
            f"{DELETES_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        )
        tmp.write_text("".join(f"{n}\n" for n in sorted(self._pending_deletes)))
        os.replace(tmp, self._deletes_path)

    def _delete_now(self, name: str) -> None:
        self.cache.drop(name)
        try:
            self.objects.delete(name)
        except OSError as e:
            log.warning("retired segment not deleted yet", extra={"name": name, "error": str(e)})
            return
        with self._lock:
            self._pending_deletes.discard(name)
            self._sizes.pop(name, None)
            self._save_deletes()

    def delete_pending(self) -> None:
        """Delete the retired segments no open reader uses (at start, and at close)."""
        with self._lock:
            due = [n for n in self._pending_deletes if n not in self._open]
        for name in due:
            self._delete_now(name)

    # --- FileSystem ----------------------------------------------------------------------------

    def open_read(self, path: Path) -> File:
        name = self._remote_name(path)
        if name is None or self.inner.exists(path):
            return self.inner.open_read(path)
        size = self._size(name)
        with self._lock:
            self._open[name] = self._open.get(name, 0) + 1
        return RemoteSegmentFile(self, name, size)

    def open_write(self, path: Path, *, create: bool = False, truncate: bool = False) -> File:
        return self.inner.open_write(path, create=create, truncate=truncate)

    def rename(self, src: Path, dst: Path) -> None:
        name = self._remote_name(dst)
        if name is not None and self._remote_name(src) is None:
            # A sealed, fsynced segment: in the object store before the MANIFEST can name it.
            file = self.inner.open_read(src)
            try:
                self.objects.upload(name, file)
                self.uploads += 1
                with self._lock:
                    self._sizes[name] = file.size()
                    self._pending_deletes.discard(name)
                self._cache_file(name, file)
            finally:
                file.close()
            if self.inner.exists(dst):
                self.inner.unlink(dst)
            self.inner.unlink(src)
            return
        src_name = self._remote_name(src)
        if src_name is not None and not self.inner.exists(src):
            # Set aside (quarantine) a remote segment: a local copy; the object stays.
            self.objects.download(src_name, dst)
            return
        self.inner.rename(src, dst)

    def unlink(self, path: Path) -> None:
        name = self._remote_name(path)
        if name is None:
            self.inner.unlink(path)
            return
        if self.inner.exists(path):
            self.inner.unlink(path)
            return
        with self._lock:
            self._pending_deletes.add(name)
            self._save_deletes()
            in_use = name in self._open
        if not in_use:
            self._delete_now(name)

    def listdir(self, path: Path) -> list[str]:
        return self.inner.listdir(path)

    def mkdir(self, path: Path) -> None:
        self.inner.mkdir(path)

    def exists(self, path: Path) -> bool:
        name = self._remote_name(path)
        if name is None or self.inner.exists(path):
            return self.inner.exists(path)
        if name in self._pending_deletes:
            return False
        try:
            self._size(name)
        except FileNotFoundError:
            return False
        return True

    def sync_dir(self, path: Path) -> None:
        self.inner.sync_dir(path)

    def free_bytes(self, path: Path) -> int:
        return self.inner.free_bytes(path)

    def lock(self, path: Path) -> File:
        return self.inner.lock(path)


def s3_client(endpoint: str | None, env: Mapping[str, str]) -> Any:
    """A boto3 S3 client: credentials from STORAGE_S3_ACCESS_KEY(_FILE) and
    STORAGE_S3_SECRET_KEY(_FILE), else boto3's own chain (AWS_* variables, ~/.aws files)."""
    import boto3
    from botocore.config import Config

    def secret(name: str) -> str | None:
        if env.get(f"{name}_FILE"):
            return Path(env[f"{name}_FILE"]).read_text().strip()
        return env.get(name) or None

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        aws_access_key_id=secret("STORAGE_S3_ACCESS_KEY"),
        aws_secret_access_key=secret("STORAGE_S3_SECRET_KEY"),
        region_name=env.get("STORAGE_S3_REGION") or env.get("AWS_REGION") or "us-east-1",
        config=Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=3,
            read_timeout=20,
            s3={"addressing_style": "path"},
        ),
    )


def object_segment_fs(
    data_dir: Path,
    url: str,
    *,
    endpoint: str | None = None,
    cache_bytes: int = 1 << 30,
    cache_dir: Path | None = None,
    env: Mapping[str, str] = os.environ,
    inner: FileSystem | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> ObjectSegmentFileSystem:
    """The file system for a store whose segments live under `url` (s3://bucket/prefix)."""
    objects = S3Objects(s3_client(endpoint, env), SegmentsUrl.parse(url))
    objects.ensure_bucket()
    return ObjectSegmentFileSystem(
        data_dir,
        objects,
        cache_dir=cache_dir,
        cache_bytes=cache_bytes,
        block_bytes=block_bytes,
        inner=inner,
    )
