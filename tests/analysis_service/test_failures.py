"""What a failed call means for the image: FAILED with a plain reason when vision refuses it,
left PENDING when a service is away (an outage: storage gives the claim back, unless vision
went away while it had the image), nothing when it is gone; and the pause while away.

A vision call that runs out of time is the image's fault only when vision answered other
calls while it waited: a vision that answered nothing (stopped, stuck, overloaded) is an
outage, and no number of such timeouts fails the image."""

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


def vision_timeout(others_answered: int | None) -> CallFailedError:
    return CallFailedError(
        "vision",
        "DEADLINE_EXCEEDED",
        "Deadline Exceeded",
        waited_s=2.4,
        others_answered=others_answered,
    )


def test_a_vision_timeout_while_vision_answered_nothing_never_fails_the_image():
    slow_before = classify(vision_timeout(5), attempts=MAX_ATTEMPTS - 1).reason

    for error in (vision_timeout(0), vision_timeout(None)):
        for attempts in (1, MAX_ATTEMPTS, MAX_ATTEMPTS * 10):
            for away_at_send in (False, True):
                verdict = classify(
                    error, attempts, last_error=slow_before, vision_away_at_send=away_at_send
                )

                assert verdict.kind is Kind.TRANSIENT, (error.others_answered, attempts)
                assert verdict.reason.startswith(
                    "vision unavailable (DEADLINE_EXCEEDED): it answered nothing for 2.4 s; "
                    "waiting for it"
                )
            assert is_outage(error)


def test_a_vision_timeout_while_vision_answered_others_counts_against_the_image():
    verdict = classify(vision_timeout(5), attempts=3)

    assert verdict.kind is Kind.TRANSIENT
    assert verdict.reason == (
        "vision failed (DEADLINE_EXCEEDED): it did not answer in 2.4 s while it answered "
        "5 other images (3 of 8 attempts)"
    )
    assert not is_outage(vision_timeout(5))


def test_an_image_slow_on_every_try_is_failed_on_its_max_attempts_th_claim():
    last_error = ""
    verdicts = []

    for attempts in range(1, MAX_ATTEMPTS + 1):
        verdict = classify(vision_timeout(1), attempts, last_error)
        verdicts.append(verdict.kind)
        last_error = verdict.reason

    assert verdicts == [Kind.TRANSIENT] * (MAX_ATTEMPTS - 1) + [Kind.PERMANENT]
    assert last_error == (
        f"vision failed on this image {MAX_ATTEMPTS} times (last: DEADLINE_EXCEEDED: it did "
        "not answer in 2.4 s while it answered 1 other image)"
    )


def test_after_a_long_outage_an_images_first_slow_try_is_not_its_last():
    outage = classify(vision_timeout(0), attempts=29).reason

    first = classify(vision_timeout(5), attempts=30, last_error=outage)
    second = classify(vision_timeout(5), attempts=31, last_error=first.reason)

    assert first.kind is Kind.TRANSIENT
    assert first.reason.endswith("(30 attempts; failed for good if the next one is as slow)")
    assert second.kind is Kind.PERMANENT


def test_other_failures_are_made_permanent_after_max_attempts_as_before():
    for error in (
        CallFailedError("vision", "INTERNAL", "model error"),
        CallFailedError("storage", "DEADLINE_EXCEEDED", "Deadline Exceeded"),
    ):
        assert classify(error, attempts=MAX_ATTEMPTS - 1).kind is Kind.TRANSIENT
        verdict = classify(error, attempts=MAX_ATTEMPTS)

        assert verdict.kind is Kind.PERMANENT
        assert f"failed on this image {MAX_ATTEMPTS} times" in verdict.reason


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


def test_only_an_outage_known_before_the_call_or_not_of_visions_making_is_given_back():
    given_back_always = [
        CallFailedError("storage", "UNAVAILABLE", "connection refused"),
        CallFailedError("storage", "RESOURCE_EXHAUSTED", "busy"),
        CallFailedError("vision", "RESOURCE_EXHAUSTED", "busy"),
        CallFailedError("vision", "CANCELLED", "the worker is stopping"),
    ]
    # Vision went away: given back only when it was known away before the call went out.
    vision_away = [
        CallFailedError("vision", "UNAVAILABLE", "Stream removed (Socket closed)"),
        vision_timeout(0),
        vision_timeout(None),
    ]
    counted = [
        CallFailedError("vision", "INVALID_ARGUMENT", "cannot identify image file"),
        CallFailedError("vision", "INTERNAL", "model error"),
        CallFailedError("storage", "DEADLINE_EXCEEDED", "Deadline Exceeded"),
        vision_timeout(5),
    ]

    for error in given_back_always:
        for away_at_send in (False, True):
            verdict = classify(error, MAX_ATTEMPTS * 10, vision_away_at_send=away_at_send)
            assert verdict.outage, (error.service, error.code, away_at_send)
    for error in vision_away:
        in_flight = classify(error, MAX_ATTEMPTS * 10, vision_away_at_send=False)
        known = classify(error, MAX_ATTEMPTS * 10, vision_away_at_send=True)

        assert (in_flight.kind, known.kind) == (Kind.TRANSIENT, Kind.TRANSIENT)
        assert not in_flight.outage, error.code
        assert in_flight.reason.endswith("(counted: vision went away while it had this image)")
        assert known.outage, error.code
        assert "counted" not in known.reason
    for error in counted:
        for attempts in (1, MAX_ATTEMPTS):
            for away_at_send in (False, True):
                verdict = classify(error, attempts, vision_away_at_send=away_at_send)
                assert not verdict.outage, (error.service, error.code, attempts)
