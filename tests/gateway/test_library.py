"""Names that survive any header and any zip; selections; duplicate groups as shown."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header

from gateway.errors import BadRequestError
from gateway.library import content_disposition, download_name, readable_groups, selection


@pytest.mark.parametrize(
    ("stored", "served"),
    [
        ("fleur été 🌸.jpg", "fleur été 🌸.jpg"),
        ("ракета.jpg", "ракета.jpg"),
        ("two\r\nlines.jpg", "two lines.jpg"),
        ("tab\there\x00.png", "tab here.png"),
        ("a/b\\c.jpg", "a_b_c.jpg"),
        ("\r\n", "image-abc123.jpg"),
    ],
)
def test_download_names_keep_the_name_but_never_break_a_header(stored, served):
    assert download_name(stored, "abc123", "JPEG") == served


@pytest.mark.parametrize("name", ["fleur été 🌸.jpg", "ракета.jpg", 'quote".jpg', "plain.jpg"])
def test_content_disposition_round_trips_the_exact_name(name):
    headers = Headers()
    headers.set("Content-Disposition", "attachment", **content_disposition("attachment", name, "x"))
    value = headers["Content-Disposition"]

    kind, params = parse_options_header(value)

    assert kind == "attachment"
    assert "\r" not in value and "\n" not in value
    value.encode("latin-1")  # a header every client can read
    assert params["filename"] == name  # werkzeug prefers filename* when it is there


def test_the_ascii_fallback_is_never_an_empty_stem():
    params = content_disposition("inline", "ракета.jpg", "0123456789abcdef")

    assert params["filename"] == "image-0123456789ab.jpg"
    assert params["filename*"] == "UTF-8''%D1%80%D0%B0%D0%BA%D0%B5%D1%82%D0%B0.jpg"


def test_selection_accepts_lists_repeats_and_commas_once_each():
    assert selection(["a,b", "b", " c "]) == ["a", "b", "c"]
    with pytest.raises(BadRequestError):
        selection([])
    with pytest.raises(BadRequestError):
        selection([",".join(str(i) for i in range(501))])


def test_selection_of_one_string_is_that_id_not_its_characters():
    assert selection("abc") == ["abc"]
    assert selection("a,b") == ["a", "b"]


@pytest.mark.parametrize("raw", [5, None, {"a": 1}, True, 1.5])
def test_selection_that_is_not_a_list_is_a_bad_request(raw):
    with pytest.raises(BadRequestError, match="list of image ids"):
        selection(raw)


def test_a_near_group_that_is_one_exact_copy_is_not_shown_again():
    same = [{"id": "a", "sha256": "s1"}, {"id": "b", "sha256": "s1"}]
    alike = [{"id": "a", "sha256": "s1"}, {"id": "c", "sha256": "s2"}]
    groups = {
        "exact_groups": [{"kind": "exact", "images": same}],
        "near_groups": [{"kind": "near", "images": same}, {"kind": "near", "images": alike}],
    }

    shown = readable_groups(groups)

    assert shown["exact_groups"] == groups["exact_groups"]
    assert shown["near_groups"] == [{"kind": "near", "images": alike}]


def test_a_date_taken_period_becomes_v2_timestamps_and_an_empty_end_stays_open():
    from gateway.library import search_filters

    period = search_filters("2019", "2019-07", favourites_only=True)
    open_end = search_filters("2019-07-14", "")

    assert period.taken_from.ToJsonString() == "2019-01-01T00:00:00Z"
    assert period.taken_until.ToJsonString() == "2019-07-31T23:59:59Z"
    assert (period.favourites_only, period.include_moderated) == (True, True)
    assert open_end.HasField("taken_from") and not open_end.HasField("taken_until")
    assert not search_filters().HasField("taken_from")
    with pytest.raises(BadRequestError, match="before 1970"):
        search_filters("1969", "")
