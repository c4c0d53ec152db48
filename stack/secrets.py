"""`python -m stack init-secrets [DIR] [--tls]`: the files docker-compose.yml mounts as
secrets, created once (existing files are kept):

- service_token: a shared secret every gRPC call between the services must carry
- session_secret: signs the gallery's login sessions
- admin_keys: one admin key ("admin:<random>"), printed once
- api_keys: owners' keys, one "owner:secret" per line (empty at first: add yours)
- with --tls: tls/ca.pem, tls/cert.pem, tls/key.pem, a private CA and one certificate for the
  service names (storage, vision, search, gateway, localhost, 127.0.0.1); needs the
  `cryptography` package of the dev tools (`make setup`). The CA key is not kept.

The directory is made 0700; the files 0644, because the containers' user (uid 10001) reads
them through the bind mount, so keep the directory itself private.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import sys
from pathlib import Path

SERVICE_NAMES = ("storage", "vision", "search", "gateway", "localhost")


def _write(path: Path, text: str | bytes) -> bool:
    if path.exists():
        return False
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


class TlsSupportMissingError(RuntimeError):
    """`--tls` asked for on an install without the `tls` extra."""


def _tls_files(directory: Path) -> dict[str, bytes]:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise TlsSupportMissingError(
            "making TLS certificates needs the 'cryptography' package: "
            "pip install 'imagerepo[tls]' (or bring your own certificates into "
            f"{directory}: ca.pem, cert.pem, key.pem)"
        ) from exc

    now = datetime.datetime.now(datetime.UTC)
    years = datetime.timedelta(days=3 * 365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagerepo services CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + years)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVICE_NAMES]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagerepo")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + years)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca.pem": ca.public_bytes(pem),
        "cert.pem": cert.public_bytes(pem),
        "key.pem": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def init_secrets(directory: Path, tls: bool = False) -> list[str]:
    """Create what is missing; the lines to tell the user."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    told = []
    if _write(directory / "service_token", secrets.token_urlsafe(32) + "\n"):
        told.append(f"created {directory / 'service_token'}")
    if _write(directory / "session_secret", secrets.token_hex(32) + "\n"):
        told.append(f"created {directory / 'session_secret'}")
    admin = f"admin:{secrets.token_urlsafe(24)}"
    if _write(directory / "admin_keys", admin + "\n"):
        told.append(f"created {directory / 'admin_keys'}; the admin key is {admin}")
    if _write(
        directory / "api_keys",
        "# one key per line, owner:secret (the owner name before ':' owns the uploads)\n",
    ):
        told.append(f"created {directory / 'api_keys'} (empty: add owner:secret lines)")
    if tls:
        tls_dir = directory / "tls"
        tls_dir.mkdir(exist_ok=True)
        if not (tls_dir / "cert.pem").exists():
            for name, data in _tls_files(tls_dir).items():
                _write(tls_dir / name, data)
            names = ", ".join(SERVICE_NAMES)
            told.append(f"created a CA and a certificate for {names} in {tls_dir}")
    return told or [f"every secret already exists in {directory}"]


def main(argv: list[str]) -> int:
    tls = "--tls" in argv
    rest = [a for a in argv if a != "--tls"]
    directory = Path(rest[0]) if rest else Path("deploy/secrets")
    try:
        told = init_secrets(directory, tls=tls)
    except TlsSupportMissingError as exc:
        print(f"init-secrets: {exc}", file=sys.stderr)
        return 2
    for line in told:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
