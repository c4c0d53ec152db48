"""Dominant colours: stored by CompleteAnalysis through the log (durable, in the feed),
returned in ImageMetadata.colours, and refused when the names or shares are not valid."""

from __future__ import annotations

import grpc
import pytest

from imagerepo.common.v1 import common_pb2
from imagerepo.storage.v1 import storage_service_pb2 as pb
from tests.storage_service.conftest import put

COLOURS = [("red", 0.5), ("brown", 0.25), ("white", 0.125)]  # exact in float32


def _claim_one(stub) -> pb.ClaimedImage:
    claimed = stub.ClaimAnalysis(pb.ClaimAnalysisRequest(worker_id="w", max_images=1), timeout=30)
    assert len(claimed.images) == 1
    return claimed.images[0]


def _complete(stub, claim: pb.ClaimedImage, colours) -> pb.CompleteAnalysisResponse:
    result = pb.AnalysisResult(
        labels=[common_pb2.Label(name="espresso", probability=0.75, class_index=967)],
        colours=[common_pb2.ColourShare(name=n, share=s) for n, s in colours],
    )
    return stub.CompleteAnalysis(
        pb.CompleteAnalysisRequest(
            image_id=claim.image.id, generation=claim.generation, result=result
        ),
        timeout=30,
    )


def _replay(stub, after_seq: int) -> list[pb.Change]:
    stream = stub.WatchChanges(pb.WatchChangesRequest(after_seq=after_seq), timeout=30)
    return [change for message in stream for change in message.changes]


def _colours(meta: pb.ImageMetadata) -> list[tuple[str, float]]:
    return [(c.name, c.share) for c in meta.colours]


def test_colours_round_trip_survive_restart_and_reach_the_feed(storage_runner, photo_jpegs):
    storage = storage_runner.start()
    image_id = put(storage.stub, photo_jpegs["coffee"], "IMG_0001.jpg").image.id
    head = _replay(storage.stub, 0)[-1].seq

    done = _complete(storage.stub, _claim_one(storage.stub), COLOURS)
    assert _colours(done.image) == COLOURS

    got = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30).image
    assert _colours(got) == COLOURS
    assert [_colours(c.image) for c in _replay(storage.stub, head)] == [COLOURS]

    restarted = storage_runner.restart()
    again = restarted.stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30).image
    assert _colours(again) == COLOURS
    # Other annotation edits keep them.
    edited = restarted.stub.UpdateAnnotations(
        pb.UpdateAnnotationsRequest(image_id=image_id, add_tags=["cup"]), timeout=30
    )
    assert _colours(edited.image) == COLOURS


@pytest.mark.parametrize(
    ("colours", "message"),
    [
        ([("teal", 0.5)], "unknown colour 'teal'"),
        ([("red", 1.5)], "outside 0..1"),
        ([("red", float("nan"))], "outside 0..1"),
        ([("red", 0.5), ("red", 0.2)], "given twice"),
        ([("red", 0.01)] * 12, "over the limit of 11"),
    ],
)
def test_invalid_colours_are_refused_and_nothing_changes(storage, photo_jpegs, colours, message):
    image_id = put(storage.stub, photo_jpegs["coffee"], "IMG_0002.jpg").image.id
    claim = _claim_one(storage.stub)

    with pytest.raises(grpc.RpcError) as err:
        _complete(storage.stub, claim, colours)

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")
    meta = storage.stub.GetImage(pb.GetImageRequest(image_id=image_id), timeout=30).image
    assert meta.status == common_pb2.ANALYSIS_STATUS_PENDING and not meta.colours
