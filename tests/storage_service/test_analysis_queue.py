"""The analysis queue kept in the column store: leases, generations, attempts, backoff; durable
through restarts; two claimers never hold the same image while a lease holds."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from storage_service.columnstore.errors import LeaseLostError
from storage_service.columnstore.model import (
    AnalysisFailure,
    AnalysisResult,
    AnalysisStatus,
    AnnotationUpdate,
    Label,
)
from storage_service.columnstore.store import ColumnStore, StoreOptions

OPTS = StoreOptions(
    memtable_bytes=1 << 30, analysis_backoff_initial_ms=2_000, analysis_backoff_max_ms=300_000
)
T0 = 1_900_000_000_000
RESULT = AnalysisResult(
    labels=(Label("tabby", 0.9, ("tabby cat",), 281),),
    moderation_score=0.25,  # exact in float32, as the column stores it
    ocr_text="hello",
    feature_vector=(0.5, 0.25, 0.125),
)


def _put_all(store: ColumnStore, images) -> list[str]:
    return [store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(images)]


def test_claims_are_oldest_first_and_bump_generation_attempts_and_lease(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    ids = _put_all(store, small_images[:5])
    head = store.head_seq

    claimed = store.claim_analysis("w1", 3, 10_000, T0)

    # A claim only changes a lease: durable, but not a change the feed reports.
    assert store.head_seq == head
    assert store.changes(head).changes == ()

    assert [c.image.id for c in claimed] == ids[:3]
    for c in claimed:
        state = store.get(c.image.id).analysis
        assert (state.generation, state.attempts) == (1, 1) == (c.generation, 1)
        assert (state.lease_owner, state.lease_expires_ms) == ("w1", T0 + 10_000)
    # The leased ones are skipped until their lease runs out.
    assert [c.image.id for c in store.claim_analysis("w2", 10, 10_000, T0 + 1)] == ids[3:]
    assert store.claim_analysis("w3", 10, 10_000, T0 + 2) == []
    store.close()


def test_two_concurrent_claimers_never_get_the_same_image(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    ids = _put_all(store, small_images)
    got: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        start.wait()
        while batch := store.claim_analysis(name, 2, 60_000, T0):
            got[name] += [c.image.id for c in batch]

    threads = [threading.Thread(target=worker, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(ids)
    assert all(store.get(i).analysis.generation == 1 for i in ids)
    store.close()


def test_an_expired_lease_is_claimed_again_and_the_old_completion_is_refused(
    tmp_path, small_images
):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    (image_id,) = _put_all(store, small_images[:1])
    (first,) = store.claim_analysis("w1", 1, 1_000, T0)
    assert store.claim_analysis("w2", 1, 1_000, T0 + 999) == []

    (second,) = store.claim_analysis("w2", 1, 1_000, T0 + 1_001)  # w1's lease ran out

    assert second.generation == first.generation + 1
    assert store.get(image_id).analysis.attempts == 2
    before, head = store.get(image_id), store.head_seq
    with pytest.raises(LeaseLostError):
        store.complete_analysis(image_id, first.generation, RESULT, T0 + 1_500)
    # Nothing changed: not the metadata, not the feed.
    assert store.get(image_id) == before
    assert store.head_seq == head
    done = store.complete_analysis(image_id, second.generation, RESULT, T0 + 1_600)
    assert done.status is AnalysisStatus.READY
    assert done.labels == RESULT.labels and done.ocr_text == "hello"
    assert store.feature_vector(image_id) == [0.5, 0.25, 0.125]
    assert (done.analysis.lease_owner, done.analysis.lease_expires_ms) == ("", 0)
    # A completed image is no longer claimable, and a second completion is refused.
    assert store.claim_analysis("w3", 1, 1_000, T0 + 10_000) == []
    with pytest.raises(LeaseLostError):
        store.complete_analysis(image_id, second.generation, RESULT, T0 + 1_700)
    store.close()


def test_transient_failures_back_off_and_permanent_ones_fail_for_good(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    flaky, broken = _put_all(store, small_images[:2])
    claims = {c.image.id: c for c in store.claim_analysis("w", 2, 60_000, T0)}

    meta = store.complete_analysis(
        flaky, claims[flaky].generation, AnalysisFailure("vision unavailable"), T0 + 100
    )
    assert meta.status is AnalysisStatus.PENDING
    assert meta.analysis.last_error == "vision unavailable"
    assert meta.analysis.lease_owner == ""
    assert meta.analysis.next_attempt_ms == T0 + 100 + 2_000  # 2 s after the first attempt
    dead = store.complete_analysis(
        broken, claims[broken].generation, AnalysisFailure("not an image", permanent=True), T0
    )
    assert dead.status is AnalysisStatus.FAILED
    assert dead.status_detail == "not an image"

    assert store.claim_analysis("w", 5, 60_000, T0 + 2_099) == []  # still backing off
    (again,) = store.claim_analysis("w", 5, 60_000, T0 + 2_100)
    assert again.image.id == flaky and again.image.analysis.attempts == 2
    meta = store.complete_analysis(flaky, again.generation, AnalysisFailure("timeout"), T0 + 3_000)
    assert meta.analysis.next_attempt_ms == T0 + 3_000 + 4_000  # doubled
    assert store.stats().pending_count == 1
    # The backoff is capped.
    store.close()
    store = ColumnStore.open(tmp_path / "s", replace(OPTS, analysis_max_attempts=0))
    now = T0 + 10_000
    for _ in range(12):
        now = store.get(flaky).analysis.next_attempt_ms
        (c,) = store.claim_analysis("w", 1, 60_000, now)
        store.complete_analysis(flaky, c.generation, AnalysisFailure("timeout"), now)
    assert store.get(flaky).analysis.next_attempt_ms - now == 300_000
    store.close()


def test_a_status_set_by_hand_ends_the_claim_and_tags_still_work(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    (image_id,) = _put_all(store, small_images[:1])
    (claim,) = store.claim_analysis("w", 1, 60_000, T0)
    store.update_annotations(image_id, AnnotationUpdate(add_tags=("beach",)))
    assert store.get(image_id).analysis.generation == claim.generation  # tags: claim holds
    store.update_annotations(
        image_id,
        AnnotationUpdate(fields=frozenset({"status"}), status=AnalysisStatus.PENDING),
    )
    with pytest.raises(LeaseLostError):
        store.complete_analysis(image_id, claim.generation, RESULT, T0 + 1)
    meta = store.get(image_id)
    assert meta.tags == ("beach",) and meta.status is AnalysisStatus.PENDING
    assert meta.analysis.lease_owner == "" and meta.analysis.attempts == 0
    (again,) = store.claim_analysis("w", 1, 60_000, T0 + 2)
    assert again.generation == claim.generation + 2
    store.close()


def test_analysis_state_survives_a_restart_and_compaction(tmp_path, small_images):
    options = StoreOptions(memtable_bytes=30_000, feed_retention_seqs=0)
    store = ColumnStore.open(tmp_path / "s", options)
    ids = _put_all(store, small_images[:4])
    claims = {c.image.id: c for c in store.claim_analysis("w", 4, 60_000, T0)}
    store.complete_analysis(ids[0], claims[ids[0]].generation, RESULT, T0)
    store.complete_analysis(ids[1], claims[ids[1]].generation, AnalysisFailure("slow"), T0)
    store.complete_analysis(
        ids[2], claims[ids[2]].generation, AnalysisFailure("bad", permanent=True), T0
    )
    expected = {i: store.get(i) for i in ids}
    store.close()

    for _ in range(2):
        reopened = ColumnStore.open(tmp_path / "s", options)
        assert {i: reopened.get(i) for i in ids} == expected
        assert reopened.feature_vector(ids[0]) == [0.5, 0.25, 0.125]
        reopened.compact()  # merged rows keep the state too
        assert {i: reopened.get(i) for i in ids} == expected
        reopened.close()
    reopened = ColumnStore.open(tmp_path / "s", options)
    # ids[3]'s lease is still held (by the durable claim); ids[1] waits for its backoff.
    assert reopened.claim_analysis("w2", 4, 60_000, T0 + 1) == []
    got = {c.image.id for c in reopened.claim_analysis("w2", 4, 60_000, T0 + 60_001)}
    assert got == {ids[1], ids[3]}
    reopened.close()


def test_an_image_that_never_completes_is_failed_after_max_attempts(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", replace(OPTS, analysis_max_attempts=3))
    poison, fine = _put_all(store, small_images[:2])
    now = T0
    for attempt in range(1, 4):  # a worker killed by the image each time: the lease runs out
        claimed = {c.image.id: c for c in store.claim_analysis("w", 1, 1_000, now)}
        assert list(claimed) == [poison] and claimed[poison].image.analysis.attempts == attempt
        now += 1_001
    head = store.head_seq

    claimed = store.claim_analysis("w", 5, 1_000, now)

    assert [c.image.id for c in claimed] == [fine]
    meta = store.get(poison)
    assert meta.status is AnalysisStatus.FAILED
    assert meta.status_detail == "gave up after 3 attempts"
    # Giving up is a change consumers see; the claim of `fine` is not.
    assert [(c.kind.name, c.image_id) for c in store.changes(head).changes] == [
        ("ANNOTATE", poison)
    ]
    store.close()
