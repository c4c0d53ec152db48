"""EXIF summary -> typed fields, and the committed WordNet concept table."""

from __future__ import annotations

import calendar
import json

import pytest

from search_service.concepts import TABLE, load_hierarchy
from search_service.document import Label
from search_service.exif import parse_exif_date, typed_fields
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019:06:15 10:20:30", (2019, 6, 15, 10, 20, 30)),
        ("2019-06-15T10:20", (2019, 6, 15, 10, 20, 0)),
        ("2019:06:15", (2019, 6, 15, 0, 0, 0)),
        ("2020:02:29 00:00:00", (2020, 2, 29, 0, 0, 0)),
    ],
)
def test_exif_dates_are_read_as_utc_seconds(text, expected):
    assert parse_exif_date(text) == calendar.timegm((*expected, 0, 0, 0))


@pytest.mark.parametrize(
    "text",
    ["", "0000:00:00 00:00:00", "2019:13:01 00:00:00", "2019:02:30 10:00:00", "    :  :  ", "x"],
)
def test_broken_camera_clocks_give_no_date(text):
    assert parse_exif_date(text) == 0


def test_typed_fields_prefer_the_date_taken_and_clean_the_camera():
    exif = {
        "taken_at": "2008:04:20 19:12:06",
        "modified_at": "2010:01:01 00:00:00",
        "camera_make": "KONICA MINOLTA \x00",
        "camera_model": "DiMAGE  Z5",
    }
    taken, make, model = typed_fields(exif)
    assert taken == calendar.timegm((2008, 4, 20, 19, 12, 6, 0, 0, 0))
    assert (make, model) == ("KONICA MINOLTA", "DiMAGE Z5")
    assert typed_fields({"modified_at": "2010:01:01 00:00:00"})[0] > 0
    assert typed_fields({}) == (0, "", "")


def _words(weights: dict[int, float]) -> dict[str, float]:
    hierarchy = load_hierarchy()
    return {hierarchy.phrases(cid)[0]: w for cid, w in weights.items()}


def test_hypernyms_are_weighted_by_probability_and_decay_with_distance():
    hierarchy = load_hierarchy()
    words = _words(hierarchy.weights([Label("ladybug", 0.8, (), 301)]))

    assert words["beetle"] == pytest.approx(0.8 * 0.8)
    assert words["insect"] == pytest.approx(0.8 * 0.8**2)
    assert words["animal"] < words["insect"] < words["beetle"]
    assert "entity" not in words and "object" not in words  # too abstract to search for


def test_labels_sharing_a_hypernym_add_up():
    hierarchy = load_hierarchy()
    breeds = [Label(n, 0.15) for n in ("beagle", "basset", "bloodhound", "whippet", "Saluki")]
    each = [_words(hierarchy.weights([breed]))["dog"] for breed in breeds]
    assert _words(hierarchy.weights(breeds))["dog"] == pytest.approx(sum(each))
    assert sum(each) > 2 * max(each)  # five guesses at a breed: surely a dog


def test_class_found_by_name_when_the_number_belongs_to_another_list():
    hierarchy = load_hierarchy()
    assert hierarchy.class_of(Label("daisy", 0.5, (), 2)) == 985
    assert hierarchy.class_of(Label("", 0.5, (), 985)) == 985
    assert hierarchy.class_of(Label("no such class", 0.5)) == -1


def test_committed_table_covers_every_class_of_the_model():
    table = json.loads(TABLE.read_text())
    classes = json.loads((REPO_ROOT / "models" / "imagenet_classes.json").read_text())
    assert table["names"] == [c["name"] for c in sorted(classes, key=lambda c: c["index"])]
    assert len(table["classes"]) == 1000
    assert sum(1 for chain in table["classes"] if chain) > 990
