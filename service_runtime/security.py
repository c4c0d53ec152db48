"""Transport security between the services: TLS certificates and a shared service token.

Every setting is a file path, read once at start (so secrets stay out of the environment and
out of `ps`), shared by all four processes:

- `IMAGEREPO_TLS_CA`: the CA that signed the services' certificates; setting it turns TLS on
  for every gRPC server and channel.
- `IMAGEREPO_TLS_CERT` / `IMAGEREPO_TLS_KEY`: this process's certificate and key (PEM), its
  server certificate, and the client certificate it presents when it calls another service.
- `IMAGEREPO_TLS_CLIENT_AUTH=1`: servers also require a client certificate signed by the CA.
- `IMAGEREPO_TLS_SERVER_NAME`: the name to check in server certificates instead of the dialled
  host (one certificate for every service).
- `IMAGEREPO_SERVICE_TOKEN_FILE`: a shared secret every call must carry (`x-service-token`
  metadata); health checks are exempt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

TOKEN_METADATA_KEY = "x-service-token"


class SecurityConfigError(ValueError):
    """A TLS or token setting names a file that is missing, unreadable or empty."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not data.strip():
        raise SecurityConfigError(f"{what} {path} is empty")
    return data


@dataclass(frozen=True)
class TransportSecurity:
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    client_auth: bool = False
    server_name: str = ""
    token: str = ""

    @property
    def tls(self) -> bool:
        return self.ca is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TransportSecurity:
        def path(name: str) -> Path | None:
            value = env.get(name, "").strip()
            return Path(value) if value else None

        ca_path, cert_path, key_path = (
            path("IMAGEREPO_TLS_CA"),
            path("IMAGEREPO_TLS_CERT"),
            path("IMAGEREPO_TLS_KEY"),
        )
        token_path = path("IMAGEREPO_SERVICE_TOKEN_FILE")
        client_auth = env.get("IMAGEREPO_TLS_CLIENT_AUTH", "0").lower() in ("1", "true", "yes")
        if (cert_path or key_path or client_auth) and ca_path is None:
            raise SecurityConfigError(
                "IMAGEREPO_TLS_CERT/KEY/CLIENT_AUTH need IMAGEREPO_TLS_CA (the CA that signed "
                "the services' certificates)"
            )
        if (cert_path is None) != (key_path is None):
            raise SecurityConfigError("set both IMAGEREPO_TLS_CERT and IMAGEREPO_TLS_KEY")
        token = _read(token_path, "service token file").decode().strip() if token_path else ""
        return cls(
            ca=_read(ca_path, "TLS CA file") if ca_path else None,
            cert=_read(cert_path, "TLS certificate") if cert_path else None,
            key=_read(key_path, "TLS key") if key_path else None,
            client_auth=client_auth,
            server_name=env.get("IMAGEREPO_TLS_SERVER_NAME", "").strip(),
            token=token,
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        if self.cert is None or self.key is None:
            raise SecurityConfigError(
                "TLS is on (IMAGEREPO_TLS_CA is set) but this server has no certificate: "
                "set IMAGEREPO_TLS_CERT and IMAGEREPO_TLS_KEY"
            )
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.ca if self.client_auth else None,
            require_client_auth=self.client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


NO_SECURITY = TransportSecurity()
