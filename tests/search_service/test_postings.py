"""The posting codec: delta + varint document numbers round-trip exactly and stay small."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.postings import (
    PostingList,
    decode_varints,
    encode_varint,
    encode_varints,
    quantise_weight,
)


def test_varints_round_trip_small_and_huge_values():
    values = np.array([0, 1, 127, 128, 300, 16_383, 16_384, 2**35 + 7, 2**62], dtype=np.uint64)

    decoded = decode_varints(encode_varints(values))

    assert decoded.tolist() == values.tolist()


def test_vectorised_encoding_matches_one_by_one_encoding():
    values = np.random.default_rng(1).integers(0, 2**30, size=500)

    assert encode_varints(values) == b"".join(encode_varint(int(v)) for v in values)


def test_dense_postings_take_about_one_byte_per_document():
    ids = np.arange(0, 20_000, 3)

    plist = PostingList.from_arrays(ids, np.full(ids.size, 7))

    decoded_ids, weights = plist.decode()
    assert decoded_ids.tolist() == ids.tolist()
    assert weights.tolist() == [7] * ids.size
    assert plist.nbytes == 2 * ids.size  # one byte of delta + one byte of weight each


def test_appended_postings_decode_like_bulk_built_ones():
    ids = np.unique(np.random.default_rng(2).integers(0, 10**7, size=2000))
    appended = PostingList()
    for i in ids:
        appended.append(int(i), 3)

    bulk = PostingList.from_arrays(ids, np.full(ids.size, 3))

    assert appended.raw() == bulk.raw()
    assert appended.decode()[0].tolist() == ids.tolist()


def test_out_of_order_append_is_refused():
    plist = PostingList()
    plist.append(5, 1)

    with pytest.raises(ValueError):
        plist.append(5, 1)


def test_weights_quantise_to_one_byte_and_never_to_zero():
    assert quantise_weight(1.0, 1.0) == 255
    assert quantise_weight(0.0001, 1.0) == 1
    assert quantise_weight(0.5, 1.0) == 128


def test_the_prefix_before_a_document_is_the_list_as_it_was_then():
    plist = PostingList()
    for doc, w in ((3, 10), (200, 20), (70_000, 30), (70_001, 40)):
        plist.append(doc, w)

    ids_b, weights_b, last = plist.prefix_before(70_000)

    then = PostingList.from_arrays([3, 200], [10, 20])
    assert (ids_b, weights_b, last) == (*then.raw(), 200)
    assert plist.prefix_before(10**9) == (*plist.raw(), 70_001)
    assert plist.prefix_before(3) == (b"", b"", -1)
