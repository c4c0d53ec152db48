"""Every user-controlled string is escaped in the pages."""

from __future__ import annotations

from flask import render_template

from gateway.image_json import image_json
from gateway.library import months
from imagerepo.common.v2 import common_pb2
from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from service_runtime.contracts_v2 import timestamp_of_ms

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


def _months(meta: storage_pb.ImageMetadata) -> list[dict]:
    return months([(meta, image_json(meta, 0.8))], "taken_newest")


def test_gallery_escapes_filenames_and_labels(offline_app):
    meta = _hostile_image()

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


def test_moderated_image_is_blurred_with_reveal_button(offline_app):
    meta = storage_pb.ImageMetadata(id="m1", moderation_score=0.95)
    image = image_json(meta, 0.8)

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    assert image["moderated"]
    assert 'class="thumb blurred"' in html
    assert 'class="reveal"' in html


def test_image_below_threshold_is_not_blurred(offline_app):
    meta = storage_pb.ImageMetadata(id="s1", moderation_score=0.1)

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    assert "blurred" not in html


def test_gallery_tiles_keep_aspect_offer_2x_sources_and_alt_from_labels(offline_app):
    meta = storage_pb.ImageMetadata(
        id="w1",
        filename="IMG_0001.jpg",
        width=1200,
        height=800,
        create_time=timestamp_of_ms(1_700_000_000_000),
        labels=[common_pb2.Label(name="espresso", probability=0.91)],
    )

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    assert "--ar: 1.500" in html
    # Each thumbnail's real width: fits in 256 px, and in 1024 px (the preview).
    assert "/api/images/w1/thumbnail 256w" in html
    assert "/api/images/w1/thumbnail?size=preview 1024w" in html
    assert 'alt="photo: espresso"' in html
    assert '<h2 class="month-title">November 2023</h2>' in html


def test_an_unsure_label_is_not_the_caption(offline_app):
    image = image_json(
        storage_pb.ImageMetadata(
            id="u1",
            filename="retina.png",
            labels=[common_pb2.Label(name="lampshade", probability=0.31)],
        ),
        0.8,
    )

    assert image["caption"] == "retina.png"
    assert image["alt"] == "photo: lampshade"


def test_a_small_photo_offers_its_own_size_not_a_made_up_one(offline_app):
    meta = storage_pb.ImageMetadata(id="p1", width=451, height=300, create_time=timestamp_of_ms(1))

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    # The preview of a photo smaller than 1024 px is the photo: 451 px wide, not "1024w".
    assert "/api/images/p1/thumbnail 256w, /api/images/p1/thumbnail?size=preview 451w" in html


def test_months_follow_the_listing_order_by_date_taken_else_upload_time():
    def make(image_id: str, uploaded_ms: int, taken_ms: int = 0) -> tuple:
        meta = storage_pb.ImageMetadata(
            id=image_id,
            create_time=timestamp_of_ms(uploaded_ms),
            taken_time=timestamp_of_ms(taken_ms),
        )
        return meta, image_json(meta, 0.8)

    # Storage's order across the library: newest taken first (upload time when no date).
    grouped = months(
        [
            make("november", 1_700_000_000_000),
            make("new-upload-old-photo", 1_700_000_000_000, 1_563_128_525_000),
            make("july-2019-too", 1_690_000_000_000, 1_561_968_000_000),
        ],
        "taken_newest",
    )
    by_upload = months([make("a", 1_700_000_000_000, 1_563_128_525_000)], "uploaded")

    assert [(m["title"], [i["id"] for i in m["images"]]) for m in grouped] == [
        ("November 2023", ["november"]),
        ("July 2019", ["new-upload-old-photo", "july-2019-too"]),
    ]
    assert [m["title"] for m in by_upload] == ["November 2023"]


def test_an_empty_library_offers_upload_and_no_year_jump(offline_app):
    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=[], total=0, next_page="", first_page=True, years=[]
        )

    assert "No images yet" in html
    assert 'class="years"' not in html


def test_a_name_the_camera_made_up_gives_way_to_the_date_taken(offline_app):
    def tile(filename: str) -> str:
        meta = storage_pb.ImageMetadata(
            id="c1",
            filename=filename,
            exif={"taken_at": "2019:07:14 18:22:05"},
            taken_time=timestamp_of_ms(1_563_128_525_000),
        )
        with offline_app.test_request_context("/"):
            html = render_template(
                "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
            )
        return html.split('<span class="label"', 1)[1].split("</span>", 1)[0]

    assert tile("IMG_0042.JPG").endswith(">14 Jul 2019")
    assert tile("PXL_20190714_182205123.jpg").endswith(">14 Jul 2019")
    assert tile("harbour at dusk.jpg").endswith(">harbour at dusk.jpg")
    assert 'title="IMG_0042.JPG"' in tile("IMG_0042.JPG")


def _failed_thumbnails(filename: str = "IMG_0042.png") -> storage_pb.ImageMetadata:
    return storage_pb.ImageMetadata(
        id="f1",
        filename=filename,
        width=400,
        height=300,
        format="PNG",
        create_time=timestamp_of_ms(1_700_000_000_000),
        thumbnail_state=storage_pb.THUMBNAIL_STATE_FAILED,
        thumbnail_detail="the image is truncated or corrupt: invalid distance too far back",
    )


def test_a_photo_whose_thumbnails_failed_gets_a_sign_not_an_image_in_the_gallery(offline_app):
    meta = _failed_thumbnails(f"{HOSTILE}.png")

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    tile = html[html.index('<figure class="tile') : html.index("</figure>")]
    assert "<img" not in tile and 'src="/api/images/f1/thumbnail' not in tile
    assert 'class="no-preview"' in tile and "Preview could not be made" in tile
    assert "<svg" in tile
    assert 'data-no-preview="the image is truncated or corrupt' in tile
    # The name on the sign is escaped like every other user string.
    assert "<script>alert" not in html and "&lt;script&gt;" in tile
    # Its aspect is still the photo's (from the header storage read).
    assert "--ar: 1.333" in tile


def test_the_image_page_of_a_failed_photo_says_why_and_offers_download_and_trash(offline_app):
    image = image_json(_failed_thumbnails(), 0.8)

    with offline_app.test_request_context("/images/f1"):
        html = render_template("image.html", image=image, similar=[], duplicates=[])

    preview = html[html.index('<section class="preview') : html.index('<section class="details')]
    assert "<img" not in preview and 'src="/api/images/f1/thumbnail' not in preview
    assert "Preview could not be made" in preview
    assert "invalid distance too far back" in preview
    assert 'href="/api/images/f1/original?download=1" id="download"' in preview
    assert 'action="/images/f1/delete"' in preview
    # No full-size view or mosaic of a picture that cannot be read.
    assert 'id="view-full"' not in preview and "mosaic" not in preview


def test_a_ready_photo_keeps_its_thumbnail(offline_app):
    meta = storage_pb.ImageMetadata(
        id="r1", width=10, height=10, thumbnail_state=storage_pb.THUMBNAIL_STATE_READY
    )

    with offline_app.test_request_context("/"):
        html = render_template(
            "gallery.html", months=_months(meta), total=1, next_page="", first_page=True
        )

    assert 'class="thumb"' in html and "no-preview" not in html
