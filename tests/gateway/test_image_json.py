"""How an image is shown to API clients."""

from __future__ import annotations

from gateway.image_json import image_json
from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb


def test_labels_are_ordered_by_probability_and_best_is_first():
    image = storage_pb.ImageMetadata(
        id="a1",
        labels=[
            common_pb2.Label(name="tabby", probability=0.17, synonyms=["tabby cat"]),
            common_pb2.Label(name="tiger cat", probability=0.39),
            common_pb2.Label(name="Egyptian cat", probability=0.36),
        ],
        status=common_pb2.ANALYSIS_STATUS_READY,
    )

    shown = image_json(image, 0.8)

    assert [label["name"] for label in shown["labels"]] == ["tiger cat", "Egyptian cat", "tabby"]
    assert shown["best_label"] == "tiger cat"
    assert shown["labels"][2]["synonyms"] == ["tabby cat"]
    assert shown["status"] == "ready"


def test_unanalysed_image_has_no_best_label_and_is_pending():
    shown = image_json(storage_pb.ImageMetadata(id="p1"), 0.8)

    assert (shown["best_label"], shown["status"], shown["moderated"]) == (None, "pending", False)


def test_links_point_at_the_api_and_the_page():
    links = image_json(storage_pb.ImageMetadata(id="x9"), 0.8)["links"]

    assert links == {
        "self": "/api/images/x9",
        "original": "/api/images/x9/original",
        "thumbnail": "/api/images/x9/thumbnail",
        "preview": "/api/images/x9/thumbnail?size=preview",
        "page": "/images/x9",
    }


def test_created_at_is_iso_utc():
    shown = image_json(storage_pb.ImageMetadata(id="t", created_at_unix_ms=1_700_000_000_000), 0.8)

    assert shown["created_at"] == "2023-11-14T22:13:20+00:00"
