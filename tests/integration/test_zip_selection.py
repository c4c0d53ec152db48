"""A zip of a selection against the real stack: ids that no longer exist are left out and the
archive says how many photos it holds; a selection none of which exists is a 404, not an
empty archive."""

from __future__ import annotations

import io
import zipfile

from .conftest import fresh_jpeg
from .test_gateway_e2e import unique, upload


def test_a_zip_of_ids_none_of_which_exist_is_a_404(gateway_url, http):
    reply = http.get(f"{gateway_url}/api/images/zip", params={"ids": "nope,gone"})

    assert reply.status_code == 404
    assert "none of the" in reply.json()["error"]["message"]


def test_a_zip_leaves_out_ids_that_do_not_exist_and_is_named_for_what_it_holds(
    gateway_url, http, photo_jpegs
):
    stored = upload(http, gateway_url, (unique("coffee.jpg"), fresh_jpeg(photo_jpegs["coffee"])))
    assert stored.status_code == 201, stored.text
    image_id = stored.json()["results"][0]["image"]["id"]

    reply = http.get(f"{gateway_url}/api/images/zip", params={"ids": f"nope,{image_id}"})

    assert reply.status_code == 200
    assert "imagerepo-1-photos.zip" in reply.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        assert len(archive.namelist()) == 1
