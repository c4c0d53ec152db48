"""The client library's search over v2 against a real storage service and a real search
service that follows storage's feed: a search read page by page (opaque tokens) hands out
every match exactly once, even while new matches are stored between pages."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from imagerepo_client import ImageRepoClient
from PIL import Image

from imagerepo.common.v2 import common_pb2 as common
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from search_service.durable_index import DurableIndex
from search_service.feed_consumer import FeedConsumer
from search_service.server import build_server as build_search_server
from search_service.storage_feed import StorageFeed
from storage_service.columnstore.store import ColumnStore
from storage_service.server import build_server as build_storage_server


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[ImageRepoClient]:
    """Storage, and search following its feed, on free ports; a client of both."""
    store = ColumnStore.open(tmp_path / "storage")
    storage, storage_port, storage_health = build_storage_server(store, "127.0.0.1:0")
    storage.start()
    storage_health.set_serving(True)
    address = f"127.0.0.1:{storage_port}"
    index = DurableIndex.open(None)
    source = StorageFeed(address)
    feed = FeedConsumer(index, source, retry_initial_s=0.05, retry_max_s=0.3)
    search, search_port, search_health = build_search_server("127.0.0.1:0", 4, index, feed)
    search.start()
    search_health.set_serving(True)
    feed.start()
    client = ImageRepoClient(
        storage_address=address, search_address=f"127.0.0.1:{search_port}", owner="pages"
    )
    yield client
    client.close()
    search.stop(grace=None)
    feed.stop()
    source.close()
    storage.stop(grace=None).wait()
    store.close()


def store_ready(
    repo: ImageRepoClient, photo_jpegs: dict[str, bytes], tag: str, filename: str = "photo.jpg"
) -> str:
    """A real photo stored with a tag and marked analysed (search indexes READY images)."""
    with Image.open(io.BytesIO(photo_jpegs["rocket"])) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, "JPEG", comment=uuid.uuid4().hex.encode())
    image = repo.upload(out.getvalue(), filename, tags=[tag]).image
    repo.storage.stub.UpdateAnnotations(
        storage_pb.UpdateAnnotationsRequest(
            image_id=image.id,
            annotations=storage_pb.Annotations(status=common.ANALYSIS_STATUS_READY),
            update_mask=FieldMask(paths=["status"]),
        ),
        timeout=10,
    )
    return image.id


def test_search_pages_hand_out_every_match_once(repo, photo_jpegs):
    ids = {store_ready(repo, photo_jpegs, "kayak") for _ in range(7)}
    repo.wait_until_searchable(10)

    found = [r.image.id for r in repo.iter_search("kayak", page_size=2)]

    assert sorted(found) == sorted(ids)
    assert all(("tags", "kayak") in r.reasons for r in repo.iter_search("kayak", page_size=3))


def test_matches_stored_between_pages_neither_repeat_nor_hide_earlier_ones(repo, photo_jpegs):
    first_ids = {store_ready(repo, photo_jpegs, "kayak") for _ in range(6)}
    repo.wait_until_searchable(10)
    pages = repo.iter_search("kayak", page_size=2)
    seen = [next(pages).image.id, next(pages).image.id]

    # These rank above every match handed out so far (the word in their filename too).
    later_ids = {store_ready(repo, photo_jpegs, "kayak", "kayak.jpg") for _ in range(3)}
    repo.wait_until_searchable(10)
    seen += [r.image.id for r in pages]

    top = [r.image.id for r in repo.search("kayak", limit=3)]
    assert set(top) == later_ids
    assert len(seen) == len(set(seen))
    assert set(seen) == first_ids
