"""v2 mirrors v1: every v1 RPC has its v2 counterpart (search's write RPCs excepted: search
follows storage's feed), and each v2 servicer implements every RPC of its service, so a call
added to v1 without v2 (or a v2 RPC left to the generated UNIMPLEMENTED stub) fails here."""

from __future__ import annotations

import pytest

from imagerepo.common.v1 import common_pb2 as common_v1
from imagerepo.common.v2 import common_pb2 as common_v2
from imagerepo.search.v1 import search_service_pb2 as search_v1
from imagerepo.search.v2 import search_service_pb2 as search_v2
from imagerepo.search.v2 import search_service_pb2_grpc as search_v2_grpc
from imagerepo.storage.v1 import storage_service_pb2 as storage_v1
from imagerepo.storage.v2 import storage_service_pb2 as storage_v2
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_v2_grpc
from imagerepo.vision.v1 import vision_service_pb2 as vision_v1
from imagerepo.vision.v2 import vision_service_pb2 as vision_v2
from imagerepo.vision.v2 import vision_service_pb2_grpc as vision_v2_grpc
from search_service.servicer_v2 import SearchServicerV2
from storage_service.servicer_v2 import StorageServicerV2
from vision_service.servicer_v2 import VisionServicerV2

# v1 RPCs v2 leaves out on purpose, each with why.
LEFT_OUT_OF_V2 = {
    # Search follows storage's change feed; v1 refuses these when it does.
    "SearchService": {"IndexImage", "RemoveImage", "Rebuild"},
}

SERVICES = [
    (storage_v1, storage_v2, "StorageService", StorageServicerV2, storage_v2_grpc),
    (search_v1, search_v2, "SearchService", SearchServicerV2, search_v2_grpc),
    (vision_v1, vision_v2, "VisionService", VisionServicerV2, vision_v2_grpc),
]


def rpc_names(module, service: str) -> set[str]:
    return {m.name for m in module.DESCRIPTOR.services_by_name[service].methods}


@pytest.mark.parametrize(("v1", "v2", "service", "_servicer", "_grpc"), SERVICES)
def test_every_v1_rpc_has_a_v2_counterpart(v1, v2, service, _servicer, _grpc):
    missing = rpc_names(v1, service) - rpc_names(v2, service) - LEFT_OUT_OF_V2.get(service, set())

    assert not missing, f"v1 {service} RPCs with no v2 counterpart: {sorted(missing)}"


@pytest.mark.parametrize(("_v1", "v2", "service", "servicer", "grpc_module"), SERVICES)
def test_every_v2_rpc_is_implemented(_v1, v2, service, servicer, grpc_module):
    generated = getattr(grpc_module, f"{service}Servicer")

    unimplemented = [
        name
        for name in rpc_names(v2, service)
        if getattr(servicer, name) is getattr(generated, name)
    ]

    assert not unimplemented, f"{servicer.__name__} leaves {unimplemented} UNIMPLEMENTED"


# v1 fields v2 says differently (a Timestamp, a Duration, an enum, a page), by full name.
RENAMED_IN_V2 = {
    "imagerepo.storage.v1.ImageMetadata.created_at_unix_ms": "create_time",
    "imagerepo.storage.v1.ImageMetadata.trashed_at_unix_ms": "trash_time",
    "imagerepo.storage.v1.ImageMetadata.taken_at_unix_ms": "taken_time",
    "imagerepo.storage.v1.ImageMetadata.taken_at_is_upload_time": "taken_time_is_upload_time",
    "imagerepo.storage.v1.FindByFilenameRequest.limit": "page_size",
    "imagerepo.storage.v1.ListImagesRequest.taken_from_unix_ms": "taken_from",
    "imagerepo.storage.v1.ListImagesRequest.taken_to_unix_ms": "taken_until",
    "imagerepo.storage.v1.GetStatsResponse.oldest_pending_age_ms": "oldest_pending_age",
    "imagerepo.storage.v1.VerifyReport.finished_at_unix_ms": "finish_time",
    "imagerepo.storage.v1.AnalysisState.lease_expires_unix_ms": "lease_expire_time",
    "imagerepo.storage.v1.AnalysisState.next_attempt_unix_ms": "next_attempt_time",
    "imagerepo.storage.v1.ClaimAnalysisRequest.lease_ms": "lease",
    "imagerepo.storage.v1.Album.created_at_unix_ms": "create_time",
    "imagerepo.storage.v1.Album.updated_at_unix_ms": "update_time",
    "imagerepo.search.v1.SearchFilters.taken_from_unix_s": "taken_from",
    "imagerepo.search.v1.SearchFilters.taken_until_unix_s": "taken_until",
    "imagerepo.search.v1.GetStatsResponse.load_time_s": "load_duration",
    "imagerepo.common.v1.ColourShare.name": "colour",
    "imagerepo.common.v1.LabelFeedback.created_at_unix_ms": "create_time",
}


@pytest.mark.parametrize(
    ("v1", "v2"),
    [(v1, v2) for v1, v2, *_ in SERVICES] + [(common_v1, common_v2)],
)
def test_every_v1_field_has_a_v2_counterpart(v1, v2):
    missing = []
    for name, message in v1.DESCRIPTOR.message_types_by_name.items():
        counterpart = v2.DESCRIPTOR.message_types_by_name.get(name)
        if counterpart is None:
            continue  # a message of an RPC left out of v2 (checked above) or renamed whole
        for field in message.fields:
            wanted = RENAMED_IN_V2.get(field.full_name, field.name)
            if wanted not in counterpart.fields_by_name:
                missing.append(field.full_name)

    assert not missing, f"v1 fields with no v2 counterpart: {missing}"
