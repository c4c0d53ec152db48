"""Listing by date taken: EXIF DateTimeOriginal (else the upload time), newest or oldest first,
within a half-open range, paged with tokens that hold while images come and go."""

from __future__ import annotations

import io

import grpc
import pytest
from PIL import Image

from imagerepo.storage.v1 import storage_service_pb2 as pb
from storage_service.columnstore.errors import InvalidRequestError
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.model import AnnotationUpdate, ListOrder, PreparedImage
from storage_service.columnstore.store import ColumnStore
from storage_service.columnstore.taken_index import parse_exif_time

from .conftest import SMALL_MEMTABLE, jpeg_variant, put

ORIGINAL = 0x9003  # EXIF DateTimeOriginal
EXIF_IFD = 0x8769


def with_date_taken(data: bytes, seed: int, taken: str | None) -> bytes:
    """A small distinct JPEG of a real photo, with DateTimeOriginal written when given."""
    with Image.open(io.BytesIO(jpeg_variant(data, seed))) as im:
        im = im.convert("RGB")
        im.thumbnail((96, 96))
        exif = Image.Exif()
        if taken is not None:
            exif.get_ifd(EXIF_IFD)[ORIGINAL] = taken
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=75, exif=exif.tobytes())
        return buf.getvalue()


# Taken out of upload order on purpose; one photo has no date (sorts by its upload time, now).
DATES = [
    "2019:05:01 10:00:00",
    "2003:12:24 18:30:00",
    "2021:07:04 09:15:00",
    None,
    "2010:01:01 00:00:00",
    "1999:08:11 12:00:00",
    "2015:06:30 23:59:59",
]


@pytest.fixture(scope="module")
def dated_photos(photo_jpegs: dict[str, bytes]) -> list[PreparedImage]:
    photos = list(photo_jpegs.values())
    return [
        prepare_image(with_date_taken(photos[i % len(photos)], i, taken))
        for i, taken in enumerate(DATES)
    ]


def _taken_newest(store: ColumnStore, **kw) -> list[str]:
    out: list[str] = []
    token = ""
    while True:
        page = store.list_images(2, token, order=ListOrder.TAKEN_NEWEST, **kw)
        out += [m.id for m in page.images]
        token = page.next_page_token
        if not token:
            return out


def test_exif_date_taken_is_read_from_real_photos(bare_store, dated_photos):
    metas = [bare_store.put(f"{i}.jpg", "ann", p).image for i, p in enumerate(dated_photos)]

    assert metas[0].exif["taken_at"] == "2019:05:01 10:00:00"
    assert metas[0].taken_at_ms == parse_exif_time("2019:05:01 10:00:00")
    assert not metas[0].taken_at_is_upload_time
    assert metas[3].taken_at_is_upload_time
    assert metas[3].taken_at_ms == metas[3].created_at_ms


def test_list_by_date_taken_newest_and_oldest_first_across_pages(tmp_path, dated_photos):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    metas = [store.put(f"{i}.jpg", "ann", p).image for i, p in enumerate(dated_photos)]
    expected = [m.id for m in sorted(metas, key=lambda m: m.taken_at_ms, reverse=True)]

    newest = _taken_newest(store)
    oldest = []
    token = ""
    while True:
        page = store.list_images(3, token, order=ListOrder.TAKEN_OLDEST)
        oldest += [m.id for m in page.images]
        token = page.next_page_token
        if not token:
            break

    assert newest == expected
    assert newest[0] == metas[3].id  # no EXIF date: taken "now", at upload
    assert oldest == expected[::-1]
    assert store.list_images(2, order=ListOrder.TAKEN_NEWEST).total_count == len(DATES)
    store.close()


def test_taken_range_is_half_open(bare_store, dated_photos):
    metas = [bare_store.put(f"{i}.jpg", "ann", p).image for i, p in enumerate(dated_photos)]
    start = parse_exif_time("2003:12:24 18:30:00")
    end = parse_exif_time("2019:05:01 10:00:00")

    page = bare_store.list_images(
        50, order=ListOrder.TAKEN_OLDEST, taken_from_ms=start, taken_to_ms=end
    )

    assert [m.id for m in page.images] == [metas[1].id, metas[4].id, metas[6].id]
    assert page.total_count == 3


def test_order_survives_restart_flush_and_compaction(tmp_path, dated_photos):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    [store.put(f"{i}.jpg", "ann", p) for i, p in enumerate(dated_photos)]
    before = _taken_newest(store)
    store.flush()
    store.compact()
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)

    assert _taken_newest(reopened) == before
    reopened.close()


def test_page_tokens_hold_while_images_are_added_and_deleted(bare_store, dated_photos):
    metas = [bare_store.put(f"{i}.jpg", "ann", p).image for i, p in enumerate(dated_photos[:6])]
    expected = [m.id for m in sorted(metas, key=lambda m: m.taken_at_ms, reverse=True)]
    first = bare_store.list_images(2, order=ListOrder.TAKEN_NEWEST)
    assert [m.id for m in first.images] == expected[:2]

    # Taken 2015 (after the boundary: it shows up further on), and a deletion further on.
    late = bare_store.put("late.jpg", "ann", dated_photos[6]).image
    bare_store.delete(expected[3])
    rest = []
    token = first.next_page_token
    while token:
        page = bare_store.list_images(2, token, order=ListOrder.TAKEN_NEWEST)
        rest += [m.id for m in page.images]
        token = page.next_page_token

    # now, 2021 | 2019, [2015 added], [2010 deleted], 2003, 1999
    assert rest == [expected[2], late.id, expected[4], expected[5]]


def test_owner_status_and_trash_filters_with_taken_order(bare_store, dated_photos):
    metas = [
        bare_store.put(f"{i}.jpg", "ann" if i % 2 else "bob", p).image
        for i, p in enumerate(dated_photos)
    ]
    anns = sorted((m for m in metas if m.owner == "ann"), key=lambda m: -m.taken_at_ms)
    bare_store.update_annotations(
        anns[0].id, AnnotationUpdate(frozenset({"trashed"}), trashed=True)
    )

    listed = _taken_newest(bare_store, owner="ann")
    trash = bare_store.list_images(order=ListOrder.TAKEN_NEWEST, trashed_only=True)
    bare_store.update_annotations(
        anns[0].id, AnnotationUpdate(frozenset({"trashed"}), trashed=False)
    )
    restored = _taken_newest(bare_store, owner="ann")

    assert listed == [m.id for m in anns[1:]]
    assert [m.id for m in trash.images] == [anns[0].id]
    assert restored == [m.id for m in anns]
    assert bare_store.list_images(order=ListOrder.TAKEN_NEWEST, owner="nobody").total_count == 0


def test_a_token_of_another_order_is_refused(bare_store, dated_photos):
    [bare_store.put(f"{i}.jpg", "ann", p) for i, p in enumerate(dated_photos)]
    token = bare_store.list_images(2, order=ListOrder.TAKEN_NEWEST).next_page_token

    with pytest.raises(InvalidRequestError):
        bare_store.list_images(2, token, order=ListOrder.TAKEN_OLDEST)
    with pytest.raises(InvalidRequestError):
        bare_store.list_images(2, token)


def test_list_images_rpc_orders_by_date_taken(storage, photo_jpegs):
    photos = list(photo_jpegs.values())
    for i, taken in enumerate(DATES[:4]):
        put(storage.stub, with_date_taken(photos[i], i, taken), f"{i}.jpg", "ann")

    reply = storage.stub.ListImages(
        pb.ListImagesRequest(
            order=pb.LIST_ORDER_TAKEN_OLDEST,
            taken_from_unix_ms=parse_exif_time("2000:01:01 00:00:00"),
            taken_to_unix_ms=parse_exif_time("2022:01:01 00:00:00"),
        ),
        timeout=10,
    )

    assert [m.exif["taken_at"] for m in reply.images] == [
        "2003:12:24 18:30:00",
        "2019:05:01 10:00:00",
        "2021:07:04 09:15:00",
    ]
    assert reply.images[0].taken_at_unix_ms == parse_exif_time("2003:12:24 18:30:00")
    assert not reply.images[0].taken_at_is_upload_time
    with pytest.raises(grpc.RpcError) as e:
        storage.stub.ListImages(pb.ListImagesRequest(taken_to_unix_ms=5), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_date_taken_parse_rejects_garbage():
    assert parse_exif_time("not a date") is None
    assert parse_exif_time("0000:00:00 00:00:00") is None
    assert parse_exif_time("2020:02:29 12:00:00") == 1582977600000
