"""GetStats (v1 and v2) reports the background snapshots that failed and the last one's error,
so an operator sees an index that cannot save itself (it keeps serving and retries).

Real files, a real server on a free port: the snapshot fails because its target path is a
directory (the atomic rename onto it fails), not because a fake writer says so."""

from __future__ import annotations

from pathlib import Path

import grpc

from imagerepo.search.v1 import search_service_pb2 as v1
from imagerepo.search.v1 import search_service_pb2_grpc as v1_grpc
from imagerepo.search.v2 import search_service_pb2 as v2
from imagerepo.search.v2 import search_service_pb2_grpc as v2_grpc
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex, FeedChange
from search_service.engine import EngineParams
from search_service.server import build_server
from tests.search_service.documents import DIM, doc

PARAMS = EngineParams(vector_dim=DIM)
WAIT_S = 30.0


def test_get_stats_reports_failed_snapshots_and_the_last_error(tmp_path: Path) -> None:
    index = DurableIndex.open(tmp_path, PARAMS, snapshot_every=2, snapshot_interval_s=3600)
    (tmp_path / SNAPSHOT_NAME).mkdir()  # the snapshot's rename onto it fails
    server, port, health = build_server("127.0.0.1:0", index=index)
    server.start()
    health.set_serving(True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub1 = v1_grpc.SearchServiceStub(channel)
            stub2 = v2_grpc.SearchServiceStub(channel)
            before1 = stub1.GetStats(v1.GetStatsRequest(), timeout=10)
            assert before1.snapshot_failures == 0 and before1.last_snapshot_error == ""

            index.apply(
                [FeedChange(s, f"img{s}", doc(f"img{s}", (("moped", 0.9),))) for s in (1, 2)]
            )
            assert index.maybe_snapshot()
            assert index.wait_for_snapshots(WAIT_S)

            got1 = stub1.GetStats(v1.GetStatsRequest(), timeout=10)
            got2 = stub2.GetStats(v2.GetStatsRequest(), timeout=10)
    finally:
        server.stop(grace=None)
    for got in (got1, got2):
        assert got.snapshot_failures == 1
        assert got.last_snapshot_error.startswith("IsADirectoryError")
        assert got.document_count == 2  # still serving what it applied
    assert got1.last_snapshot_error == got2.last_snapshot_error
