"""Storage benchmark: our column store against SQLite (WAL mode, synchronous=FULL), same rows.

Both stores are driven directly from Python in this process (not over gRPC), with the same
prepared rows: real photos from scikit-image / scikit-learn plus cropped, rescaled and
re-encoded variants, each with its thumbnails, then annotated with labels, tags, OCR text and a
1280-d feature vector as the vision service would. Every put and update is durable before it
returns in both (our log is fsynced per write or per group commit; SQLite commits each row with
synchronous=FULL).

Ingest runs in rounds that alternate between our store, a second store of ours with the
adaptive group-commit wait (at most about a recent fsync's time, capped at 1 ms, instead of up
to 1 ms) fed the same puts, and SQLite; each round's ratios are printed with the load average,
and each store's CPU time per put (the whole process's) and fsyncs per put.

Printed: ingest and annotate throughput, get-by-id and get-by-filename latency (p50, p99),
on-disk bytes over raw image bytes, the compression ratio of the metadata columns, the zstd level
measurement behind format.SMALL_COLUMN_LEVEL, and each figure's ratio against SQLite.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from PIL import Image
from tqdm import tqdm

from storage_service.columnstore import format as fmt
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.model import (
    AnalysisStatus,
    AnnotationUpdate,
    Label,
    PreparedImage,
)
from storage_service.columnstore.schema import BY_NAME, METADATA_COLUMNS
from storage_service.columnstore.segment_reader import SegmentReader
from storage_service.columnstore.store import ColumnStore, directory_bytes
from tests.support import real_photo_paths

IMAGES = 300
LOOKUPS = 2000
THREADS = 4
ROUNDS = 6
# The adaptive group-commit wait (a fraction of the fsync time), run beside the default in the
# same rounds (see _run).
ADAPTIVE_GROUP_WAIT_FRACTION = 1.0
CAMERA_IMAGES = 12
VECTOR_DIM = 1280
SEED = 7

LABELS = [
    ("tabby", ["tabby cat"]),
    ("Egyptian cat", []),
    ("tiger cat", []),
    ("espresso", []),
    ("cup", ["coffee mug"]),
    ("space shuttle", []),
    ("daisy", []),
    ("palace", []),
    ("monastery", []),
    ("mountain bike", ["all-terrain bike", "off-roader"]),
]


def _photo_paths() -> list[Path]:
    return list(real_photo_paths().values())


def make_images(count: int) -> list[bytes]:
    """Real photos and variants of them: cropped, rescaled (up to 2x) and re-encoded."""
    rng = random.Random(SEED)
    bases = []
    for path in _photo_paths():
        with Image.open(path) as im:
            bases.append(im.convert("RGB"))
    out = []
    for i in range(count):
        im = bases[i % len(bases)]
        w, h = im.size
        left, top = rng.randrange(0, w // 8), rng.randrange(0, h // 8)
        crop = im.crop((left, top, w - rng.randrange(0, w // 8), h - rng.randrange(0, h // 8)))
        scale = rng.choice([1.0, 1.0, 1.5, 2.0])
        if scale != 1.0:
            crop = crop.resize((int(crop.width * scale), int(crop.height * scale)))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=rng.randrange(80, 96))
        out.append(buf.getvalue())
    return out


def make_camera_images(count: int) -> list[bytes]:
    """Camera-sized JPEGs (12 Mpx, with sensor-like noise so they weigh what phone photos
    weigh): the photos upscaled to 4000x3000."""
    noise = np.random.default_rng(SEED).normal(0, 5, (3000, 4000, 3)).astype(np.int16)
    paths = _photo_paths()
    out = []
    for i in range(count):
        with Image.open(paths[i % len(paths)]) as im:
            big = im.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        pixels = np.asarray(big, dtype=np.int16) + np.roll(noise, i * 7, axis=1)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def camera_disk_ratio(work: Path) -> tuple[float, float, float, float]:
    """(ours, SQLite) on-disk bytes over raw bytes for camera-sized photos, and both ingest
    rates in MB/s."""
    datas = make_camera_images(CAMERA_IMAGES)
    prepared = [prepare_image(d) for d in tqdm(datas, desc="camera-sized photos", leave=False)]
    raw = sum(len(d) for d in datas)
    ours = ColumnStore.open(work / "camera-ours")
    (work / "camera-sqlite").mkdir()
    theirs = SqliteStore(work / "camera-sqlite" / "images.db")
    ours_s = sql_s = 0.0
    for i, p in enumerate(prepared):  # alternating, as for the web-sized set
        t = time.perf_counter()
        ours.put(f"DSC_{i:04d}.JPG", "bench", p)
        ours_s += time.perf_counter() - t
        t = time.perf_counter()
        theirs.put(f"DSC_{i:04d}.JPG", "bench", p)
        sql_s += time.perf_counter() - t
    ours_mb_s, sql_mb_s = raw / ours_s / 1e6, raw / sql_s / 1e6
    ours.close()
    print(f"camera-sized photos: {CAMERA_IMAGES} x {raw / CAMERA_IMAGES / 1e6:.2f} MB on average")
    return (
        directory_bytes(work / "camera-ours") / raw,
        theirs.disk_bytes() / raw,
        ours_mb_s,
        sql_mb_s,
    )


def annotations(rng: random.Random) -> AnnotationUpdate:
    picks = rng.sample(LABELS, 5)
    probs = sorted((rng.random() for _ in picks), reverse=True)
    return AnnotationUpdate(
        fields=frozenset({"labels", "feature_vector", "moderation_score", "ocr_text", "status"}),
        labels=tuple(
            Label(name, round(p, 4), tuple(syn), LABELS.index((name, syn)))
            for (name, syn), p in zip(picks, probs, strict=True)
        ),
        feature_vector=tuple(
            np.random.default_rng(rng.randrange(1 << 30)).random(VECTOR_DIM, "float32")
        ),
        moderation_score=round(rng.random() * 0.1, 4),
        ocr_text=rng.choice(["", "", "EXIT", "Coffee shop open 7am-5pm", "page 3 of 12"]),
        status=AnalysisStatus.READY,
        add_tags=tuple(rng.sample(["holiday", "family", "cat", "work", "2024"], 2)),
    )


# --- SQLite baseline ---------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE images (
  id TEXT PRIMARY KEY, filename TEXT, owner TEXT, content_type TEXT, format TEXT,
  created_at_ms INTEGER, sha256 TEXT, byte_size INTEGER, width INTEGER, height INTEGER,
  exif TEXT, thumb_content_type TEXT, thumb_small BLOB, thumb_preview BLOB, data BLOB,
  labels TEXT, feature_vector BLOB, moderation_score REAL, ocr_text TEXT, tags TEXT,
  status INTEGER, status_detail TEXT, feedback TEXT
);
CREATE INDEX images_filename ON images(filename, created_at_ms);
CREATE INDEX images_sha256 ON images(sha256);
"""
META_COLS = (
    "id, filename, owner, content_type, format, created_at_ms, sha256, byte_size, "
    "width, height, exif, labels, moderation_score, ocr_text, tags, status, "
    "status_detail, feedback"
)


def sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class SqliteStore:
    """The same table in SQLite; each write its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite_connect(path)
        self.db.executescript(SQLITE_SCHEMA)
        self._local = threading.local()
        self._n = 0
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite_connect(self.path)
        return conn

    def put(self, filename: str, owner: str, image: PreparedImage) -> str:
        with self._lock:
            self._n += 1
            image_id = f"{int(time.time() * 1000):012x}{self._n:020x}"
        db = self._conn()
        db.execute("SELECT id FROM images WHERE sha256 = ?", (image.sha256,)).fetchall()
        db.execute(
            "INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                image_id,
                filename,
                owner,
                image.content_type,
                image.format,
                int(time.time() * 1000),
                image.sha256,
                len(image.data),
                image.width,
                image.height,
                json.dumps(image.exif),
                image.thumb_content_type,
                image.thumb_small,
                image.thumb_preview,
                image.data,
                "[]",
                b"",
                0.0,
                "",
                "[]",
                1,
                "",
                "[]",
            ),
        )
        return image_id

    def annotate(self, image_id: str, update: AnnotationUpdate) -> None:
        labels = json.dumps(
            [
                {
                    "name": lb.name,
                    "p": lb.probability,
                    "syn": list(lb.synonyms),
                    "ci": lb.class_index,
                }
                for lb in update.labels
            ]
        )
        vector = np.asarray(update.feature_vector, dtype="<f4").tobytes()
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        (tags,) = db.execute("SELECT tags FROM images WHERE id = ?", (image_id,)).fetchone()
        tags = json.dumps(sorted(set(json.loads(tags)) | set(update.add_tags)))
        db.execute(
            "UPDATE images SET labels=?, feature_vector=?, moderation_score=?, ocr_text=?, "
            "status=?, tags=? WHERE id=?",
            (
                labels,
                vector,
                update.moderation_score,
                update.ocr_text,
                int(update.status),
                tags,
                image_id,
            ),
        )
        db.execute("COMMIT")

    def get(self, image_id: str) -> tuple[Any, ...]:
        return self.db.execute(
            f"SELECT {META_COLS}, data FROM images WHERE id = ?", (image_id,)
        ).fetchone()

    def find_by_filename(self, filename: str) -> list[tuple[Any, ...]]:
        return self.db.execute(
            f"SELECT {META_COLS} FROM images WHERE filename = ? ORDER BY created_at_ms DESC",
            (filename,),
        ).fetchall()

    def disk_bytes(self) -> int:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return directory_bytes(self.path.parent)


# --- measuring ---------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_calls(fn: Callable[[Any], Any], args: list[Any]) -> list[float]:
    out = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        out.append(time.perf_counter() - t)
    return out


def run_threads(fn: Callable[[int], None], n: int) -> float:
    threads = [threading.Thread(target=fn, args=(k,)) for k in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


STORE_LABELS = {"ours": "ours", "adaptive": "adaptive", "sqlite": "SQLite"}


def _round_order(r: int) -> list[str]:
    """The order the stores run in round `r`: each goes first, second and last in turn."""
    names = ["ours", "adaptive", "sqlite"]
    k = r % 3
    order = names[k:] + names[:k]
    return order if r % 6 < 3 else order[::-1]


class IngestRounds:
    """Wall time, CPU time (the whole process: our fsyncs' kernel time included) and fsyncs of
    each store's ingest rounds, and each round's ratios with the load average."""

    def __init__(self) -> None:
        self.wall: dict[tuple[int, str], float] = {}
        self.cpu: dict[tuple[int, str], float] = {}
        self.puts: dict[tuple[int, str], int] = {}
        self.fsyncs: dict[tuple[int, str], int] = {}
        self.waits: dict[tuple[int, str], tuple[int, int]] = {}
        self.rounds: dict[int, list[tuple[dict[str, float], float]]] = {}
        self._round: dict[str, float] = {}
        self._stores: dict[str, Any] = {}

    def run(self, writers: int, name: str, store: Any, fn: Callable[[int], Any], puts: int) -> None:
        """Run `fn(k)` in `writers` threads against `store` (ours, or None for SQLite)."""
        before = _wal_counts(store)
        cpu = time.process_time()
        wall = run_threads(fn, writers)
        cpu = time.process_time() - cpu
        after = _wal_counts(store)
        key = (writers, name)
        self.wall[key] = self.wall.get(key, 0.0) + wall
        self.cpu[key] = self.cpu.get(key, 0.0) + cpu
        self.puts[key] = self.puts.get(key, 0) + puts
        self.fsyncs[key] = self.fsyncs.get(key, 0) + after[0] - before[0]
        w, t = self.waits.get(key, (0, 0))
        self.waits[key] = (w + after[1] - before[1], t + after[2] - before[2])
        self._round[name] = wall

    def end_round(self, writers: int) -> None:
        self.rounds.setdefault(writers, []).append((dict(self._round), os.getloadavg()[0]))
        self._round = {}

    def rates(self, writers: int, name: str = "ours") -> tuple[float, float]:
        def rate(n: str) -> float:
            return self.puts[(writers, n)] / self.wall[(writers, n)]

        return rate(name), rate("sqlite")

    def report(self, wal: Any) -> None:
        print()
        for writers in sorted(self.rounds):
            ours, sql = self.rates(writers)
            adaptive = self.rates(writers, "adaptive")[0]
            label = "1 writer" if writers == 1 else f"{writers} writers"
            print(
                f"ingest, {label}: ours {ours:.0f} img/s ({ours / sql:.2f}x SQLite), with the "
                f"adaptive wait {adaptive:.0f} img/s ({adaptive / sql:.2f}x), "
                f"SQLite {sql:.0f} img/s"
            )
            for name in ("ours", "adaptive", "sqlite"):
                key = (writers, name)
                cpu_ms = self.cpu[key] / self.puts[key] * 1e3
                line = f"  {STORE_LABELS[name]:8s} CPU per put {cpu_ms:.3f} ms"
                if name != "sqlite":
                    waits, timed_out = self.waits[key]
                    line += (
                        f", {self.fsyncs[key] / self.puts[key]:.2f} fsyncs per put, "
                        f"{waits} waits for writers in flight ({timed_out} ran out of time)"
                    )
                print(line)
            print(
                "  per round ours/SQLite, adaptive/SQLite (load average): "
                + ", ".join(
                    f"{w['sqlite'] / w['ours']:.2f}x {w['sqlite'] / w['adaptive']:.2f}x "
                    f"({load:.1f})"
                    for w, load in self.rounds[writers]
                )
            )
        print(f"our fsync time, moving average at the end: {wal.fsync_average_s * 1e3:.3f} ms")


def _wal_counts(store: Any) -> tuple[int, int, int]:
    if store is None:
        return 0, 0, 0
    wal = store._wal
    return wal.fsyncs, wal.group_waits, wal.group_waits_timed_out


def level_table(store_dir: Path) -> list[tuple[int, float, float]]:
    """(level, ratio, MB/s) of zstd on our metadata columns' plain bytes."""
    raws = []
    for path in sorted((store_dir / "segments").glob("*.seg")):
        seg = SegmentReader(path)
        for name in METADATA_COLUMNS:
            kind = BY_NAME[name].kind
            raw, width = fmt.encode_values(kind, seg.column(name))
            raws.append(fmt.shuffle(raw, width))
    total = sum(len(r) for r in raws)
    rows = []
    for level in (1, 3, 6, 9, 15, 19):
        t = time.perf_counter()
        stored = sum(len(zstandard.ZstdCompressor(level=level).compress(r)) for r in raws)
        rows.append((level, total / stored, total / (time.perf_counter() - t) / 1e6))
    return rows


def main() -> None:
    rng = random.Random(SEED)
    work = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    try:
        _run(work, rng)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, rng: random.Random) -> None:
    print(
        f"images: {IMAGES} real photos and variants; stores driven directly (not over gRPC);"
        " every write durable before it returns in both",
        flush=True,
    )
    datas = make_images(IMAGES)
    started = time.perf_counter()
    prepared = [prepare_image(d) for d in tqdm(datas, desc="validate + thumbnails", leave=False)]
    prepare_s = time.perf_counter() - started
    raw_bytes = sum(len(d) for d in datas)
    print(
        f"raw image bytes: {raw_bytes / 1e6:.1f} MB; validate + thumbnails (same for both, "
        f"not in the timings below): {prepare_s / IMAGES * 1e3:.1f} ms/image"
    )
    filenames = [f"IMG_{i % 100:04d}.JPG" for i in range(IMAGES)]
    updates = [annotations(rng) for _ in range(IMAGES)]

    ours = ColumnStore.open(work / "ours")
    (work / "sqlite").mkdir()
    theirs = SqliteStore(work / "sqlite" / "images.db")
    results: dict[str, tuple[float, float]] = {}

    # A second store of ours with the adaptive group-commit wait (the fsync's leader waits for
    # the writers in flight at most about as long as a recent fsync took, capped at 1 ms,
    # against the default: up to 1 ms) gets the same puts, in the same rounds, so both
    # policies are compared in the same run; its single-writer rounds (the same code: a lone
    # writer never waits) show the noise.
    adaptive = ColumnStore.open(work / "ours-adaptive-wait")
    adaptive._wal.group_wait_fraction = ADAPTIVE_GROUP_WAIT_FRACTION
    ingest = IngestRounds()

    # Ingest, one writer: each put durable before the next. Rounds alternate between the
    # stores (the order changing each round) so that load from other processes on the machine
    # hits them alike; each round's ratio is printed with the load average.
    our_ids: list[str] = []
    sql_ids: list[str] = []
    adaptive_ids: list[str] = []
    for r, start in enumerate(range(0, IMAGES, IMAGES // ROUNDS)):
        batch = range(start, min(start + IMAGES // ROUNDS, IMAGES))

        def put_ours(i: int) -> None:
            our_ids.append(ours.put(filenames[i], "bench", prepared[i]).image.id)

        def put_sql(i: int) -> None:
            sql_ids.append(theirs.put(filenames[i], "bench", prepared[i]))

        def put_adaptive(i: int) -> None:
            adaptive_ids.append(adaptive.put(filenames[i], "bench", prepared[i]).image.id)

        calls = {
            "ours": (ours, put_ours),
            "adaptive": (adaptive, put_adaptive),
            "sqlite": (None, put_sql),
        }
        for name in _round_order(r):
            store, put = calls[name]
            ingest.run(1, name, store, lambda _k, p=put, b=batch: [p(i) for i in b], len(batch))
        ingest.end_round(1)
    results["ingest, 1 writer (images/s)"] = ingest.rates(1)

    # Annotate every image, as the vision service does after ingest.
    t = time.perf_counter()
    for image_id, update in zip(our_ids, updates, strict=True):
        ours.update_annotations(image_id, update)
    ours_annotate = IMAGES / (time.perf_counter() - t)
    t = time.perf_counter()
    for image_id, update in zip(sql_ids, updates, strict=True):
        theirs.annotate(image_id, update)
    results["annotate, 1 writer (updates/s)"] = (ours_annotate, IMAGES / (time.perf_counter() - t))
    for image_id, update in zip(adaptive_ids, updates, strict=True):  # its log as long as ours
        adaptive.update_annotations(image_id, update)

    # Ingest, several writers at once (our group commit shares fsyncs; SQLite serialises).
    per = IMAGES // THREADS
    for r in range(ROUNDS):
        lo, hi = r * per // ROUNDS, (r + 1) * per // ROUNDS

        def writer(store: Any, k: int, lo: int = lo, hi: int = hi) -> None:
            for i in range(k * per + lo, k * per + hi):
                store.put(filenames[i], "bench2", prepared[i])

        stores: dict[str, Any] = {"ours": ours, "adaptive": adaptive, "sqlite": theirs}
        for name in _round_order(r):
            store = stores[name]
            ingest.run(
                THREADS,
                name,
                None if name == "sqlite" else store,
                lambda k, st=store: writer(st, k),
                THREADS * (hi - lo),
            )
        ingest.end_round(THREADS)
    results[f"ingest, {THREADS} writers (images/s)"] = ingest.rates(THREADS)
    adaptive.close()

    ours.flush()  # lookups below read from segment files, not the memtable
    lookup_rng = random.Random(SEED + 1)
    picks = [lookup_rng.randrange(IMAGES) for _ in range(LOOKUPS)]
    ours_get = timed_calls(ours.read_data, [our_ids[i] for i in picks])
    sql_get = timed_calls(theirs.get, [sql_ids[i] for i in picks])
    names = [filenames[i] for i in picks]
    ours_find = timed_calls(ours.find_by_filename, names)
    sql_find = timed_calls(theirs.find_by_filename, names)
    assert ours.read_data(our_ids[5])[1] == datas[5]
    assert theirs.get(sql_ids[5])[-1] == datas[5]

    ours.compact()
    t = time.perf_counter()
    scrub = ours.verify()
    scrub_s = time.perf_counter() - t
    assert scrub.ok, scrub.damaged
    stats = ours.stats()
    levels = level_table(work / "ours")
    ours.close()  # both measured at rest: our log is empty, SQLite's is checkpointed
    ours_disk = directory_bytes(work / "ours")
    sql_disk = theirs.disk_bytes()
    all_raw = raw_bytes * 2  # every image was ingested twice (1-writer and N-writer runs)
    columns = {c.name: c for c in stats.columns}
    meta_raw = sum(columns[n].raw_bytes for n in METADATA_COLUMNS)
    meta_stored = sum(columns[n].stored_bytes for n in METADATA_COLUMNS)
    thumbs = sum(columns[n].stored_bytes for n in ("thumb_small", "thumb_preview"))

    print(f"\n{'':38s} {'ours':>12s} {'SQLite':>12s} {'ours/SQLite':>12s}")
    for name, (a, b) in results.items():
        print(f"{name:38s} {a:12.1f} {b:12.1f} {a / b:11.2f}x")
    for name, a_s, b_s in (
        ("get by id + bytes", ours_get, sql_get),
        ("get by filename", ours_find, sql_find),
    ):
        for q in (0.5, 0.99):
            a, b = percentile(a_s, q) * 1e6, percentile(b_s, q) * 1e6
            label = f"{name} p{int(q * 100)} (us)"
            print(f"{label:38s} {a:12.1f} {b:12.1f} {a / b:11.2f}x  (lower is better)")
    print(
        f"{'on-disk bytes / raw image bytes':38s} {ours_disk / all_raw:12.4f} "
        f"{sql_disk / all_raw:12.4f} {ours_disk / sql_disk:11.3f}x  (lower is better)"
    )
    camera_ours, camera_sql, camera_ours_mb, camera_sql_mb = camera_disk_ratio(work)
    print(
        f"{'camera photos: ingest (MB/s)':38s} {camera_ours_mb:12.1f} {camera_sql_mb:12.1f} "
        f"{camera_ours_mb / camera_sql_mb:11.2f}x"
    )
    print(
        f"{'camera photos: on-disk / raw bytes':38s} {camera_ours:12.4f} {camera_sql:12.4f} "
        f"{camera_ours / camera_sql:11.3f}x  (lower is better)"
    )
    ingest.report(ours._wal)
    print(
        f"our disk: {ours_disk / 1e6:.2f} MB = image bytes {columns['data'].stored_bytes / 1e6:.2f}"
        f" MB (stored raw: {columns['data'].stored_bytes == columns['data'].raw_bytes}) + "
        f"thumbnails {thumbs / 1e6:.2f} MB + vectors "
        f"{columns['feature_vector'].stored_bytes / 1e6:.2f} MB + metadata "
        f"{meta_stored / 1e6:.3f} MB"
    )
    print(
        f"verify (scrub, every block and value checked): {scrub.bytes_checked / 1e6:.1f} MB in "
        f"{scrub_s:.2f} s = {scrub.bytes_checked / 1e6 / scrub_s:.0f} MB/s"
    )
    without_thumbs = (ours_disk - thumbs) / all_raw
    print(f"on-disk / raw image bytes without thumbnails: {without_thumbs:.4f}")
    print(
        f"metadata columns: {meta_raw / 1e3:.1f} kB raw -> {meta_stored / 1e3:.1f} kB stored "
        f"= {meta_raw / meta_stored:.2f}x smaller"
    )
    print(
        "zstd level on our metadata blocks (level, ratio, MB/s): "
        + ", ".join(f"{lv}: {r:.2f}x {s:.0f}" for lv, r, s in levels)
        + f"; we use {fmt.SMALL_COLUMN_LEVEL}"
    )
    goals = {
        "ingest at least as fast as SQLite": results["ingest, 1 writer (images/s)"][0]
        >= results["ingest, 1 writer (images/s)"][1],
        "get by id at least as fast (p50)": statistics.median(ours_get)
        <= statistics.median(sql_get),
        "get by filename at least as fast (p50)": statistics.median(ours_find)
        <= statistics.median(sql_find),
        "on-disk within 3% of raw image bytes (web-sized set)": ours_disk <= all_raw * 1.03,
        "on-disk within 3% of raw image bytes (camera-sized set)": camera_ours <= 1.03,
        "metadata at least 3x smaller": meta_raw >= 3 * meta_stored,
    }
    print("\ngoals: " + "; ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in goals.items()))


if __name__ == "__main__":
    main()
