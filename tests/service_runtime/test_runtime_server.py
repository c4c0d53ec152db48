"""What every service's gRPC server does, on real servers bound to port 0: per-RPC metrics
scraped over HTTP, the request id in the call's log lines, the service token, and TLS with
and without client certificates (certificates generated here)."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagerepo.search.v1 import search_service_pb2 as pb
from imagerepo.search.v1 import search_service_pb2_grpc as pb_grpc
from search_service.durable_index import DurableIndex
from search_service.servicer import SearchServicer
from service_runtime.channels import open_channel
from service_runtime.grpc_server import RuntimeServer, new_server
from service_runtime.health import ServiceHealth
from service_runtime.logs import RequestIdFilter, reset_request_id, set_request_id
from service_runtime.metrics import start_metrics_server
from service_runtime.security import SecurityConfigError, TransportSecurity

from .certs import Pem, issue, make_ca

SEARCH = "imagerepo.search.v1.SearchService"


def serve(security: TransportSecurity) -> tuple[RuntimeServer, str]:
    """A real search server (empty in-memory index) with health, on a free loopback port."""
    server = new_server(4, security=security, env={})
    pb_grpc.add_SearchServiceServicer_to_server(SearchServicer(DurableIndex.open(None)), server)
    ServiceHealth(server, SEARCH).set_serving(True)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def plain() -> Iterator[str]:
    server, address = serve(TransportSecurity())
    yield address
    server.stop(None)


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _handled(samples: dict[str, float], method: str, code: str) -> float:
    key = (
        f'grpc_server_handled_total{{grpc_code="{code}",grpc_method="{method}",'
        f'grpc_service="{SEARCH}"}}'
    )
    return samples.get(key, 0.0)


def test_metrics_count_each_rpc_by_status_code_and_time_it(plain):
    metrics = start_metrics_server(0)
    url = f"http://127.0.0.1:{metrics.port}/metrics"
    try:
        before = _scrape(url)
        with open_channel(plain) as channel:
            stub = pb_grpc.SearchServiceStub(channel)
            stub.Search(pb.SearchRequest(query="cat"), timeout=5)
            stub.Search(pb.SearchRequest(query="dog"), timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.Search(pb.SearchRequest(query=" "), timeout=5)
        after = _scrape(url)
    finally:
        metrics.stop()

    assert _handled(after, "Search", "OK") - _handled(before, "Search", "OK") == 2
    assert (
        _handled(after, "Search", "INVALID_ARGUMENT")
        - _handled(before, "Search", "INVALID_ARGUMENT")
        == 1
    )
    count = f'grpc_server_handling_seconds_count{{grpc_method="Search",grpc_service="{SEARCH}"}}'
    assert after[count] - before.get(count, 0.0) == 3


def test_the_request_id_reaches_the_service_log_lines(plain, caplog):
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.DEBUG, logger="service_runtime.interceptors")
    token = set_request_id("req-1234")
    try:
        with open_channel(plain) as channel:
            pb_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(query="cat"), timeout=5)
    finally:
        reset_request_id(token)

    rpc_lines = [r for r in caplog.records if r.getMessage() == "rpc" and r.rpc == "Search"]
    assert [r.request_id for r in rpc_lines] == ["req-1234"]


# --- service token -------------------------------------------------------------------------------


@pytest.fixture
def token_server() -> Iterator[str]:
    server, address = serve(TransportSecurity(token="s3rvice-token"))
    yield address
    server.stop(None)


def _search(address: str, security: TransportSecurity | None = None) -> grpc.StatusCode:
    with open_channel(address, security=security) as channel:
        try:
            pb_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(query="cat"), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _health(address: str, security: TransportSecurity | None = None) -> grpc.StatusCode:
    with open_channel(address, security=security) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_calls_without_the_service_token_are_refused(token_server):
    assert _search(token_server) == grpc.StatusCode.UNAUTHENTICATED
    assert _search(token_server, TransportSecurity(token="wrong")) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert _search(token_server, TransportSecurity(token="s3rvice-token")) == grpc.StatusCode.OK


def test_health_checks_need_no_token(token_server):
    assert _health(token_server) == grpc.StatusCode.OK


def test_the_token_is_read_from_its_file(tmp_path: Path):
    (tmp_path / "token").write_text("from-a-file\n")

    security = TransportSecurity.from_env({"IMAGEREPO_SERVICE_TOKEN_FILE": str(tmp_path / "token")})

    assert security.token == "from-a-file"


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> dict[str, Pem]:
    ca, ca_key = make_ca()
    stranger, stranger_key = make_ca("another CA")
    return {
        "ca": ca,
        "server": issue(ca, ca_key),
        "client": issue(ca, ca_key, "gateway"),
        "stranger_ca": stranger,
        "stranger": issue(stranger, stranger_key, "gateway"),
    }


def _tls(pki: dict[str, Pem], who: str | None, ca: str = "ca", **kw) -> TransportSecurity:
    cert = pki[who] if who else None
    return TransportSecurity(
        ca=pki[ca].cert, cert=cert.cert if cert else None, key=cert.key if cert else None, **kw
    )


@pytest.fixture
def tls_server(pki) -> Iterator[str]:
    server, address = serve(_tls(pki, "server"))
    yield address
    server.stop(None)


@pytest.fixture
def mtls_server(pki) -> Iterator[str]:
    server, address = serve(_tls(pki, "server", client_auth=True, token="t0ken"))
    yield address
    server.stop(None)


def test_a_tls_server_answers_clients_that_trust_its_ca(tls_server, pki):
    assert _search(tls_server, _tls(pki, None)) == grpc.StatusCode.OK


def test_a_tls_server_refuses_plain_text_and_untrusting_clients(tls_server, pki):
    assert _search(tls_server) == grpc.StatusCode.UNAVAILABLE
    assert _search(tls_server, _tls(pki, None, ca="stranger_ca")) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_from_the_same_ca(mtls_server, pki):
    assert _search(mtls_server, _tls(pki, None, token="t0ken")) == grpc.StatusCode.UNAVAILABLE
    assert _search(mtls_server, _tls(pki, "stranger", token="t0ken")) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert _search(mtls_server, _tls(pki, "client", token="t0ken")) == grpc.StatusCode.OK
    assert _search(mtls_server, _tls(pki, "client")) == grpc.StatusCode.UNAUTHENTICATED


def test_tls_settings_are_file_paths_checked_at_start(tmp_path: Path, pki):
    (tmp_path / "ca.pem").write_bytes(pki["ca"].cert)
    (tmp_path / "cert.pem").write_bytes(pki["server"].cert)
    (tmp_path / "key.pem").write_bytes(pki["server"].key)
    env = {
        "IMAGEREPO_TLS_CA": str(tmp_path / "ca.pem"),
        "IMAGEREPO_TLS_CERT": str(tmp_path / "cert.pem"),
        "IMAGEREPO_TLS_KEY": str(tmp_path / "key.pem"),
        "IMAGEREPO_TLS_CLIENT_AUTH": "1",
    }

    security = TransportSecurity.from_env(env)

    assert security.tls and security.client_auth and security.cert == pki["server"].cert
    with pytest.raises(SecurityConfigError, match="cannot read TLS key"):
        TransportSecurity.from_env({**env, "IMAGEREPO_TLS_KEY": str(tmp_path / "missing.pem")})
    with pytest.raises(SecurityConfigError, match="need IMAGEREPO_TLS_CA"):
        TransportSecurity.from_env({k: v for k, v in env.items() if k != "IMAGEREPO_TLS_CA"})


def test_a_server_without_a_certificate_cannot_bind_when_tls_is_on(pki):
    server = new_server(1, security=_tls(pki, None), env={})

    with pytest.raises(SecurityConfigError, match="no certificate"):
        server.add_insecure_port("127.0.0.1:0")
