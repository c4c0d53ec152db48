"""End to end through the gateway's HTTP API with all four services running on free ports."""

from __future__ import annotations

import csv
import io
import re
import uuid

import grpc
import numpy as np
import pytest
from PIL import Image

from imagerepo.search.v1 import search_service_pb2 as search_pb
from imagerepo.storage.v1 import storage_service_pb2 as storage_pb

from .conftest import fresh_jpeg


def upload(http, url: str, *files: tuple[str, bytes], headers=None):
    parts = [("files", (name, data)) for name, data in files]
    return http.post(f"{url}/api/images", files=parts, headers=headers or {}, timeout=120)


def unique(name: str) -> str:
    stem, _, ext = name.rpartition(".")
    return f"{stem}-{uuid.uuid4().hex[:8]}.{ext}"


def variant(data: bytes) -> bytes:
    """The same photo rotated a little, shrunk and brightened: a near duplicate."""
    with Image.open(io.BytesIO(data)) as im:
        out = im.rotate(8, expand=False).resize((im.width * 6 // 10, im.height * 6 // 10))
        out = Image.eval(out, lambda v: min(255, int(v * 1.3)))
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(stack, gateway_url, photo_jpegs):
    """Four real photos uploaded in one request; their results by short name."""
    import requests

    names = ["chelsea", "coffee", "rocket", "motorcycle"]
    with requests.Session() as http:
        sent = {n: fresh_jpeg(photo_jpegs[n]) for n in names}
        reply = upload(http, gateway_url, *[(f"{n}.jpg", sent[n]) for n in names])
    assert reply.status_code == 201, reply.text
    results = dict(zip(names, reply.json()["results"], strict=True))
    for name, result in results.items():
        result["sent_bytes"] = sent[name]
    return results


def test_upload_of_several_photos_stores_analyses_and_indexes_each(photos):
    for result in photos.values():
        assert result["result"] == "stored", result
        assert result["image"]["status"] == "ready", result
        assert result["image"]["labels"], result
        assert set(result["timings_ms"]) >= {"storage_put", "analysis_wait"}, result
    assert photos["coffee"]["image"]["best_label"] == "espresso"
    cat_labels = [label["name"] for label in photos["chelsea"]["image"]["labels"][:3]]
    assert {"tiger cat", "Egyptian cat", "tabby"} & set(cat_labels), cat_labels


def test_upload_reports_stage_timings_in_server_timing_header(http, gateway_url, photo_jpegs):
    reply = upload(http, gateway_url, (unique("flower.jpg"), fresh_jpeg(photo_jpegs["flower"])))

    assert reply.status_code == 201
    assert "storage_put;dur=" in reply.headers["Server-Timing"]
    assert "analysis_wait;dur=" in reply.headers["Server-Timing"]
    assert reply.headers["Location"].startswith("/api/images/")


def test_uploaded_photos_are_listed_newest_first(photos, http, gateway_url):
    reply = http.get(f"{gateway_url}/api/images", params={"page_size": 1000})

    listed = [image["id"] for image in reply.json()["images"]]
    ours = [photos[n]["image"]["id"] for n in ["chelsea", "coffee", "rocket", "motorcycle"]]
    assert set(ours) <= set(listed)
    times = [image["created_at_unix_ms"] for image in reply.json()["images"]]
    assert times == sorted(times, reverse=True)
    assert reply.json()["total_count"] >= 4


def test_listing_is_paginated(photos, http, gateway_url):
    first = http.get(f"{gateway_url}/api/images", params={"page_size": 2}).json()
    second = http.get(
        f"{gateway_url}/api/images",
        params={"page_size": 2, "page_token": first["next_page_token"]},
    ).json()

    assert len(first["images"]) == 2 and first["next_page_token"]
    assert not {i["id"] for i in first["images"]} & {i["id"] for i in second["images"]}


def test_search_finds_photo_by_what_is_in_it_and_says_why(photos, http, gateway_url):
    reply = http.get(f"{gateway_url}/api/search", params={"q": "espresso"})

    # Other tests upload copies of the same photos to the shared stack: every espresso ranks
    # above anything else, and ours is among them.
    hits = reply.json()["hits"]
    coffee = photos["coffee"]["image"]["id"]
    rank = [h["image"]["id"] for h in hits].index(coffee)
    for hit in hits[: rank + 1]:
        assert "espresso" in [label["name"] for label in hit["image"]["labels"]], hit
    assert {"field": "labels", "term": "espresso"}.items() <= hits[rank]["reasons"][0].items()


def test_search_finds_cat_by_a_word_not_in_its_labels(photos, http, gateway_url):
    reply = http.get(f"{gateway_url}/api/search", params={"q": "kitten"})

    hits = reply.json()["hits"]
    rank = [h["image"]["id"] for h in hits].index(photos["chelsea"]["image"]["id"])
    for hit in hits[: rank + 1]:
        names = [label["name"] for label in hit["image"]["labels"]]
        assert {"tiger cat", "Egyptian cat", "tabby"} & set(names), hit
    assert "semantic" in {r["field"] for r in hits[rank]["reasons"]}


def test_search_without_words_is_400(http, gateway_url):
    reply = http.get(f"{gateway_url}/api/search", params={"q": "  "})

    assert reply.status_code == 400
    assert "words" in reply.json()["error"]["message"]


def test_suggest_completes_a_label_prefix(photos, http, gateway_url):
    reply = http.get(f"{gateway_url}/api/suggest", params={"q": "espr"})

    assert "espresso" in [s["text"] for s in reply.json()["suggestions"]]


def test_filename_lookup_finds_the_upload(http, gateway_url, photo_jpegs):
    name = unique("china.jpg")
    stored = upload(http, gateway_url, (name, fresh_jpeg(photo_jpegs["china"]))).json()["results"][
        0
    ]

    reply = http.get(f"{gateway_url}/api/images/by-filename/{name}")

    assert [i["id"] for i in reply.json()["images"]] == [stored["image"]["id"]]


def test_similar_images_put_a_near_copy_first(photos, http, gateway_url, photo_jpegs):
    copy = upload(http, gateway_url, (unique("cat-edit.jpg"), variant(photo_jpegs["chelsea"])))
    copy_id = copy.json()["results"][0]["image"]["id"]
    chelsea_id = photos["chelsea"]["image"]["id"]

    by_id = http.get(f"{gateway_url}/api/images/{chelsea_id}/similar", params={"k": 50}).json()
    by_upload = http.post(
        f"{gateway_url}/api/similar",
        files={"file": ("query.jpg", variant(photo_jpegs["chelsea"]))},
    ).json()
    near = http.get(
        f"{gateway_url}/api/duplicates", params={"image_id": chelsea_id, "near_threshold": 0.85}
    ).json()

    # Other tests upload crops of the same cat to the shared stack: only those may rank above
    # the edited copy, and an unrelated photo is far below.
    similarity = {hit["image"]["id"]: hit["similarity"] for hit in by_id["similar"]}
    assert similarity[copy_id] > 0.8
    assert similarity.get(photos["coffee"]["image"]["id"], 0.0) < 0.5
    above = [h["image"] for h in by_id["similar"] if h["similarity"] > similarity[copy_id]]
    assert all("cat" in i["best_label"] or i["best_label"] == "tabby" for i in above), above
    assert by_upload["similar"][0]["similarity"] > 0.8
    assert "cat" in by_upload["similar"][0]["image"]["best_label"] or (
        by_upload["similar"][0]["image"]["best_label"] == "tabby"
    )
    assert any({copy_id, chelsea_id} <= {i["id"] for i in g["images"]} for g in near["near_groups"])


def test_similar_images_leave_out_unrelated_photos(photos, http, gateway_url, photo_jpegs):
    copy = upload(http, gateway_url, (unique("cat-edit.jpg"), variant(photo_jpegs["chelsea"])))
    copy_id = copy.json()["results"][0]["image"]["id"]
    chelsea_id = photos["chelsea"]["image"]["id"]
    unrelated = {photos[n]["image"]["id"] for n in ("coffee", "rocket", "motorcycle")}

    everything = http.get(f"{gateway_url}/api/images/{chelsea_id}/similar", params={"k": 100})
    close = http.get(
        f"{gateway_url}/api/images/{chelsea_id}/similar", params={"k": 100, "min_similarity": 0.5}
    )
    page = http.get(f"{gateway_url}/images/{chelsea_id}").text
    bad = http.get(f"{gateway_url}/api/images/{chelsea_id}/similar", params={"min_similarity": 2})

    # Without a cutoff the API ranks every image; with one it keeps only the close ones.
    assert unrelated <= {h["image"]["id"] for h in everything.json()["similar"]}
    kept = {h["image"]["id"]: h["similarity"] for h in close.json()["similar"]}
    assert copy_id in kept and not unrelated & kept.keys()
    assert all(s >= 0.5 for s in kept.values())
    # The image page lists the edited copy under "Duplicates" (a near copy) or "Similar
    # images", and no unrelated photo. Other tests upload more copies of the same cat to the
    # shared stack: each section shows its top 8, so the edited copy is there unless 8 closer
    # copies fill it.
    section = page.split('<section class="related">', 1)[1]
    closer = {i for i, s in kept.items() if s > kept[copy_id]}
    shown = set(re.findall(r'data-id="([0-9a-f]+)"', section))
    assert f'data-id="{copy_id}"' in section or (len(shown) >= 8 and shown <= closer)
    assert not any(f'data-id="{i}"' in section for i in unrelated)
    assert bad.status_code == 400 and "min_similarity" in bad.json()["error"]["message"]


def test_image_page_says_when_nothing_looks_alike(stack, http, gateway_url):
    # A plain test card: no photo in the repository is like it.
    card = Image.new("RGB", (320, 240), (30, 90, 200))
    card.paste((250, 220, 40), (40, 40, 280, 200))
    buf = io.BytesIO()
    card.save(buf, "PNG")
    stored = upload(http, gateway_url, (unique("test-card.png"), buf.getvalue())).json()
    card_id = stored["results"][0]["image"]["id"]

    page = http.get(f"{gateway_url}/images/{card_id}").text

    assert "<h2>Similar images</h2>" in page
    assert "Nothing else in the repository looks like this yet." in page


def test_exact_duplicate_kept_on_request_is_reported_to_the_uploader(
    photos, http, gateway_url, photo_jpegs
):
    # One copy per photo is the default (tests/integration/test_one_copy.py); this asks for two.
    reply = http.post(
        f"{gateway_url}/api/images",
        files=[("files", ("coffee-again.jpg", photos["coffee"]["sent_bytes"]))],
        data={"keep_duplicate": "1"},
        timeout=120,
    )

    result = reply.json()["results"][0]
    original = photos["coffee"]["image"]["id"]
    assert reply.status_code == 201
    assert result["result"] == "duplicate"
    assert result["duplicate_of"] == [original]
    assert result["image"]["status"] == "ready"
    assert [lab["name"] for lab in result["image"]["labels"]] == [
        lab["name"] for lab in photos["coffee"]["image"]["labels"]
    ]
    groups = http.get(f"{gateway_url}/api/duplicates").json()["exact_groups"]
    assert any({original, result["image"]["id"]} == {i["id"] for i in g["images"]} for g in groups)


def test_predict_labels_a_photo_without_storing_it(http, gateway_url, photo_jpegs):
    before = http.get(f"{gateway_url}/api/images", params={"page_size": 1}).json()["total_count"]

    reply = http.post(
        f"{gateway_url}/api/predict", files={"file": ("x.jpg", photo_jpegs["coffee"])}
    )

    after = http.get(f"{gateway_url}/api/images", params={"page_size": 1}).json()["total_count"]
    assert reply.json()["labels"][0]["name"] == "espresso"
    assert "efficientnet-lite0" in reply.json()["model_versions"]
    assert after == before


def test_tags_can_be_added_searched_and_removed(photos, http, gateway_url):
    image_id = photos["rocket"]["image"]["id"]
    tag = "wintertrip"

    added = http.post(f"{gateway_url}/api/images/{image_id}/tags", json={"add": [tag]})
    found = http.get(f"{gateway_url}/api/search", params={"q": tag}).json()["hits"]
    removed = http.post(f"{gateway_url}/api/images/{image_id}/tags", json={"remove": [tag]})
    gone = http.get(f"{gateway_url}/api/search", params={"q": tag}).json()["hits"]

    assert tag in added.json()["tags"]
    assert found[0]["image"]["id"] == image_id
    assert found[0]["reasons"][0] == {
        "field": "tags",
        "term": tag,
        "score": pytest.approx(found[0]["reasons"][0]["score"]),
    }
    assert tag not in removed.json()["tags"]
    assert not [
        h
        for h in gone
        if h["image"]["id"] == image_id and "tags" in {r["field"] for r in h["reasons"]}
    ]


def test_feedback_lands_in_the_csv(photos, http, gateway_url):
    image = photos["motorcycle"]["image"]
    label = image["labels"][0]["name"]

    reply = http.post(
        f"{gateway_url}/api/images/{image['id']}/feedback",
        json={"label": label, "comment": "=HYPERLINK(it is a motorbike)"},
    )
    rows = list(csv.DictReader(io.StringIO(http.get(f"{gateway_url}/api/feedback.csv").text)))

    assert reply.status_code == 201
    ours = [r for r in rows if r["image_id"] == image["id"]]
    assert ours[0]["label"] == label
    assert ours[0]["reported_by"] == "local"
    # A spreadsheet must not run the comment as a formula.
    assert ours[0]["comment"] == "'=HYPERLINK(it is a motorbike)"


def test_feedback_on_a_label_the_image_lacks_is_400(photos, http, gateway_url):
    image_id = photos["motorcycle"]["image"]["id"]

    reply = http.post(f"{gateway_url}/api/images/{image_id}/feedback", json={"label": "giraffe"})

    assert reply.status_code == 400
    assert "no label 'giraffe'" in reply.json()["error"]["message"]


def test_original_and_thumbnails_are_served_with_cache_headers(
    photos, http, gateway_url, photo_jpegs
):
    image = photos["rocket"]["image"]

    original = http.get(f"{gateway_url}{image['links']['original']}")
    thumb = http.get(f"{gateway_url}{image['links']['thumbnail']}")
    again = http.get(
        f"{gateway_url}{image['links']['thumbnail']}",
        headers={"If-None-Match": thumb.headers["ETag"]},
    )

    assert original.content == photos["rocket"]["sent_bytes"]
    assert original.headers["Content-Type"] == "image/jpeg"
    assert "immutable" in thumb.headers["Cache-Control"]
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert max(small.size) <= 256
    assert again.status_code == 304


def test_original_bytes_are_the_uploaded_bytes(http, gateway_url, photo_jpegs):
    data = fresh_jpeg(photo_jpegs["astronaut"])
    stored = upload(http, gateway_url, (unique("astronaut.jpg"), data)).json()["results"][0]

    reply = http.get(f"{gateway_url}{stored['image']['links']['original']}")

    assert reply.content == data


def test_unknown_image_is_404(http, gateway_url):
    reply = http.get(f"{gateway_url}/api/images/{'0' * 32}")

    assert reply.status_code == 404
    assert reply.json()["error"]["status"] == 404


def test_delete_removes_the_image_everywhere(stack, http, gateway_url, photo_jpegs):
    name = unique("camera.jpg")
    image_id = upload(http, gateway_url, (name, fresh_jpeg(photo_jpegs["camera"]))).json()[
        "results"
    ][0]["image"]["id"]
    assert http.get(f"{gateway_url}/api/search", params={"q": name}).json()["hits"]

    reply = http.delete(f"{gateway_url}/api/images/{image_id}", params={"permanent": "1"})

    assert reply.status_code == 200 and reply.json()["permanent"] is True
    assert http.get(f"{gateway_url}/api/images/{image_id}").status_code == 404
    assert http.get(f"{gateway_url}/api/images/by-filename/{name}").json()["images"] == []
    listed = http.get(f"{gateway_url}/api/images", params={"page_size": 1000}).json()["images"]
    assert image_id not in {i["id"] for i in listed}
    with pytest.raises(grpc.RpcError) as info:
        stack.storage_stub().GetImage(storage_pb.GetImageRequest(image_id=image_id), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    hits = stack.search_stub().Search(search_pb.SearchRequest(query=name), timeout=5).hits
    assert image_id not in {h.image_id for h in hits}
    again = http.delete(f"{gateway_url}/api/images/{image_id}", params={"permanent": "1"})
    assert again.status_code == 404


def test_status_reports_counts_sizes_and_models(photos, http, gateway_url):
    report = http.get(f"{gateway_url}/api/status").json()

    assert report["health"] == {"storage": "SERVING", "vision": "SERVING", "search": "SERVING"}
    assert report["storage"]["image_count"] >= 4
    assert report["storage"]["by_status"]["ready"] >= 4
    assert report["search"]["document_count"] >= 4
    assert "efficientnet-lite0" in {m["name"] for m in report["models"]}


def test_mosaic_rebuilds_a_photo_from_repository_tiles(photos, http, gateway_url):
    image_id = photos["coffee"]["image"]["id"]

    reply = http.get(f"{gateway_url}/images/{image_id}/mosaic.jpg", params={"columns": 30})

    with Image.open(io.BytesIO(reply.content)) as mosaic:
        assert mosaic.width == 30 * 24
    assert http.get(f"{gateway_url}/images/{image_id}/mosaic").status_code == 200


def test_pages_render_with_the_uploaded_photos(photos, http, gateway_url):
    coffee = photos["coffee"]["image"]

    gallery = http.get(f"{gateway_url}/").text
    page = http.get(f"{gateway_url}/images/{coffee['id']}").text
    results = http.get(f"{gateway_url}/search", params={"q": "espresso"}).text
    status = http.get(f"{gateway_url}/status").text

    assert coffee["links"]["thumbnail"] in gallery
    assert "espresso" in page and "this label is wrong" in page and "Similar images" in page
    assert coffee["links"]["page"] in results and "looks like espresso" in results
    assert "efficientnet-lite0" in status


@pytest.fixture(scope="module")
def keyed_gateway(stack):
    """A second gateway over the same services that requires API keys for writes (reads stay
    public: private=False)."""
    server = stack.start_gateway(api_keys=frozenset({"alice:wonderland"}), private=False)
    yield server
    server.stop()


def test_upload_with_api_key_records_its_owner(http, keyed_gateway, photo_jpegs):
    url = keyed_gateway.url
    data = fresh_jpeg(photo_jpegs["flower"])

    refused = upload(http, url, ("alice.jpg", data))
    accepted = upload(
        http, url, ("alice.jpg", data), headers={"Authorization": "Bearer alice:wonderland"}
    )

    assert refused.status_code == 401
    assert accepted.status_code == 201
    image_id = accepted.json()["results"][0]["image"]["id"]
    assert http.get(f"{url}/api/images/{image_id}").json()["owner"] == "alice"
    mine = http.get(f"{url}/api/images", params={"owner": "alice"}).json()["images"]
    assert [i["id"] for i in mine] == [image_id]


def test_content_type_comes_from_the_bytes_not_the_name(http, gateway_url, photo_jpegs):
    buf = io.BytesIO()
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as im:
        im.save(buf, "PNG")

    result = upload(http, gateway_url, (unique("really-png.jpg"), buf.getvalue())).json()

    image = result["results"][0]["image"]
    assert (image["content_type"], image["format"]) == ("image/png", "PNG")
    original = http.get(f"{gateway_url}{image['links']['original']}")
    assert original.headers["Content-Type"] == "image/png"


def test_camera_details_from_exif_show_on_the_image_page(http, gateway_url, photo_jpegs):
    with Image.open(io.BytesIO(photo_jpegs["china"])) as im:
        exif = Image.Exif()
        exif[0x010F] = "Fujifilm"  # Make
        exif[0x0110] = "X100V <special>"  # Model
        buf = io.BytesIO()
        im.save(buf, "JPEG", exif=exif)

    image = upload(http, gateway_url, (unique("exif.jpg"), buf.getvalue())).json()["results"][0]
    page = http.get(f"{gateway_url}/images/{image['image']['id']}").text

    assert "Fujifilm" in image["image"]["exif"].values()
    assert "Camera" in page and "X100V &lt;special&gt;" in page


def test_search_page_lists_exact_filename_matches(http, gateway_url, photo_jpegs):
    name = unique("IMG_2024.jpg")
    image = upload(http, gateway_url, (name, fresh_jpeg(photo_jpegs["rocket"]))).json()

    page = http.get(f"{gateway_url}/search", params={"q": name}).text

    assert "Files named" in page
    assert image["results"][0]["image"]["links"]["page"] in page


def test_duplicates_page_shows_the_exact_copies(photos, http, gateway_url):
    # A second copy asked for (by default the upload answers "already in your library").
    copy = http.post(
        f"{gateway_url}/api/images",
        params={"keep_duplicate": "1"},
        files=[("files", ("rocket-copy.jpg", photos["rocket"]["sent_bytes"]))],
        timeout=120,
    ).json()
    assert copy["results"][0]["image"]["id"] != photos["rocket"]["image"]["id"]

    page = http.get(f"{gateway_url}/duplicates").text
    original_page = http.get(f"{gateway_url}{photos['rocket']['image']['links']['page']}").text

    assert "Exact copies" in page
    assert copy["results"][0]["image"]["links"]["page"] in page
    assert photos["rocket"]["image"]["links"]["page"] in page
    assert "<h2>Duplicates</h2>" in original_page
    assert copy["results"][0]["image"]["links"]["page"] in original_page


def test_upload_form_without_javascript_stores_and_lists_results(http, gateway_url, photo_jpegs):
    form_page = http.get(f"{gateway_url}/upload").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form_page).group(1)

    reply = http.post(
        f"{gateway_url}/upload",
        data={"csrf_token": token},
        files=[
            ("files", (unique("form.jpg"), fresh_jpeg(photo_jpegs["coffee"]))),
            ("files", ("form.txt.jpg", b"words")),
        ],
    )

    assert reply.status_code == 200
    assert 'class="stored"' in reply.text
    assert 'class="rejected"' in reply.text and "not an image" in reply.text


def test_upload_form_without_token_is_refused(http, gateway_url, photo_jpegs):
    reply = http.post(
        f"{gateway_url}/upload", files={"files": ("x.jpg", fresh_jpeg(photo_jpegs["coffee"]))}
    )

    assert reply.status_code == 403


def test_gallery_pages_follow_newest_first(stack, photos, http):
    small_pages = stack.start_gateway(gallery_page_size=2)
    try:
        first = http.get(f"{small_pages.url}/").text
        older = re.search(r'href="(/\?page=[^"]+)" rel="next"', first).group(1)
        second = http.get(f"{small_pages.url}{older.replace('&amp;', '&')}").text
    finally:
        small_pages.stop()

    first_ids = re.findall(r'data-id="([0-9a-f]+)"', first)
    second_ids = re.findall(r'data-id="([0-9a-f]+)"', second)
    assert len(first_ids) == 2 and len(second_ids) == 2
    assert not set(first_ids) & set(second_ids)
    assert "« Newest" in second and "« Newest" not in first


def test_large_upload_is_analysed_from_a_smaller_copy(http, gateway_url, photo_jpegs):
    # A 20 MB PNG: too large for one gRPC message to vision, fine to store.
    with Image.open(io.BytesIO(photo_jpegs["coffee"])) as im:
        big = im.resize((im.width * 6, im.height * 6))
    noise = np.random.default_rng(1).integers(0, 64, (big.height, big.width, 3), dtype=np.uint8)
    big = Image.fromarray(np.asarray(big, dtype=np.uint8) ^ noise)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    assert len(buf.getvalue()) > 16 * 1024 * 1024

    reply = upload(http, gateway_url, (unique("huge-coffee.png"), buf.getvalue()))

    result = reply.json()["results"][0]
    assert reply.status_code == 201
    assert result["image"]["status"] == "ready"
    assert result["image"]["byte_size"] == len(buf.getvalue())
    assert "espresso" in [label["name"] for label in result["image"]["labels"]]
