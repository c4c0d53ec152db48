"""The SearchService over real gRPC on a free port: translation, validation, status codes."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from imagerepo.common.v1 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as pb

DIM = 1280


def _vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def _doc(image_id: str, label: str, p: float = 0.9, **fields) -> pb.SearchDocument:
    return pb.SearchDocument(
        image_id=image_id,
        filename=fields.pop("filename", f"{image_id}.jpg"),
        owner=fields.pop("owner", "alice"),
        labels=[common_pb2.Label(name=label, probability=p, class_index=-1)],
        status=common_pb2.ANALYSIS_STATUS_READY,
        **fields,
    )


def _index(stub, *docs: pb.SearchDocument) -> None:
    for d in docs:
        stub.IndexImage(pb.IndexImageRequest(document=d), timeout=5)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details()
    return info.value.code()


def test_indexed_image_is_found_with_reasons(bare_search):
    _index(bare_search, _doc("a", "tiger cat", tags=["pets"]), _doc("b", "espresso"))

    reply = bare_search.Search(pb.SearchRequest(query="cat pets"), timeout=5)

    assert [h.image_id for h in reply.hits] == ["a"]
    assert {(r.field, r.term) for r in reply.hits[0].reasons} == {
        ("labels", "tiger cat"),
        ("concepts", "cat"),  # WordNet: tiger cat -> domestic cat -> cat
        ("tags", "pets"),
    }
    assert reply.total_hits == 1 and not reply.fell_back_to_or


def test_or_fallback_is_reported(bare_search):
    _index(bare_search, _doc("a", "tiger cat"), _doc("b", "espresso"))

    reply = bare_search.Search(pb.SearchRequest(query="cat espresso"), timeout=5)

    assert reply.fell_back_to_or
    assert {h.image_id for h in reply.hits} == {"a", "b"}


def test_page_token_walks_through_every_hit(bare_search):
    _index(bare_search, *[_doc(f"img{i}", "tiger cat", 0.5 + i / 100) for i in range(7)])

    seen, token = [], ""
    while True:
        reply = bare_search.Search(
            pb.SearchRequest(query="cat", page_size=3, page_token=token), timeout=5
        )
        seen += [h.image_id for h in reply.hits]
        token = reply.next_page_token
        if not token:
            break

    assert sorted(seen) == sorted(f"img{i}" for i in range(7))


def test_removed_image_is_gone_and_second_removal_says_so(bare_search):
    _index(bare_search, _doc("a", "tiger cat"))

    first = bare_search.RemoveImage(pb.RemoveImageRequest(image_id="a"), timeout=5)
    second = bare_search.RemoveImage(pb.RemoveImageRequest(image_id="a"), timeout=5)

    assert first.removed and not second.removed
    assert not bare_search.Search(pb.SearchRequest(query="cat"), timeout=5).hits


def test_moderated_image_needs_include_moderated(bare_search):
    _index(bare_search, _doc("a", "tiger cat", moderation_score=0.97))

    hidden = bare_search.Search(pb.SearchRequest(query="cat"), timeout=5)
    shown = bare_search.Search(
        pb.SearchRequest(query="cat", filters=pb.SearchFilters(include_moderated=True)), timeout=5
    )

    assert not hidden.hits
    assert [h.image_id for h in shown.hits] == ["a"]


def test_similar_images_by_id_and_by_vector(bare_search):
    near = np.asarray(_vector(1)) + 0.05 * np.asarray(_vector(9))
    _index(
        bare_search,
        _doc("a", "tiger cat", feature_vector=_vector(1)),
        _doc("b", "tiger cat", feature_vector=(near / np.linalg.norm(near)).tolist()),
        _doc("c", "espresso", feature_vector=_vector(3)),
    )

    by_id = bare_search.SimilarImages(pb.SimilarImagesRequest(image_id="a", k=2), timeout=5)
    by_vector = bare_search.SimilarImages(
        pb.SimilarImagesRequest(vector=pb.FeatureVector(values=_vector(3)), k=1), timeout=5
    )

    assert [h.image_id for h in by_id.hits] == ["b", "c"]
    assert by_id.hits[0].similarity > 0.95
    assert [h.image_id for h in by_vector.hits] == ["c"]


def test_duplicates_are_grouped(bare_search):
    _index(
        bare_search,
        _doc("a", "tiger cat", feature_vector=_vector(1), sha256="s1"),
        _doc("a-copy", "tiger cat", feature_vector=_vector(1), sha256="s1"),
        _doc("c", "espresso", feature_vector=_vector(3), sha256="s3"),
    )

    reply = bare_search.FindDuplicates(pb.FindDuplicatesRequest(), timeout=5)

    assert [list(g.image_ids) for g in reply.exact_groups] == [["a", "a-copy"]]
    assert reply.exact_groups[0].sha256 == "s1"
    assert list(reply.near_groups) == []


def test_suggest_completes_prefixes(bare_search):
    _index(bare_search, _doc("a", "tiger cat"), _doc("b", "tiger shark"))

    reply = bare_search.Suggest(pb.SuggestRequest(prefix="Tig", limit=3), timeout=5)

    assert reply.suggestions[0].text == "tiger"
    assert reply.suggestions[0].document_count == 2
    assert reply.suggestions[0].field == "labels"


def test_rebuild_streams_documents_into_a_fresh_index(bare_search):
    _index(bare_search, _doc("old", "espresso"))

    reply = bare_search.Rebuild(
        iter([pb.RebuildRequest(document=_doc(f"n{i}", "moped")) for i in range(5)]), timeout=10
    )
    stats = bare_search.GetStats(pb.GetStatsRequest(), timeout=5)

    assert reply.indexed_count == 5
    assert stats.document_count == 5
    assert stats.term_count > 0 and stats.posting_bytes > 0
    assert not bare_search.Search(pb.SearchRequest(query="espresso"), timeout=5).hits


def test_rebuild_skips_and_reports_bad_documents(bare_search):
    _index(bare_search, _doc("old", "espresso"))
    bad = _doc("bad", "moped", feature_vector=[1.0, 2.0])
    bad_status = _doc("bad2", "moped")
    bad_status.status = 42  # type: ignore[assignment]  # an unknown enum value, as on the wire

    reply = bare_search.Rebuild(
        iter(
            [
                pb.RebuildRequest(document=_doc("n", "moped")),
                pb.RebuildRequest(document=bad),
                pb.RebuildRequest(document=bad_status),
                pb.RebuildRequest(document=_doc("n2", "moped")),
            ]
        ),
        timeout=10,
    )

    assert (reply.indexed_count, reply.skipped_count) == (2, 2)
    assert reply.skipped == [
        "bad: feature_vector must have 1280 values, got 2",
        "bad2: unknown status 42",
    ]
    found = bare_search.Search(pb.SearchRequest(query="moped"), timeout=5)
    assert sorted(h.image_id for h in found.hits) == ["n", "n2"]


def _taken(image_id: str, label: str, when: str, make: str = "", model: str = ""):
    exif = {"taken_at": when}
    if make:
        exif |= {"camera_make": make, "camera_model": model}
    return _doc(image_id, label, exif=exif)


def test_dates_and_cameras_from_exif_are_searchable_filterable_and_sortable(bare_search):
    _index(
        bare_search,
        _taken("jun19", "daisy", "2019:06:15 10:20:30", "Canon", "Canon EOS 80D"),
        _taken("dec19", "daisy", "2019:12:24 18:00:00", "NIKON CORPORATION", "NIKON D750"),
        _taken("jun21", "daisy", "2021:06:01 08:00:00", "Canon", "Canon EOS R5"),
        _taken("broken", "daisy", "0000:00:00 00:00:00"),
        _doc("nodate", "daisy"),
    )

    def ids(query: str, **request) -> list[str]:
        reply = bare_search.Search(pb.SearchRequest(query=query, **request), timeout=5)
        return [h.image_id for h in reply.hits]

    assert sorted(ids("2019")) == ["dec19", "jun19"]
    assert ids("june 2019") == ["jun19"]
    assert sorted(ids("june")) == ["jun19", "jun21"]
    assert sorted(ids("canon")) == ["jun19", "jun21"]
    assert ids("nikon d750") == ["dec19"]
    reply = bare_search.Search(pb.SearchRequest(query="canon eos"), timeout=5)
    assert {(r.field, r.term) for r in reply.hits[0].reasons} >= {("camera", "canon")}

    newest = ids("daisy", sort=pb.SORT_ORDER_TAKEN_NEWEST)
    assert newest[:3] == ["jun21", "dec19", "jun19"]
    assert sorted(newest[3:]) == ["broken", "nodate"]  # no usable date: last
    assert ids("daisy", sort=pb.SORT_ORDER_TAKEN_OLDEST)[:3] == ["jun19", "dec19", "jun21"]

    in_2019 = pb.SearchFilters(taken_from_unix_s=1546300800, taken_until_unix_s=1577836800)
    assert sorted(ids("daisy", filters=in_2019)) == ["dec19", "jun19"]
    since_2020 = pb.SearchFilters(taken_from_unix_s=1577836800)
    assert ids("daisy", filters=since_2020) == ["jun21"]
    backwards = pb.SearchFilters(taken_from_unix_s=1577836800, taken_until_unix_s=1546300800)
    assert _code(lambda: ids("daisy", filters=backwards)) == grpc.StatusCode.INVALID_ARGUMENT


def test_general_words_find_specific_labels_ranked_by_confidence(bare_search):
    _index(
        bare_search,
        _doc("ladybird", "ladybug", p=0.82),
        _doc("leaf", "ladybug", p=0.28),
        _doc("daisy", "daisy", p=0.9),
        _doc("cup", "espresso", p=0.95),
    )

    def ids(query: str) -> list[str]:
        return [h.image_id for h in bare_search.Search(pb.SearchRequest(query=query)).hits]

    assert ids("beetle") == ["ladybird", "leaf"]
    assert ids("insect") == ["ladybird", "leaf"]
    assert ids("flower") == ["daisy"]
    assert ids("beverage") == ids("coffee") == ["cup"]
    reply = bare_search.Search(pb.SearchRequest(query="insect"), timeout=5)
    assert ("concepts", "insect") in {(r.field, r.term) for r in reply.hits[0].reasons}


def test_nothing_matches_shows_the_closest_words_of_the_library(bare_search):
    _index(bare_search, _doc("ladybird", "ladybug", p=0.82), _doc("cup", "espresso"))

    reply = bare_search.Search(pb.SearchRequest(query="ladybugg"), timeout=5)

    # Without the vision service (no query embedding) the closest are found by spelling.
    assert list(reply.closest) == ["ladybug"]
    assert reply.note == "no photo is labelled 'ladybugg'; showing the closest: ladybug"
    assert [h.image_id for h in reply.hits] == ["ladybird"]


@pytest.mark.parametrize(
    "request_",
    [
        pb.SearchRequest(query=" "),
        pb.SearchRequest(query="cat", page_size=-1),
        pb.SearchRequest(query="cat", page_token="not-a-token"),
        pb.SearchRequest(query="x" * 1001),
    ],
)
def test_bad_search_requests_are_invalid_argument(bare_search, request_):
    assert _code(lambda: bare_search.Search(request_, timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_bad_documents_are_invalid_argument_and_not_indexed(bare_search):
    bad_vector = _doc("a", "tiger cat", feature_vector=[0.1] * 3)
    bad_probability = _doc("b", "tiger cat", p=1.5)

    for d in (pb.SearchDocument(), bad_vector, bad_probability):
        code = _code(lambda d=d: bare_search.IndexImage(pb.IndexImageRequest(document=d)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bare_search.GetStats(pb.GetStatsRequest(), timeout=5).document_count == 0


def test_similar_images_errors_map_to_codes(bare_search):
    _index(bare_search, _doc("no-vector", "tiger cat"))
    stub = bare_search

    assert _code(lambda: stub.SimilarImages(pb.SimilarImagesRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert _code(lambda: stub.SimilarImages(pb.SimilarImagesRequest(image_id="nope"))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: stub.SimilarImages(pb.SimilarImagesRequest(image_id="no-vector"))) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    short = pb.SimilarImagesRequest(vector=pb.FeatureVector(values=[1.0, 0.0]))
    assert _code(lambda: stub.SimilarImages(short)) == grpc.StatusCode.INVALID_ARGUMENT


def test_duplicates_and_suggest_validate_arguments(bare_search):
    stub = bare_search

    assert _code(lambda: stub.FindDuplicates(pb.FindDuplicatesRequest(near_threshold=1.5))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert _code(lambda: stub.FindDuplicates(pb.FindDuplicatesRequest(image_id="nope"))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: stub.Suggest(pb.SuggestRequest(prefix=" "))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_suggestions_offer_general_words_the_library_holds(bare_search):
    _index(bare_search, _doc("ladybird", "ladybug", p=0.82), _doc("cup", "espresso"))

    reply = bare_search.Suggest(pb.SuggestRequest(prefix="ins"), timeout=5)

    assert [(s.text, s.document_count, s.field) for s in reply.suggestions] == [
        ("insect", 1, "concepts")
    ]
    assert not bare_search.Suggest(pb.SuggestRequest(prefix="mamm"), timeout=5).suggestions


def test_the_gateways_document_carries_storages_exif_into_typed_fields(bare_search):
    from gateway.ingest import Analysis, search_document
    from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

    image = storage_pb.ImageMetadata(
        id="img-1",
        filename="IMG_0001.jpg",
        exif={"taken_at": "2008:04:20 19:12:06", "camera_make": "Canon", "camera_model": "X"},
    )
    label = common_pb2.Label(name="daisy", probability=0.9, class_index=985)
    document = search_document(image, Analysis([label], [], 0.0, ""))

    _index(bare_search, document)

    reply = bare_search.Search(pb.SearchRequest(query="april 2008 canon"), timeout=5)
    assert [h.image_id for h in reply.hits] == ["img-1"]
    assert {r.field for r in reply.hits[0].reasons} == {"taken", "camera"}
