"""The id allow-list filter (an album's members): only listed images match, an empty list
matches nothing, ids the index does not hold are ignored; in the engine and over gRPC."""

from __future__ import annotations

import grpc
import pytest

from imagerepo.search.v1 import search_service_pb2 as pb
from search_service.engine import EngineParams, Filters, SearchIndex
from tests.search_service.documents import DIM, doc
from tests.search_service.test_server import _doc, _index


def _ids(result) -> list[str]:
    return sorted(h.image_id for h in result.hits)


def test_only_listed_images_match_and_an_empty_list_matches_nothing():
    ix = SearchIndex(EngineParams(vector_dim=DIM))
    for name in "abc":
        ix.put(doc(name, (("tiger cat", 0.9),)))

    assert _ids(ix.search("cat", Filters(allowed_ids=frozenset({"a", "c", "gone"})))) == ["a", "c"]
    assert _ids(ix.search("cat", Filters(allowed_ids=frozenset()))) == []
    assert _ids(ix.search("cat")) == ["a", "b", "c"]
    ix.remove("a")
    assert _ids(ix.search("cat", Filters(allowed_ids=frozenset({"a", "c"})))) == ["c"]


def test_allowed_ids_over_grpc(bare_search):
    _index(bare_search, _doc("a", "tiger cat"), _doc("b", "tiger cat"), _doc("c", "espresso"))

    def search(**filters) -> list[str]:
        reply = bare_search.Search(
            pb.SearchRequest(query="cat", filters=pb.SearchFilters(**filters)), timeout=5
        )
        return sorted(h.image_id for h in reply.hits)

    assert search(allowed_ids=pb.ImageIdAllowList(image_ids=["b", "c"])) == ["b"]
    assert search(allowed_ids=pb.ImageIdAllowList()) == []
    assert search() == ["a", "b"]
    with pytest.raises(grpc.RpcError) as caught:
        search(allowed_ids=pb.ImageIdAllowList(image_ids=["x"] * 100_001))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
