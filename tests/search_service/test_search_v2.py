"""imagerepo.search.v2 served beside v1 over the same index, on real gRPC: opaque page tokens
that survive index changes between pages, enums where v1 has strings, Timestamps, and v1
still answering on the same port."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from imagerepo.common.v1 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as v1
from imagerepo.search.v1 import search_service_pb2_grpc as v1_grpc
from imagerepo.search.v2 import search_service_pb2 as pb
from imagerepo.search.v2 import search_service_pb2_grpc as pb_grpc
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams
from search_service.server import build_server

DIM = 1280


@pytest.fixture
def channel() -> Iterator[grpc.Channel]:
    """A search server (in-memory index, no feed, so v1's IndexImage fills it) on a free port."""
    server, port, health = build_server(
        "127.0.0.1:0", index=DurableIndex.open(None, EngineParams())
    )
    server.start()
    health.set_serving(True)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    server.stop(grace=None)


@pytest.fixture
def v1_stub(channel: grpc.Channel) -> v1_grpc.SearchServiceStub:
    return v1_grpc.SearchServiceStub(channel)


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.SearchServiceStub:
    return pb_grpc.SearchServiceStub(channel)


def vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def index(v1_stub: v1_grpc.SearchServiceStub, image_id: str, tags: list[str], **fields) -> None:
    document = v1.SearchDocument(
        image_id=image_id,
        filename=fields.pop("filename", f"{image_id}.jpg"),
        owner=fields.pop("owner", "alice"),
        tags=tags,
        status=common_pb2.ANALYSIS_STATUS_READY,
        **fields,
    )
    v1_stub.IndexImage(v1.IndexImageRequest(document=document), timeout=5)


def all_pages(stub: pb_grpc.SearchServiceStub, request: pb.SearchRequest) -> list[str]:
    ids: list[str] = []
    while True:
        reply = stub.Search(request, timeout=5)
        ids += [hit.image_id for hit in reply.hits]
        if not reply.next_page_token:
            return ids
        request.page_token = reply.next_page_token


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details()
    return info.value.code()


def test_pages_follow_each_other_with_opaque_tokens(v1_stub, stub):
    for i in range(7):
        index(v1_stub, f"img{i}", ["beach"])

    first = stub.Search(pb.SearchRequest(query="beach", page_size=3), timeout=5)
    ids = all_pages(stub, pb.SearchRequest(query="beach", page_size=3))

    assert sorted(ids) == [f"img{i}" for i in range(7)] and len(set(ids)) == 7
    assert first.total_hits == 7 and len(first.hits) == 3
    token = first.next_page_token
    assert not token.isdigit()
    assert base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))  # base64url


def test_images_indexed_above_the_cursor_neither_repeat_nor_skip_hits(v1_stub, stub):
    for i in range(6):
        index(v1_stub, f"img{i}", ["beach"])
    first = stub.Search(pb.SearchRequest(query="beach", page_size=3), timeout=5)
    seen = [hit.image_id for hit in first.hits]
    # Two images that rank above every page-one hit (the word in the filename too).
    index(v1_stub, "new1", ["beach"], filename="beach.jpg")
    index(v1_stub, "new2", ["beach"], filename="beach sunny.jpg")

    rest = all_pages(
        stub, pb.SearchRequest(query="beach", page_size=3, page_token=first.next_page_token)
    )

    first_ranked = stub.Search(pb.SearchRequest(query="beach", page_size=2), timeout=5).hits
    assert {hit.image_id for hit in first_ranked} == {"new1", "new2"}
    assert not set(seen) & set(rest)
    assert sorted(seen + rest) == [f"img{i}" for i in range(6)]


def test_images_removed_above_the_cursor_skip_no_hit(v1_stub, stub):
    for i in range(6):
        index(v1_stub, f"img{i}", ["beach"])
    first = stub.Search(pb.SearchRequest(query="beach", page_size=3), timeout=5)
    seen = [hit.image_id for hit in first.hits]
    v1_stub.RemoveImage(v1.RemoveImageRequest(image_id=seen[0]), timeout=5)
    v1_stub.RemoveImage(v1.RemoveImageRequest(image_id=seen[1]), timeout=5)

    rest = all_pages(
        stub, pb.SearchRequest(query="beach", page_size=3, page_token=first.next_page_token)
    )

    assert sorted(seen + rest) == [f"img{i}" for i in range(6)]


def test_a_token_of_another_query_is_invalid_argument(v1_stub, stub):
    for i in range(4):
        index(v1_stub, f"img{i}", ["beach", "sea"])
    token = stub.Search(pb.SearchRequest(query="beach", page_size=2), timeout=5).next_page_token

    other_query = pb.SearchRequest(query="sea", page_size=2, page_token=token)
    other_filter = pb.SearchRequest(
        query="beach", page_size=2, page_token=token, filters=pb.SearchFilters(owner="bob")
    )

    assert code_of(lambda: stub.Search(other_query, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: stub.Search(other_filter, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("token", ["3", "not-a-token", base64.urlsafe_b64encode(b"{}").decode()])
def test_a_raw_offset_or_garbage_token_is_invalid_argument(v1_stub, stub, token):
    index(v1_stub, "img0", ["beach"])

    request = pb.SearchRequest(query="beach", page_token=token)

    assert code_of(lambda: stub.Search(request, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT


def test_match_reasons_are_enums(v1_stub, stub):
    index(v1_stub, "a", ["beach"], filename="beach.jpg")

    reply = stub.Search(pb.SearchRequest(query="beach"), timeout=5)

    fields = {reason.field for reason in reply.hits[0].reasons}
    assert fields == {pb.MATCH_FIELD_TAGS, pb.MATCH_FIELD_FILENAME}


def test_taken_range_filters_with_timestamps(v1_stub, stub):
    index(v1_stub, "old", ["beach"], exif={"taken_at": "2019:07:01 10:00:00"})
    index(v1_stub, "new", ["beach"], exif={"taken_at": "2024:07:01 10:00:00"})
    since = Timestamp()
    since.FromJsonString("2020-01-01T00:00:00Z")

    reply = stub.Search(
        pb.SearchRequest(query="beach", filters=pb.SearchFilters(taken_from=since)), timeout=5
    )
    before_epoch = pb.SearchRequest(
        query="beach", filters=pb.SearchFilters(taken_from=Timestamp(seconds=-5))
    )

    assert [hit.image_id for hit in reply.hits] == ["new"]
    assert code_of(lambda: stub.Search(before_epoch, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT


def test_similar_images_and_duplicates(v1_stub, stub):
    base = vector(1)
    near = (np.asarray(base) + 0.01 * np.asarray(vector(2))).tolist()
    index(v1_stub, "a", ["x"], feature_vector=base, sha256="aa" * 32)
    index(v1_stub, "b", ["x"], feature_vector=near, sha256="bb" * 32)
    index(v1_stub, "c", ["x"], feature_vector=vector(3), sha256="aa" * 32)

    similar = stub.SimilarImages(pb.SimilarImagesRequest(image_id="a", k=1), timeout=5)
    duplicates = stub.FindDuplicates(pb.FindDuplicatesRequest(near_threshold=0.95), timeout=5)
    missing = pb.SimilarImagesRequest(image_id="nope")

    assert [hit.image_id for hit in similar.hits] == ["b"]
    assert [sorted(g.image_ids) for g in duplicates.exact_groups] == [["a", "c"]]
    assert duplicates.exact_groups[0].sha256 == "aa" * 32
    assert any({"a", "b"} <= set(g.image_ids) for g in duplicates.near_groups)
    assert code_of(lambda: stub.SimilarImages(missing, timeout=5)) == grpc.StatusCode.NOT_FOUND


def test_stats_name_the_backend_with_an_enum(v1_stub, stub):
    index(v1_stub, "a", ["beach"], feature_vector=vector(1))

    stats = stub.GetStats(pb.GetStatsRequest(), timeout=5)

    assert stats.document_count == 1
    assert stats.vector_backend == pb.VECTOR_BACKEND_EXACT
    assert stats.HasField("load_duration")


def test_suggestions_name_their_field(v1_stub, stub):
    index(v1_stub, "a", ["beachball"])

    reply = stub.Suggest(pb.SuggestRequest(prefix="beac"), timeout=5)

    assert [(s.text, s.field) for s in reply.suggestions] == [("beachball", pb.MATCH_FIELD_TAGS)]


def test_v1_is_still_served_and_reflection_lists_both(channel, v1_stub, stub):
    index(v1_stub, "a", ["beach"])

    old = v1_stub.Search(v1.SearchRequest(query="beach"), timeout=5)
    new = stub.Search(pb.SearchRequest(query="beach"), timeout=5)
    listing = next(
        reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )

    assert [h.image_id for h in old.hits] == [h.image_id for h in new.hits] == ["a"]
    assert old.hits[0].reasons[0].field == "tags"
    services = {s.name for s in listing.list_services_response.service}
    assert {"imagerepo.search.v1.SearchService", "imagerepo.search.v2.SearchService"} <= services
    health = health_pb2_grpc.HealthStub(channel)
    for version in ("v1", "v2"):
        name = f"imagerepo.search.{version}.SearchService"
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name
