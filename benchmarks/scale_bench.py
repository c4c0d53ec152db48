"""Scale benchmark, storage half: a synthetic store of N images against SQLite built from the
same rows in the same run (`make bench PART=scale N=1000000`).

The rows: small but valid JPEGs made from real photos (scikit-image / scikit-learn, reduced
to 24-48 px so a million of them fit on a laptop disk), each with its own id, filename, owner
(one of 200), sha256, EXIF summary with a date taken, labels and tags, a few percent trashed
or starred and a fifth still PENDING, as the service would have written them. They are
written straight into sealed segments of 50,000 rows (the format the service writes at
flush time) and into one SQLite table with indexes on filename, sha256 and
(owner, trashed_at_ms, id).

Then 5% of the images are deleted and 5% re-annotated (rows in a segment of their own, and
the same in SQLite), so a compaction has work to do. Each side is measured in a fresh process
(so resident memory is its own): resident memory after open (RSS minus the interpreter with
the same imports), open time, get by id and by filename p50/p99, the first and a deep page of
an owner-filtered listing (with its total), and a compaction's time and peak memory (ours: a
full Compact; SQLite: VACUUM). Printed side by side, with ratios, the load average, and a
linear extrapolation to 10M images.

SCALE_OPEN_ONLY=1 measures only the open (peak memory during it, resident memory after it, wall
and CPU time), SCALE_OPEN_ROUNDS times, alternating with SCALE_BEFORE's code when given.

SCALE_BEFORE=<dir> (a checkout of older code, e.g. `git archive <commit> | tar -x -C <dir>`)
measures the store a second time with that code, in the same run on the same files, and prints
it beside ours ("before").

If benchmarks/scale_search_bench.py exists (the search half), its main() runs after this
(SCALE_SEARCH=0 skips it).
The built stores are kept in SCALE_DIR (default /tmp/imagerepo-scale) and reused by N.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from storage_service.columnstore.manifest import Manifest
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import RowKind
from storage_service.columnstore.segment_writer import write_segment
from tests.support import real_photo_paths

SEGMENT_ROWS = 50_000
OWNERS = 200
LOOKUPS = 3000
SEED = 11
LABELS = ["tabby", "espresso", "coffee mug", "lakeside", "seashore", "daisy", "volcano", "alp"]


def _progress(what: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(
        f"  {what}: {done:,}/{total:,} ({100 * done // max(total, 1)}%, {rate:,.0f}/s)", flush=True
    )


def _tiny_jpegs() -> list[tuple[bytes, bytes, int, int]]:
    """(jpeg, thumbnail jpeg, width, height) of real photos reduced to a few dozen pixels."""
    out = []
    for path in real_photo_paths().values():
        for side in (24, 32, 48):
            with Image.open(path) as opened:
                im = opened.convert("RGB")
                im.thumbnail((side, side))
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=80)
                small = im.copy()
                small.thumbnail((12, 12))
                tbuf = io.BytesIO()
                small.save(tbuf, "JPEG", quality=70)
                out.append((buf.getvalue(), tbuf.getvalue(), im.width, im.height))
    return out


def _row_values(i: int, rng: random.Random, photo: tuple[bytes, bytes, int, int]) -> dict[str, Any]:
    data, _thumb, w, h = photo
    created = 1_600_000_000_000 + i * 1000
    taken = created - rng.randrange(0, 5 * 365 * 86_400_000)
    t = time.gmtime(taken / 1000)
    status = 1 if rng.random() < 0.2 else 2
    return {
        "id": f"{created:012x}{i % 65536:04x}{rng.getrandbits(64):016x}",
        "filename": f"IMG_{i:08d}.jpg",
        "owner": f"user{rng.randrange(OWNERS):03d}",
        "content_type": "image/jpeg",
        "format": "JPEG",
        "created_at_ms": created,
        "sha256": hashlib.sha256(data + i.to_bytes(8, "little")).hexdigest(),
        "byte_size": len(data),
        "width": w,
        "height": h,
        "exif": {
            "camera_make": "Canon",
            "camera_model": f"EOS {rng.randrange(5, 90)}D",
            "taken_at": time.strftime("%Y:%m:%d %H:%M:%S", t),
            "exposure_time": "1/250",
            "f_number": "5.6",
            "iso": str(rng.choice((100, 200, 400, 800))),
        },
        "thumb_content_type": "image/jpeg",
        "thumb_small_w": 12,
        "thumb_small_h": 12,
        "labels": []
        if status == 1
        else [
            {"name": n, "p": round(rng.random(), 3), "syn": [], "ci": k}
            for k, n in enumerate(rng.sample(LABELS, 3))
        ],
        "moderation_score": 0.0 if status == 1 else round(rng.random() * 0.1, 3),
        "tags": ["holiday"] if rng.random() < 0.1 else [],
        "status": status,
        "favourite": int(rng.random() < 0.02),
        "trashed_at_ms": created + 5000 if rng.random() < 0.01 else 0,
    }


def build(n: int, root: Path) -> tuple[Path, Path]:
    """The store dir and the SQLite file for N images (reused when already built)."""
    store_dir, db_path = root / f"store-{n}", root / f"sqlite-{n}.db"
    done_mark = root / f"built-{n}"
    if done_mark.exists():
        print(f"reusing the stores built in {root}", flush=True)
        return store_dir, db_path
    shutil.rmtree(store_dir, ignore_errors=True)
    db_path.unlink(missing_ok=True)
    (store_dir / "segments").mkdir(parents=True)
    (store_dir / "wal").mkdir()
    photos = _tiny_jpegs()
    rng = random.Random(SEED)
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE images (id TEXT PRIMARY KEY, filename TEXT, owner TEXT, sha256 TEXT, "
        "created_at_ms INTEGER, status INTEGER, trashed_at_ms INTEGER, meta TEXT, data BLOB, "
        "thumb BLOB) WITHOUT ROWID"
    )
    segments: list[int] = []
    rows_per: dict[int, int] = {}
    started = time.perf_counter()
    print(f"building {n:,} images (segments of {SEGMENT_ROWS:,} rows, and SQLite)", flush=True)
    for start in range(0, n, SEGMENT_ROWS):
        rows: list[Row] = []
        sql_rows = []
        for i in range(start, min(n, start + SEGMENT_ROWS)):
            photo = photos[i % len(photos)]
            values = _row_values(i, rng, photo)
            seq = i + 1
            rows.append(Row(seq, RowKind.PUT, values, {"data": photo[0], "thumb_small": photo[1]}))
            sql_rows.append(
                (
                    values["id"],
                    values["filename"],
                    values["owner"],
                    values["sha256"],
                    values["created_at_ms"],
                    values["status"],
                    values["trashed_at_ms"],
                    json.dumps(values, separators=(",", ":")),
                    photo[0],
                    photo[1],
                )
            )
        segment_id = len(segments) + 1
        write_segment(
            store_dir / "segments" / f"{segment_id:06d}.seg",
            rows,
            covers=[(rows[0].seq, rows[-1].seq)],
        )
        segments.append(segment_id)
        rows_per[segment_id] = len(rows)
        db.executemany("INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?)", sql_rows)
        _progress("built", start + len(rows), n, started)
    print("  indexing SQLite", flush=True)
    db.execute("CREATE INDEX by_filename ON images(filename)")
    db.execute("CREATE INDEX by_sha ON images(sha256)")
    db.execute("CREATE INDEX by_owner ON images(owner, trashed_at_ms, id)")
    db.commit()
    db.close()
    Manifest(tuple(segments), len(segments) + 1, 1, rows_per, n + 1).save(store_dir)
    done_mark.write_text("ok\n")
    return store_dir, db_path


def churn(n: int, store_dir: Path, db_path: Path) -> int:
    """Deletes and re-annotations of 5% of the images each (spread over every segment), in a
    segment of their own and in SQLite: what a compaction then has to merge away."""
    rng = random.Random(SEED)
    pick = random.Random(8)
    photos = [(b"", b"", 0, 0)]
    rows: list[Row] = []
    deletes: list[tuple[str]] = []
    updates: list[tuple[str, str]] = []
    seq = n + 1
    for i in range(n):
        values = _row_values(i, rng, photos[0])
        roll = pick.random()
        if roll < 0.05:
            rows.append(Row(seq, RowKind.DELETE, {"id": values["id"]}))
            deletes.append((values["id"],))
        elif roll < 0.10:
            annotation = {
                "id": values["id"],
                "labels": [{"name": "volcano", "p": 0.9, "syn": [], "ci": 980}],
                "tags": ["edited"],
                "status": 2,
            }
            rows.append(Row(seq, RowKind.ANNOTATE, annotation, {}))
            updates.append((json.dumps({**values, **annotation}), values["id"]))
        else:
            continue
        seq += 1
    manifest = Manifest.load(store_dir)
    assert manifest is not None
    segment_id = manifest.next_segment_id
    write_segment(store_dir / "segments" / f"{segment_id:06d}.seg", rows, covers=[(n + 1, seq - 1)])
    Manifest(
        (*manifest.segments, segment_id),
        segment_id + 1,
        manifest.wal_min,
        {**manifest.rows, segment_id: len(rows)},
        seq,
    ).save(store_dir)
    db = sqlite3.connect(db_path)
    db.executemany("DELETE FROM images WHERE id = ?", deletes)
    db.executemany("UPDATE images SET meta = ? WHERE id = ?", updates)
    db.commit()
    db.close()
    return len(rows)


# --- measured in a child process --------------------------------------------------------------


def _status_bytes(field: str) -> int:
    """A size this process's /proc/self/status gives in kB (`VmRSS`, `VmHWM`), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_bytes() -> int:
    return _status_bytes("VmRSS")


def _reset_peak() -> bool:
    """Reset this process's resident high-water mark (VmHWM); False where Linux will not."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_bytes() -> int:
    return _status_bytes("VmHWM")


class _PeakRss:
    """Samples this process's RSS every 20 ms while in use; `peak` is the highest seen."""

    def __init__(self) -> None:
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _timed(fn: Callable[[Any], Any], args: list[Any]) -> dict[str, float]:
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * times[int(len(times) * 0.99) - 1],
    }


def _sample(n: int) -> tuple[list[str], list[str], list[str]]:
    """Ids, filenames and owners to look up (the same rows on both sides)."""
    rng = random.Random(SEED)
    photos = [(b"", b"", 0, 0)]
    picks = set(random.Random(5).sample(range(n), min(LOOKUPS, n)))
    deleted = random.Random(8)  # as churn() rolls: the first 5% are deleted
    ids, names = [], []
    for i in range(n):
        values = _row_values(i, rng, photos[0])
        if deleted.random() >= 0.05 and i in picks:
            ids.append(values["id"])
            names.append(values["filename"])
    owners = [f"user{k:03d}" for k in random.Random(6).sample(range(OWNERS), 50)]
    return ids, names, owners


def _index_parts(store: Any) -> dict[str, float]:
    """MB of each part of the store's in-memory index (what this code has of them)."""
    parts: dict[str, float] = {}

    def put(name: str, what: Callable[[], int]) -> None:
        # Older code may lack a part (or keep it as a plain list): not measured.
        with contextlib.suppress(AttributeError, TypeError):
            parts[name] = what() / 2**20

    arrays = getattr(store, "_arr", None)
    put("slot arrays", lambda: sum(v.nbytes for v in vars(arrays).values() if hasattr(v, "nbytes")))
    put("ids", lambda: store._slot_ids.nbytes)
    put("id -> slot map", lambda: store._slot_of.nbytes)
    lists = ("_visible", "_by_owner", "_by_owner_status", "_by_status", "_favourites", "_trash")
    put("sorted id lists", lambda: sum(getattr(store, x).nbytes for x in lists))
    put("filename/sha256 hashes", lambda: store._filename_hashes.nbytes + store._sha_hashes.nbytes)
    put(
        "date-taken keys",
        lambda: store._taken_all.nbytes + sum(t.nbytes for t in store._taken_by_owner.values()),
    )
    put("change-feed history", lambda: store._history.nbytes())
    return parts


def measure_store(store_dir: Path, n: int, compact: bool) -> dict[str, Any]:
    from storage_service.columnstore.model import ListOrder
    from storage_service.columnstore.store import ColumnStore, StoreOptions

    ids, names, owners = _sample(n)
    gc.collect()
    base = _rss_bytes()
    options = StoreOptions(compact_min_segments=10_000, compact_dead_fraction=2.0)
    exact = _reset_peak()
    with _PeakRss() as sampled:
        t = time.perf_counter()
        cpu = time.process_time()
        store = ColumnStore.open(store_dir, options)
        open_cpu = time.process_time() - cpu
        open_s = time.perf_counter() - t
    # The kernel's high-water mark when it can be reset (exact), else 20 ms samples.
    peak = _hwm_bytes() if exact else sampled.peak
    gc.collect()
    out: dict[str, Any] = {
        "open_s": open_s,
        "open_cpu_s": open_cpu,
        "rss_mb": (_rss_bytes() - base) / 2**20,
        "open_peak_mb": (peak - base) / 2**20,
    }
    if os.environ.get("SCALE_OPEN_ONLY") == "1":
        out["images"] = store.stats().image_count
        out["index_mb"] = _index_parts(store)
        store.close()
        return out
    out["images"] = store.stats().image_count
    out["index_mb"] = _index_parts(store)
    random.Random(1).shuffle(ids)
    out["get_id"] = _timed(store.get, ids)
    out["get_filename"] = _timed(store.find_by_filename, names)
    out["owner_page"] = _timed(lambda o: store.list_images(50, owner=o), owners)

    def deep(owner: str) -> None:
        token = ""
        for _ in range(5):
            token = store.list_images(50, token, owner=owner).next_page_token

    out["owner_page6"] = _timed(deep, owners[:20])
    out["taken_page"] = _timed(
        lambda o: store.list_images(50, owner=o, order=ListOrder.TAKEN_NEWEST), owners
    )
    out["rss_after_reads_mb"] = (_rss_bytes() - base) / 2**20
    out["grpc_get"] = _grpc_get(store, ids)
    out["churn"] = _api_churn(store, set(ids))
    if compact:
        before = _rss_bytes()
        with _PeakRss() as peak:
            t = time.perf_counter()
            store.compact()
            out["compact_s"] = time.perf_counter() - t
        out["compact_peak_mb"] = (peak.peak - before) / 2**20
    store.close()
    return out


def _api_churn(store: Any, keep: set[str], count: int = 1000) -> dict[str, float]:
    """Deletes and puts through the store's API (a long-running store with churn; each waits
    for its fsync): the view has as many slots after as before, and what that costs."""
    from storage_service.columnstore.image_check import prepare_image

    image = prepare_image(_tiny_jpegs()[0][0])
    slot_ids = getattr(store, "_slot_ids", None)
    slots_before = len(slot_ids) if slot_ids is not None else -1
    gc.collect()
    rss_before = _rss_bytes()
    victims: list[tuple[str, str]] = []  # (id, owner): not the pages' metadata
    token = ""
    while len(victims) < count:
        page = store.list_images(1000, token)
        victims += [(m.id, m.owner) for m in page.images if m.id not in keep]
        token = page.next_page_token
        if not token:
            break
    t = time.perf_counter()
    for k, (image_id, owner) in enumerate(victims[:count]):
        store.delete(image_id)
        store.put(f"churn-{k}.jpg", owner, image)
    seconds = time.perf_counter() - t
    gc.collect()
    return {
        "images": min(count, len(victims)),
        "seconds": seconds,
        "slots_before": slots_before,
        "slots_after": len(slot_ids) if slot_ids is not None else -1,
        "rss_delta_mb": (_rss_bytes() - rss_before) / 2**20,
    }


def _grpc_get(store: Any, ids: list[str]) -> dict[str, float]:
    """GetImage p50 over real gRPC: ids whose metadata is read from its row, then the same
    ids again, now in the decoded cache (what keeping metadata in memory costs)."""
    import grpc

    from imagerepo.storage.v1 import storage_service_pb2 as pb
    from imagerepo.storage.v1 import storage_service_pb2_grpc as pb_grpc
    from storage_service.server import build_server

    server, port, _health = build_server(
        store, "127.0.0.1:0", max_image_bytes=1 << 20, max_image_pixels=4_000_000
    )
    server.start()
    picked = ids[-1000:]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.StorageServiceStub(channel)

            def get(image_id: str) -> None:
                stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=10)

            store._meta_cache.clear()
            from_rows = _timed(get, picked)["p50_ms"]
            cached = _timed(get, picked)["p50_ms"]
    finally:
        server.stop(None)
    return {"from_rows_p50_ms": from_rows, "cached_p50_ms": cached}


def measure_sqlite(db_path: Path, n: int, compact: bool) -> dict[str, Any]:
    ids, names, owners = _sample(n)
    gc.collect()
    base = _rss_bytes()
    t = time.perf_counter()
    db = sqlite3.connect(db_path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    count = db.execute("SELECT count(*) FROM images WHERE trashed_at_ms = 0").fetchone()[0]
    open_s = time.perf_counter() - t
    out: dict[str, Any] = {"open_s": open_s, "rss_mb": (_rss_bytes() - base) / 2**20}
    out["images"] = count

    def get(image_id: str) -> Any:
        row = db.execute("SELECT meta FROM images WHERE id = ?", (image_id,)).fetchone()
        return json.loads(row[0])

    def by_name(name: str) -> Any:
        rows = db.execute(
            "SELECT meta FROM images WHERE filename = ? ORDER BY id DESC", (name,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def owner_page(owner: str, after: str = "\uffff") -> tuple[list[Any], str]:
        rows = db.execute(
            "SELECT id, meta FROM images WHERE owner = ? AND trashed_at_ms = 0 AND id < ? "
            "ORDER BY id DESC LIMIT 50",
            (owner, after),
        ).fetchall()
        db.execute(
            "SELECT count(*) FROM images WHERE owner = ? AND trashed_at_ms = 0", (owner,)
        ).fetchone()
        return [json.loads(r[1]) for r in rows], rows[-1][0] if rows else ""

    def deep(owner: str) -> None:
        after = "\uffff"
        for _ in range(6):
            _rows, after = owner_page(owner, after)

    random.Random(1).shuffle(ids)
    out["get_id"] = _timed(get, ids)
    out["get_filename"] = _timed(by_name, names)
    out["owner_page"] = _timed(owner_page, owners)
    out["owner_page6"] = _timed(deep, owners[:20])
    out["rss_after_reads_mb"] = (_rss_bytes() - base) / 2**20
    if compact:
        before = _rss_bytes()
        with _PeakRss() as peak:
            t = time.perf_counter()
            db.execute("VACUUM")
            out["compact_s"] = time.perf_counter() - t
        out["compact_peak_mb"] = (peak.peak - before) / 2**20
    db.close()
    return out


def _child(
    kind: str, path: Path, n: int, compact: bool, tree: Path | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scale_bench", kind, str(path), str(n)]
    if tree and os.environ.get("SCALE_OPEN_ONLY") == "1":
        # This file's open measurement (peak memory) with the older tree's store code.
        cmd[1:3] = [str(Path(__file__).resolve())]
    if compact:
        cmd.append("compact")
    print(f"measuring {kind}{f' with the code in {tree}' if tree else ''} ...", flush=True)
    env = dict(os.environ, PYTHONPATH=str(tree)) if tree else None
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tree, env=env)
    if done.returncode:
        print(done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{kind} measurement failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _fmt_row(name: str, ours: float, theirs: float, unit: str) -> str:
    ratio = ours / theirs if theirs else float("inf")
    return f"  {name:<34} {ours:>10.3f} {unit:<3} {theirs:>10.3f} {unit:<3} {ratio:>8.2f}x"


def report_before(ours: dict[str, Any], before: dict[str, Any]) -> None:
    print(f"\n  {'':<34} {'ours':>14} {'before':>14} {'ours/before':>9}")
    print(_fmt_row("resident memory after open", ours["rss_mb"], before["rss_mb"], "MB"))
    if "open_peak_mb" in before:
        print(
            _fmt_row("peak memory during open", ours["open_peak_mb"], before["open_peak_mb"], "MB")
        )
    print(_fmt_row("open", ours["open_s"], before["open_s"], "s"))
    if "open_cpu_s" in before:
        print(_fmt_row("open, CPU", ours["open_cpu_s"], before["open_cpu_s"], "s"))
    for key, name in (
        ("get_id", "get by id"),
        ("get_filename", "get by filename"),
        ("owner_page", "owner page 1 (+ total)"),
        ("owner_page6", "owner pages 1-6 (+ totals)"),
        ("taken_page", "owner page by date taken"),
    ):
        if key in ours and key in before:
            for q in ("p50_ms", "p99_ms"):
                print(_fmt_row(f"{name} {q[:3]}", ours[key][q], before[key][q], "ms"))
    if "churn" in ours and "churn" in before:
        print(
            _fmt_row(
                "1000 deletes + puts", ours["churn"]["seconds"], before["churn"]["seconds"], "s"
            )
        )


def report(n: int, ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    print(f"\nscale: {n:,} images ({ours['images']:,} live); load average {os.getloadavg()}")
    print(f"  {'':<34} {'ours':>14} {'SQLite':>14} {'ours/SQLite':>9}")
    print(_fmt_row("resident memory after open", ours["rss_mb"], theirs["rss_mb"], "MB"))
    print(
        _fmt_row(
            "resident memory after reads",
            ours["rss_after_reads_mb"],
            theirs["rss_after_reads_mb"],
            "MB",
        )
    )
    print(_fmt_row("open", ours["open_s"], theirs["open_s"], "s"))
    if "open_peak_mb" in ours:
        print(f"  peak memory during open: {ours['open_peak_mb']:.0f} MB (ours)")
    for key, name in (
        ("get_id", "get by id"),
        ("get_filename", "get by filename"),
        ("owner_page", "owner page 1 (+ total)"),
        ("owner_page6", "owner pages 1-6 (+ totals)"),
    ):
        for q in ("p50_ms", "p99_ms"):
            print(_fmt_row(f"{name} {q[:3]}", ours[key][q], theirs[key][q], "ms"))
    if "taken_page" in ours:
        print(
            f"  owner page by date taken p50/p99: {ours['taken_page']['p50_ms']:.3f} / "
            f"{ours['taken_page']['p99_ms']:.3f} ms (ours only)"
        )
    if "grpc_get" in ours:
        g = ours["grpc_get"]
        print(
            f"  GetImage over gRPC p50: {g['from_rows_p50_ms']:.3f} ms reading the row, "
            f"{g['cached_p50_ms']:.3f} ms decoded in memory "
            f"({g['from_rows_p50_ms'] / g['cached_p50_ms']:.2f}x)"
        )
    if "churn" in ours:
        c = ours["churn"]
        print(
            f"  churn through the API: {c['images']:,} deletes + puts in {c['seconds']:.1f} s; "
            f"slots {c['slots_before']:,} -> {c['slots_after']:,}; "
            f"resident {c['rss_delta_mb']:+.1f} MB"
        )
    print(
        f"  bytes per live image after open: {ours['rss_mb'] * 2**20 / max(ours['images'], 1):.0f}"
    )
    if ours.get("index_mb"):
        print(
            "  of which the index (MB): "
            + ", ".join(f"{k} {v:.1f}" for k, v in ours["index_mb"].items())
        )
    if "compact_s" in ours:
        print(_fmt_row("compaction time", ours["compact_s"], theirs["compact_s"], "s"))
        print(
            _fmt_row(
                "compaction peak memory", ours["compact_peak_mb"], theirs["compact_peak_mb"], "MB"
            )
        )
    scale = 10_000_000 / n
    print(
        f"  10M extrapolation (linear): ours {ours['rss_mb'] * scale / 1024:.1f} GB resident, "
        f"open {ours['open_s'] * scale:.0f} s"
        + (f", compaction {ours['compact_s'] * scale:.0f} s" if "compact_s" in ours else "")
    )


def open_rounds(work: Path, n: int, before_tree: Path | None) -> None:
    """SCALE_OPEN_ONLY=1: only open the store (peak and resident memory, wall and CPU time),
    SCALE_OPEN_ROUNDS times (3), alternating with the code in SCALE_BEFORE when given, each in
    a fresh process on the same files."""
    rounds = int(os.environ.get("SCALE_OPEN_ROUNDS", "3"))
    trees: list[tuple[str, Path | None]] = [("ours", None)]
    if before_tree is not None:
        trees.append(("before", before_tree))
    print(f"\n  {'open':<8} {'peak MB':>8} {'resident MB':>12} {'wall s':>7} {'CPU s':>6}  load")
    for r in range(rounds):
        for name, tree in trees if r % 2 == 0 else trees[::-1]:
            got = _child("store", work, n, False, tree)
            print(
                f"  {name:<8} {got.get('open_peak_mb', float('nan')):>8.0f} "
                f"{got['rss_mb']:>12.0f} {got['open_s']:>7.2f} "
                f"{got.get('open_cpu_s', float('nan')):>6.2f}  "
                f"{os.getloadavg()[0]:.1f} ({got['images']:,} images; date-taken indexes "
                f"{got.get('index_mb', {}).get('date-taken keys', float('nan')):.1f} MB)",
                flush=True,
            )


def main() -> None:
    n = int(os.environ.get("N", "100000"))
    root = Path(os.environ.get("SCALE_DIR", "/tmp/imagerepo-scale"))
    root.mkdir(parents=True, exist_ok=True)
    store_dir, db_path = build(n, root)
    compact = os.environ.get("SCALE_COMPACT", "1") == "1"
    # A compaction rewrites the store: measure on a copy, so the built one is reused as built.
    work = root / f"work-{n}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(store_dir, work)
    work_db = root / f"work-{n}.db"
    shutil.copyfile(db_path, work_db)
    print(f"churn: {churn(n, work, work_db):,} deletes and re-annotations", flush=True)
    before_tree = os.environ.get("SCALE_BEFORE", "")
    if os.environ.get("SCALE_OPEN_ONLY") == "1":
        try:
            open_rounds(work, n, Path(before_tree).resolve() if before_tree else None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            work_db.unlink(missing_ok=True)
        return
    before = None
    try:
        if before_tree:
            # On a copy of its own: the measurement writes (churn through the API, Compact).
            again = root / f"work-before-{n}"
            shutil.rmtree(again, ignore_errors=True)
            shutil.copytree(work, again)
        ours = _child("store", work, n, compact)
        if before_tree:
            try:
                before = _child("store", again, n, compact, Path(before_tree).resolve())
            finally:
                shutil.rmtree(again, ignore_errors=True)
        theirs = _child("sqlite", work_db, n, compact)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        work_db.unlink(missing_ok=True)
    report(n, ours, theirs)
    if before is not None:
        report_before(ours, before)
    if os.environ.get("SCALE_SEARCH", "1") == "0":
        return
    try:
        import benchmarks.scale_search_bench as search_half  # type: ignore[import-not-found]
    except ImportError:
        return
    search_half.main()


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] in ("store", "sqlite"):
        fn = measure_store if sys.argv[1] == "store" else measure_sqlite
        result = fn(Path(sys.argv[2]), int(sys.argv[3]), "compact" in sys.argv[4:])
        print(json.dumps(result))
    else:
        main()
