"""Search quality on real photos analysed by the real vision service (real models, real
MiniLM embeddings for semantic expansion), through a real search gRPC server.

Photos are indexed under camera-style names (IMG_0001.jpg...) so that content, not filenames,
has to find them; one test gives a photo a descriptive name to check filename search.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagerepo.common.v1 import common_pb2
from imagerepo.search.v1 import search_service_pb2 as pb
from imagerepo.vision.v1 import vision_service_pb2 as vision_pb
from tests.search_service.conftest import QUALITY_PHOTOS


def _document(photo: str, analysis: vision_pb.AnalyzeResponse, **overrides) -> pb.SearchDocument:
    """The search document the ingest pipeline would build for `photo` from its analysis."""
    doc = pb.SearchDocument(
        image_id=photo,
        filename=f"IMG_{QUALITY_PHOTOS.index(photo) + 1:04d}.jpg",
        owner="alice",
        labels=analysis.labels,
        ocr_text=analysis.ocr_text,
        moderation_score=analysis.moderation_score,
        status=common_pb2.ANALYSIS_STATUS_READY,
        feature_vector=analysis.feature_vector,
        sha256=f"sha-{photo}",
    )
    for key, value in overrides.items():
        setattr(doc, key, value)
    return doc


@pytest.fixture
def library(search, analysed_photos):
    """A search server holding the eight analysed photos."""
    for name, analysis in analysed_photos.items():
        search.IndexImage(pb.IndexImageRequest(document=_document(name, analysis)), timeout=10)
    return search


def _first(stub, query: str, **request) -> str:
    reply = stub.Search(pb.SearchRequest(query=query, **request), timeout=10)
    assert reply.hits, f"no hit for {query!r}"
    return reply.hits[0].image_id


@pytest.mark.parametrize(
    ("query", "photo"),
    [
        ("cat", "chelsea"),
        ("kitten", "chelsea"),
        ("feline", "chelsea"),
        ("coffee", "coffee"),
        ("espresso", "coffee"),
        ("rocket", "rocket"),
        ("motorbike", "motorcycle"),
        ("flower", "flower"),
    ],
)
def test_query_puts_the_right_photo_first(library, query, photo):
    assert _first(library, query) == photo


def test_words_no_label_holds_are_found_through_semantic_expansion(library):
    reply = library.Search(pb.SearchRequest(query="kitten"), timeout=10)

    reasons = [(r.field, r.term) for r in reply.hits[0].reasons]
    assert reasons == [("semantic", "tiger cat")]


def test_keyword_hits_explain_the_label_that_matched(library):
    reply = library.Search(pb.SearchRequest(query="espresso"), timeout=10)

    assert ("labels", "espresso") in [(r.field, r.term) for r in reply.hits[0].reasons]


def test_search_does_not_return_everything(library):
    for query in ("cat", "espresso", "rocket"):
        reply = library.Search(pb.SearchRequest(query=query), timeout=10)

        assert reply.total_hits <= 2, (query, [h.image_id for h in reply.hits])


def test_filename_puts_the_right_photo_first(library, analysed_photos):
    renamed = _document("china", analysed_photos["china"], filename="SummerPalace_Beijing2019.jpg")
    library.IndexImage(pb.IndexImageRequest(document=renamed), timeout=10)

    assert _first(library, "beijing") == "china"
    assert _first(library, "SummerPalace_Beijing2019.jpg") == "china"


def test_deleted_photo_never_comes_back(library):
    library.RemoveImage(pb.RemoveImageRequest(image_id="chelsea"), timeout=10)

    for query in ("cat", "kitten", "tabby", "IMG_0001"):
        reply = library.Search(pb.SearchRequest(query=query), timeout=10)
        assert "chelsea" not in [h.image_id for h in reply.hits], query
    similar = library.SimilarImages(pb.SimilarImagesRequest(image_id="coffee", k=10), timeout=10)
    assert "chelsea" not in [h.image_id for h in similar.hits]


def test_moderation_flagged_photo_is_hidden_unless_asked_for(library, analysed_photos):
    # No explicit photo ships in any package: the real analysis of the coffee photo is
    # indexed with the score a flagged image would get.
    flagged = _document("coffee", analysed_photos["coffee"], moderation_score=0.97)
    library.IndexImage(pb.IndexImageRequest(document=flagged), timeout=10)

    hidden = library.Search(pb.SearchRequest(query="espresso"), timeout=10)
    shown = library.Search(
        pb.SearchRequest(query="espresso", filters=pb.SearchFilters(include_moderated=True)),
        timeout=10,
    )

    assert "coffee" not in [h.image_id for h in hidden.hits]
    assert _first(library, "espresso", filters=pb.SearchFilters(include_moderated=True)) == (
        "coffee"
    )
    assert shown.hits


def _edited(jpeg: bytes) -> bytes:
    """The photo rotated 8 degrees, shrunk to 60% and brightened: a near duplicate."""
    with Image.open(io.BytesIO(jpeg)) as im:
        out = im.rotate(8, expand=False).resize((int(im.width * 0.6), int(im.height * 0.6)))
        out = Image.eval(out, lambda v: min(255, int(v * 1.3)))
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=85)
        return buf.getvalue()


def test_edited_copy_is_the_most_similar_image_and_a_near_duplicate(
    library, vision_stub, photo_jpegs, analysed_photos
):
    edited = vision_stub.Analyze(
        vision_pb.AnalyzeRequest(image_data=_edited(photo_jpegs["chelsea"]), top_k=20), timeout=60
    )
    copy = _document("chelsea", edited, image_id="chelsea-edited", sha256="sha-edited")
    exact = _document("chelsea", analysed_photos["chelsea"], image_id="chelsea-upload-2")
    for doc in (copy, exact):
        library.IndexImage(pb.IndexImageRequest(document=doc), timeout=10)

    similar = library.SimilarImages(pb.SimilarImagesRequest(image_id="chelsea", k=3), timeout=10)
    groups = library.FindDuplicates(pb.FindDuplicatesRequest(near_threshold=0.85), timeout=10)

    assert similar.hits[0].image_id in {"chelsea-edited", "chelsea-upload-2"}
    assert {h.image_id for h in similar.hits[:2]} == {"chelsea-edited", "chelsea-upload-2"}
    assert [sorted(g.image_ids) for g in groups.exact_groups] == [["chelsea", "chelsea-upload-2"]]
    assert [sorted(g.image_ids) for g in groups.near_groups] == [["chelsea", "chelsea-edited"]]
