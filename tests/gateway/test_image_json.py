"""How an image is shown to API clients."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.image_json import error_words, image_json, reason_text, reasons_text
from imagerepo.common.v2 import common_pb2
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb


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
        "download": "/api/images/x9/original?download=1",
        "thumbnail": "/api/images/x9/thumbnail",
        "preview": "/api/images/x9/thumbnail?size=preview",
        "page": "/images/x9",
    }


def test_created_at_is_iso_utc():
    stamp = Timestamp(seconds=1_700_000_000)
    shown = image_json(storage_pb.ImageMetadata(id="t", create_time=stamp), 0.8)

    assert shown["created_at"] == "2023-11-14T22:13:20+00:00"
    assert shown["created_at_unix_ms"] == 1_700_000_000_000


def test_v2_enums_and_timestamps_read_as_the_words_and_times_of_the_json():
    image = storage_pb.ImageMetadata(
        id="c",
        colours=[
            common_pb2.ColourShare(colour=common_pb2.COLOUR_RED, share=0.5),
            common_pb2.ColourShare(colour=common_pb2.COLOUR_GREY, share=0.25),
        ],
        trash_time=Timestamp(seconds=1_700_000_000),
        feedback=[common_pb2.LabelFeedback(label="tabby", create_time=Timestamp(seconds=60))],
    )

    shown = image_json(image, 0.8)

    assert shown["colours"] == [{"name": "red", "share": 0.5}, {"name": "grey", "share": 0.25}]
    assert shown["trashed_at"] == "2023-11-14T22:13:20+00:00"
    assert shown["feedback"][0]["created_at"] == "1970-01-01T00:01:00+00:00"
    assert image_json(storage_pb.ImageMetadata(id="n"), 0.8)["trashed_at"] is None


def test_an_unanalysed_image_has_no_moderation_score_and_is_not_moderated():
    # v2 says "not analysed" by leaving the score unset; the JSON keeps saying 0.
    shown = image_json(storage_pb.ImageMetadata(id="m"), 0.8)
    scored = image_json(storage_pb.ImageMetadata(id="m", moderation_score=0.9), 0.8)

    assert (shown["moderation_score"], shown["moderated"]) == (0.0, False)
    assert (scored["moderation_score"], scored["moderated"]) == (0.9, True)


@pytest.mark.parametrize(
    ("status", "detail", "words"),
    [
        (common_pb2.ANALYSIS_STATUS_PENDING, "", "analysing"),
        (
            common_pb2.ANALYSIS_STATUS_PENDING,
            "waiting for vision: DEADLINE_EXCEEDED",
            "analysing: the analyser is busy, it will be tried again",
        ),
        (
            common_pb2.ANALYSIS_STATUS_PENDING,
            "waiting for search: UNAVAILABLE",
            "analysing: waiting for the search index to come back",
        ),
        (
            common_pb2.ANALYSIS_STATUS_FAILED,
            "vision could not process this image (INVALID_ARGUMENT: cannot identify image file)",
            "could not analyse: the file is damaged or not readable by the analyser",
        ),
        (common_pb2.ANALYSIS_STATUS_READY, "", "analysed"),
        # What the analysis workers write (analysis_service.failures).
        (
            common_pb2.ANALYSIS_STATUS_FAILED,
            "vision cannot analyse this image: image has 45000000 pixels, more than 40000000",
            "could not analyse: the picture is too large for the analyser",
        ),
        (
            common_pb2.ANALYSIS_STATUS_FAILED,
            "vision cannot analyse this image: cannot identify image file",
            "could not analyse: the file is damaged or not readable by the analyser",
        ),
        (
            common_pb2.ANALYSIS_STATUS_FAILED,
            "vision failed on this image 8 times (last: INTERNAL: model error)",
            "could not analyse: it failed 8 times; you can retry",
        ),
        (
            common_pb2.ANALYSIS_STATUS_PENDING,
            "vision unavailable (UNAVAILABLE): connection refused",
            "analysing: waiting for the analyser to come back",
        ),
        (
            common_pb2.ANALYSIS_STATUS_PENDING,
            "vision failed (DEADLINE_EXCEEDED): deadline exceeded",
            "analysing: the analyser is busy, it will be tried again",
        ),
    ],
)
def test_every_state_reads_in_plain_words(status, detail, words):
    shown = image_json(storage_pb.ImageMetadata(id="s", status=status, status_detail=detail), 0.8)

    assert shown["status_text"] == words
    assert "DEADLINE_EXCEEDED" not in shown["status_text"]


def test_a_pending_image_reads_its_last_error_from_its_analysis_state():
    image = storage_pb.ImageMetadata(
        id="s",
        status=common_pb2.ANALYSIS_STATUS_PENDING,
        analysis=storage_pb.AnalysisState(
            attempts=2, last_error="vision unavailable (UNAVAILABLE): connection refused"
        ),
    )

    assert image_json(image, 0.8)["status_text"] == (
        "analysing: waiting for the analyser to come back"
    )


@pytest.mark.parametrize(
    ("last_error", "words"),
    [
        ("", ""),
        (
            "vision unavailable (UNAVAILABLE): connection refused",
            "waiting for the analyser to come back",
        ),
        ("vision failed (INTERNAL): boom", "the analyser is busy, it will be tried again"),
        (
            "vision cannot analyse this image: image has 45000000 pixels",
            "the picture is too large for the analyser",
        ),
        ("something else entirely", "the last try did not work"),
    ],
)
def test_an_analysis_error_reads_in_plain_words(last_error, words):
    assert error_words(last_error) == words
    assert "UNAVAILABLE" not in error_words(last_error)


def test_search_reasons_read_as_words():
    assert reason_text("labels", "espresso") == "looks like espresso"
    assert reason_text("semantic", "fox squirrel") == "close in meaning to fox squirrel"
    assert reason_text("tags", "morning") == "tagged morning"


def test_exif_is_readable_and_date_taken_drives_the_date():
    shown = image_json(
        storage_pb.ImageMetadata(
            id="e",
            create_time=Timestamp(seconds=1_700_000_000),
            exif={"taken_at": "2019:07:14 18:22:05", "exposure_time": "0.004", "iso": "200"},
        ),
        0.8,
    )

    assert shown["exif_readable"] == {
        "Taken": "14 July 2019, 18:22",
        "Exposure": "1/250 s, ISO 200",
    }
    assert shown["taken_at"] == "2019-07-14T18:22:05"
    assert shown["date"] == "2019-07-14T18:22:05"


def test_a_hit_s_reasons_read_as_one_line_each_term_once():
    reasons = [
        {"field": "labels", "term": "cat"},
        {"field": "labels", "term": "tiger cat"},
        {"field": "semantic", "term": "tiger cat"},
        {"field": "tags", "term": "pets"},
    ]

    assert reasons_text(reasons) == "looks like cat, tiger cat · tagged pets"


@pytest.mark.parametrize(
    ("state", "name"),
    [
        (storage_pb.THUMBNAIL_STATE_UNSPECIFIED, "pending"),
        (storage_pb.THUMBNAIL_STATE_PENDING, "pending"),
        (storage_pb.THUMBNAIL_STATE_READY, "ready"),
        (storage_pb.THUMBNAIL_STATE_FAILED, "failed"),
    ],
)
def test_the_thumbnail_state_is_a_word(state, name):
    shown = image_json(storage_pb.ImageMetadata(id="t", thumbnail_state=state), 0.8)

    assert shown["thumbnail_state"] == name


def test_failed_thumbnails_say_why_in_storage_words_and_plain_words():
    image = storage_pb.ImageMetadata(
        id="f",
        thumbnail_state=storage_pb.THUMBNAIL_STATE_FAILED,
        thumbnail_detail="the image is truncated or corrupt: broken data stream",
    )

    shown = image_json(image, 0.8)

    assert shown["thumbnail_detail"] == "the image is truncated or corrupt: broken data stream"
    assert shown["thumbnail_text"].startswith("no preview: the file is damaged")


def test_a_ready_thumbnail_has_no_reason():
    shown = image_json(
        storage_pb.ImageMetadata(id="r", thumbnail_state=storage_pb.THUMBNAIL_STATE_READY), 0.8
    )

    assert (shown["thumbnail_detail"], shown["thumbnail_text"]) == ("", "")
