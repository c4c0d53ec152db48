"""Every user-controlled string is escaped in the pages."""

from __future__ import annotations

from flask import render_template

from gateway.image_json import image_json
from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

HOSTILE = '<script>alert("x")</script>'


def _hostile_image() -> storage_pb.ImageMetadata:
    return storage_pb.ImageMetadata(
        id="img1",
        filename=f"{HOSTILE}.jpg",
        owner=HOSTILE,
        content_type="image/jpeg",
        width=10,
        height=10,
        exif={"Model": HOSTILE},
        labels=[common_pb2.Label(name=HOSTILE, probability=0.9)],
        ocr_text=HOSTILE,
        tags=[HOSTILE],
        status=common_pb2.ANALYSIS_STATUS_READY,
        status_detail=HOSTILE,
        feedback=[common_pb2.LabelFeedback(label=HOSTILE, comment=HOSTILE, reported_by=HOSTILE)],
    )


def test_image_page_escapes_every_user_string(offline_app):
    image = image_json(_hostile_image(), 0.8)

    with offline_app.test_request_context("/images/img1"):
        html = render_template(
            "image.html", image=image, similar=[], duplicates=[], related_error=HOSTILE
        )

    assert "<script>alert" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 8


def test_gallery_escapes_filenames_and_labels(offline_app):
    image = image_json(_hostile_image(), 0.8)

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", images=[image], total=1, next_page="", first_page=True
        )

    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


def test_moderated_image_is_blurred_with_reveal_button(offline_app):
    image = image_json(storage_pb.ImageMetadata(id="m1", moderation_score=0.95), 0.8)

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", images=[image], total=1, next_page="", first_page=True
        )

    assert image["moderated"]
    assert 'class="thumb blurred"' in html
    assert 'class="reveal"' in html


def test_image_below_threshold_is_not_blurred(offline_app):
    image = image_json(storage_pb.ImageMetadata(id="s1", moderation_score=0.1), 0.8)

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", images=[image], total=1, next_page="", first_page=True
        )

    assert "blurred" not in html
