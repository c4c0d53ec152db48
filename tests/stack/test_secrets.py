"""`python -m stack init-secrets`: the files compose mounts, usable as they are by the services."""

from __future__ import annotations

from pathlib import Path

from gateway.config import GatewayConfig
from service_runtime.security import TransportSecurity
from stack.secrets import init_secrets
from tests.service_runtime.test_runtime_server import _search, serve


def test_init_secrets_creates_each_file_once(tmp_path: Path):
    first = init_secrets(tmp_path / "secrets")
    token = (tmp_path / "secrets" / "service_token").read_text()
    second = init_secrets(tmp_path / "secrets")

    assert len(first) == 4 and "the admin key is admin:" in first[2]
    assert second == [f"every secret already exists in {tmp_path / 'secrets'}"]
    assert (tmp_path / "secrets" / "service_token").read_text() == token
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700


def test_the_gateway_reads_its_keys_and_secret_from_the_files(tmp_path: Path):
    secrets = tmp_path / "secrets"
    init_secrets(secrets)
    (secrets / "api_keys").write_text("# owners\nalice:a1\nbob:b2\n")

    config = GatewayConfig.from_env(
        {
            "IMAGEREPO_API_KEYS_FILE": str(secrets / "api_keys"),
            "IMAGEREPO_ADMIN_KEYS_FILE": str(secrets / "admin_keys"),
            "GATEWAY_SECRET_KEY_FILE": str(secrets / "session_secret"),
            "IMAGEREPO_SERVICE_TOKEN_FILE": str(secrets / "service_token"),
        }
    )

    admin = (secrets / "admin_keys").read_text().strip()
    assert config.api_keys == {"alice:a1", "bob:b2", admin}
    assert config.admin_keys == {admin}
    assert config.security.token == (secrets / "service_token").read_text().strip()


def test_generated_certificates_secure_a_real_server_by_service_name(tmp_path: Path):
    secrets = tmp_path / "secrets"
    init_secrets(secrets, tls=True)
    env = {
        "IMAGEREPO_TLS_CA": str(secrets / "tls" / "ca.pem"),
        "IMAGEREPO_TLS_CERT": str(secrets / "tls" / "cert.pem"),
        "IMAGEREPO_TLS_KEY": str(secrets / "tls" / "key.pem"),
        "IMAGEREPO_TLS_CLIENT_AUTH": "1",
        "IMAGEREPO_SERVICE_TOKEN_FILE": str(secrets / "service_token"),
    }
    server, address = serve(TransportSecurity.from_env(env))
    try:
        as_storage = TransportSecurity.from_env({**env, "IMAGEREPO_TLS_SERVER_NAME": "storage"})
        ok = _search(address, as_storage)
        by_ip = _search(address, TransportSecurity.from_env(env))
        no_client_cert = _search(
            address, TransportSecurity.from_env({"IMAGEREPO_TLS_CA": env["IMAGEREPO_TLS_CA"]})
        )
    finally:
        server.stop(None)

    assert ok.name == "OK" and by_ip.name == "OK"
    assert no_client_cert.name == "UNAVAILABLE"


def test_tls_without_the_tls_extra_says_what_to_install(tmp_path: Path, monkeypatch, capsys):
    # A plain `pip install .` has no cryptography: --tls must say how to get it, not trace back.
    import sys

    from stack.secrets import main

    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)

    assert main([str(tmp_path / "secrets"), "--tls"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'imagerepo[tls]'" in err
    assert not (tmp_path / "secrets" / "tls" / "cert.pem").exists()
