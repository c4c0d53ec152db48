"""What a failed call means for the image: FAILED with a plain reason when vision refuses it,
left PENDING when a service is away, nothing when it is gone; and the pause while away."""

from __future__ import annotations

from analysis_service.failures import (
    MAX_ATTEMPTS,
    Backoff,
    CallFailedError,
    Kind,
    classify,
    is_outage,
)


def test_vision_refusing_the_image_is_permanent_with_its_reason():
    error = CallFailedError("vision", "INVALID_ARGUMENT", "cannot identify image file")

    verdict = classify(error)

    assert verdict.kind is Kind.PERMANENT
    assert verdict.reason == "vision cannot analyse this image: cannot identify image file"


def test_a_service_away_is_transient_however_often():
    for code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
        error = CallFailedError("vision", code, "connection refused")

        verdict = classify(error, attempts=MAX_ATTEMPTS * 10)

        assert verdict.kind is Kind.TRANSIENT, code
        assert "vision unavailable" in verdict.reason
        assert is_outage(error)


def test_a_deadline_is_transient_until_it_keeps_coming_back():
    error = CallFailedError("vision", "DEADLINE_EXCEEDED", "Deadline Exceeded")

    assert classify(error, attempts=1).kind is Kind.TRANSIENT
    assert classify(error, attempts=MAX_ATTEMPTS).kind is Kind.PERMANENT
    assert f"{MAX_ATTEMPTS} times" in classify(error, attempts=MAX_ATTEMPTS).reason


def test_an_image_deleted_meanwhile_is_gone():
    verdict = classify(CallFailedError("storage", "NOT_FOUND", "no image with id 'x'"))

    assert verdict.kind is Kind.GONE


def test_storage_refusing_is_never_blamed_on_the_image():
    verdict = classify(CallFailedError("storage", "INVALID_ARGUMENT", "bad request"))

    assert verdict.kind is Kind.TRANSIENT


def test_backoff_doubles_up_to_its_cap_and_resets_after_a_success():
    backoff = Backoff(first_s=0.5, max_s=3.0)

    delays = [backoff.failed() for _ in range(5)]
    backoff.succeeded()

    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.failed() == 0.5
