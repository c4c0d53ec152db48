"""The first write after a restart finds ready what writes need: warm() (the service calls it
before serving) builds the keyword index's label kind and concept tables, and arrays loaded
from a snapshot have room for the next rows (no copy of every per-document array)."""

from __future__ import annotations

import numpy as np

from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams
from search_service.growable import GrowableArray
from tests.search_service.documents import DIM, doc, unit

PARAMS = EngineParams(vector_dim=DIM)
# ImageNet class numbers of these labels (the concept hierarchy's classes).
CLASSES = {"tabby": 281, "tiger cat": 282, "espresso": 967, "beagle": 162}


def _doc(image_id: str, labels: tuple[tuple[str, float], ...], seed: int):
    return doc(image_id, labels, vector=unit(seed), class_indexes=CLASSES, tags=("home",))


def test_warm_builds_the_tables_the_first_write_after_a_restart_needs(tmp_path):
    index = DurableIndex.open(tmp_path, PARAMS)
    index.put(_doc("cat", (("tiger cat", 0.8), ("tabby", 0.15)), 1))
    index.put(_doc("coffee", (("espresso", 0.9),), 2))
    index.close()

    reopened = DurableIndex.open(tmp_path, PARAMS)
    reopened.warm()
    keywords = reopened._index.keywords
    tables = (keywords._kind_flat, keywords._concept_flat, keywords._outer_array)
    assert all(t is not None for t in tables)
    assert len(keywords._outer_array) == len(reopened._index._docs.kinds) == 3

    # Labels of known kinds: the first write builds nothing (the very same tables after it).
    reopened.put(_doc("dog", (("tiger cat", 0.3), ("espresso", 0.2)), 3))
    assert (keywords._kind_flat, keywords._concept_flat, keywords._outer_array) == tables
    assert all(
        a is b
        for a, b in zip(
            tables,
            (keywords._kind_flat, keywords._concept_flat, keywords._outer_array),
            strict=True,
        )
    )
    found = {h.image_id for h in reopened.search("espresso", semantic=False).hits}
    assert found == {"coffee", "dog"}
    # "feline" is a hypernym of tiger cat and tabby only: the concepts table answered for dog.
    assert {h.image_id for h in reopened.search("feline", semantic=False).hits} == {"cat", "dog"}
    # A new kind still goes in (the table grows from what warm built).
    reopened.put(_doc("hound", (("beagle", 0.9),), 4))
    assert [h.image_id for h in reopened.search("beagle", semantic=False).hits] == ["hound"]
    reopened.close()


def test_an_array_loaded_from_a_snapshot_takes_the_next_rows_without_moving():
    loaded = GrowableArray.from_array(np.arange(5000, dtype=np.float32))
    data = loaded._data

    loaded.append(7.0)
    loaded.extend(np.ones(4000, np.float32))

    assert loaded._data is data  # no copy of the 5000 rows
    assert len(loaded) == 9001
    assert np.array_equal(loaded.view()[:5000], np.arange(5000, dtype=np.float32))
    assert loaded[5000] == 7.0 and loaded.view()[5001:].sum() == 4000
