"""HTTPS for `echolive serve`: a certificate the user brings (`--tls-cert/--tls-key`), or one made for this machine
(`--tls-self-signed`).

Browsers give the microphone only to secure pages (https, or http on localhost), so a server used from another
machine on the LAN needs https. The self-signed certificate names everything the machine is reached by (its host
name, its fully qualified name, localhost, 127.0.0.1, ::1 and each local IP address), is kept in the user's data
directory and reused while it still covers those names and has a month left, so a browser's exception for it
(matched by the SHA-256 fingerprint printed at startup) survives restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import ifaddr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def default_tls_dir() -> Path:
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "echolive" / "tls"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert: Path | None = None
    key: Path | None = None
    self_signed: bool = False
    """Make (or reuse) a certificate for this machine's names in `directory`."""
    directory: Path | None = None
    """Where the self-signed certificate is kept; None for the user's data directory."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither")
        if self.self_signed and self.cert is not None:
            raise ValueError("--tls-self-signed makes its own certificate; drop it or --tls-cert/--tls-key")
        for path in (self.cert, self.key):
            if path is not None and not path.is_file():
                raise ValueError(f"the TLS file {path} does not exist")

    @property
    def enabled(self) -> bool:
        return self.cert is not None or self.self_signed


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str
    """SHA-256 of the certificate, colon-separated hex: what a browser shows for it."""


def server_certificate(settings: TlsSettings) -> Certificate | None:
    """The certificate to serve with; None for plain http."""
    if settings.cert is not None and settings.key is not None:
        return Certificate(settings.cert, settings.key, fingerprint(_load(settings.cert)))
    if settings.self_signed:
        return self_signed_certificate(settings.directory or default_tls_dir(), machine_names())
    return None


def machine_names() -> tuple[list[str], list[IpAddress]]:
    """DNS names and IP addresses this machine may be reached by."""
    names = sorted({"localhost", socket.gethostname(), socket.getfqdn()} - {""})
    addresses: set[IpAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for adapter in ifaddr.get_adapters():
        for address in adapter.ips:
            text = address.ip if isinstance(address.ip, str) else address.ip[0]
            parsed = ipaddress.ip_address(text.split("%")[0])
            if not parsed.is_link_local:
                addresses.add(parsed)
    return names, sorted(addresses, key=lambda address: (address.version, int(address)))


def self_signed_certificate(directory: Path, names: tuple[list[str], list[IpAddress]]) -> Certificate:
    """The certificate kept in `directory` if it still covers `names` and is not about to expire; else a new one."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    dns_names, addresses = names
    if cert_path.is_file() and key_path.is_file():
        existing = _load(cert_path)
        covered = existing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        still_valid = existing.not_valid_after_utc - _now() > RENEW_BEFORE
        if (
            still_valid
            and set(dns_names) <= set(covered.get_values_for_type(x509.DNSName))
            and set(addresses) <= set(covered.get_values_for_type(x509.IPAddress))
        ):
            return Certificate(cert_path, key_path, fingerprint(existing))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else "echolive")])
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alternative_names += [x509.IPAddress(address) for address in addresses]
    start = _now() - datetime.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Certificate(cert_path, key_path, fingerprint(certificate))


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def _load(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as error:
        raise ValueError(f"{path} is not a PEM certificate: {error}") from error


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
