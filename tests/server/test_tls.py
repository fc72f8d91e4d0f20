"""HTTPS: a real loopback server with the self-signed certificate, checked by a client that trusts only it; and the
certificate kept and reused while it covers the machine's names."""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
from pathlib import Path

import pytest

from server.app import create_app
from server.settings import ServerSettings
from server.tls import TlsSettings, machine_names, self_signed_certificate, server_certificate
from tests.server.fake_renderer import LoudnessRenderer
from tests.server.live_server import serve_in_thread

LOOPBACK = (["localhost"], [ipaddress.ip_address("127.0.0.1")])


def test_a_loopback_server_answers_over_https_with_its_self_signed_certificate(
    settings: ServerSettings, tmp_path: Path
) -> None:
    certificate = self_signed_certificate(tmp_path / "tls", LOOPBACK)
    trusting = ssl.create_default_context(cafile=certificate.cert)
    with serve_in_thread(create_app(settings, renderer=LoudnessRenderer()), certificate=certificate) as url:
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=trusting, timeout=10)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200 and json.load(response)["status"] == "ok"
        connection.close()
        stranger = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(), timeout=10)
        with pytest.raises(ssl.SSLCertVerificationError):
            stranger.request("GET", "/healthz")
        stranger.close()


def test_the_certificate_is_reused_while_it_covers_the_names_and_renewed_when_not(tmp_path: Path) -> None:
    first = self_signed_certificate(tmp_path, LOOPBACK)
    assert len(first.fingerprint.split(":")) == 32
    assert (first.key.stat().st_mode & 0o777) == 0o600
    assert self_signed_certificate(tmp_path, LOOPBACK) == first
    wider = (["localhost", "avatar-box"], [ipaddress.ip_address("127.0.0.1")])
    assert self_signed_certificate(tmp_path, wider).fingerprint != first.fingerprint


def test_the_machine_names_include_loopback_and_the_host_name() -> None:
    names, addresses = machine_names()
    assert "localhost" in names
    assert ipaddress.ip_address("127.0.0.1") in addresses


def test_tls_settings_refuse_half_a_pair_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        TlsSettings(cert=tmp_path / "cert.pem")
    with pytest.raises(ValueError, match="does not exist"):
        TlsSettings(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem")


def test_the_server_certificate_is_the_one_given_or_the_self_signed_one_or_none(tmp_path: Path) -> None:
    made = self_signed_certificate(tmp_path / "made", LOOPBACK)
    assert server_certificate(TlsSettings(cert=made.cert, key=made.key)) == made
    self_signed = server_certificate(TlsSettings(self_signed=True, directory=tmp_path / "own"))
    assert self_signed is not None and self_signed.cert.parent == tmp_path / "own"
    assert server_certificate(TlsSettings()) is None
