"""Webhook CA and serving certificate management (actors/infra/certs.py)."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from actors.infra import durable
from actors.infra.certs import CA_LIFETIME, SERVING_LIFETIME, ensure_certificates

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_first_start_generates_ca_and_serving_cert(tmp_path: Path) -> None:
    b = ensure_certificates(tmp_path, now=T0)
    assert b.renewed is True
    tls = tmp_path / "webhook-tls"
    assert b.ca_path.parent == tls and b.cert_path.parent == tls and b.key_path.parent == tls
    assert b.ca_pem == b.ca_path.read_bytes()

    ca = _cert(b.ca_path)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.not_valid_after_utc - T0 == CA_LIFETIME

    cert = _cert(b.cert_path)
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc - T0 == SERVING_LIFETIME
    assert cert.not_valid_before_utc <= T0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_key_files_are_0600_and_no_temp_files_left(tmp_path: Path) -> None:
    b = ensure_certificates(tmp_path)
    assert stat.S_IMODE(b.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((b.ca_path.parent / "ca.key").stat().st_mode) == 0o600
    names = sorted(p.name for p in b.ca_path.parent.iterdir())
    assert names == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_modes_are_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o277)  # would leave 0400 keys and a 0500 directory
    try:
        b = ensure_certificates(tmp_path, now=T0)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in b.ca_path.parent.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "tls.crt": 0o644, "tls.key": 0o600}
    assert stat.S_IMODE(b.ca_path.parent.stat().st_mode) == 0o700


def test_too_open_existing_files_are_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = ensure_certificates(tmp_path, now=T0)
    b.key_path.chmod(0o644)
    b.cert_path.chmod(0o666)
    b.ca_path.parent.chmod(0o755)
    before = b.cert_path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="dockmirror.certs"):
        again = ensure_certificates(tmp_path, now=T0)
    assert again.renewed is False and again.cert_path.read_bytes() == before
    assert stat.S_IMODE(b.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(b.cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(b.ca_path.parent.stat().st_mode) == 0o700
    messages = sorted(r.getMessage() for r in caplog.records)
    assert len(messages) == 3
    assert any("tls.key had mode 0644; changed to 0600" in m for m in messages)


def test_every_rename_is_followed_by_a_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_replace, real_fsync_dir = os.replace, durable.fsync_dir

    def replace(src: object, dst: object) -> None:
        events.append(f"replace {Path(str(dst)).name}")
        real_replace(src, dst)  # type: ignore[arg-type]

    def fsync_dir(directory: Path) -> None:
        events.append(f"fsync {Path(directory).name}")
        real_fsync_dir(directory)

    monkeypatch.setattr(durable.os, "replace", replace)
    monkeypatch.setattr(durable, "fsync_dir", fsync_dir)
    ensure_certificates(tmp_path, now=T0)
    assert events == [
        f"{step} {name}"
        for file in ("ca.key", "ca.crt", "tls.key", "tls.crt")
        for step, name in (("replace", file), ("fsync", "webhook-tls"))
    ]


def test_reuse_keeps_identical_bytes(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path, now=T0)
    files = {p: p.read_bytes() for p in b1.ca_path.parent.iterdir()}
    b2 = ensure_certificates(tmp_path, now=T0 + timedelta(days=100))
    assert b2.renewed is False
    assert b2.ca_pem == b1.ca_pem
    assert {p: p.read_bytes() for p in b2.ca_path.parent.iterdir()} == files


def test_serving_cert_renewed_near_expiry_ca_kept(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path, now=T0)
    old_cert = b1.cert_path.read_bytes()
    near = T0 + SERVING_LIFETIME - timedelta(days=29)
    b2 = ensure_certificates(tmp_path, now=near)
    assert b2.renewed is True
    assert b2.ca_pem == b1.ca_pem
    new = _cert(b2.cert_path)
    assert b2.cert_path.read_bytes() != old_cert
    new.verify_directly_issued_by(_cert(b2.ca_path))
    assert new.not_valid_after_utc - near == SERVING_LIFETIME
    # Just outside the window: reused.
    b3 = ensure_certificates(tmp_path, now=near + timedelta(days=1))
    assert b3.renewed is False
    # Custom renew_before.
    b4 = ensure_certificates(tmp_path, now=near, renew_before=timedelta(days=400))
    assert b4.renewed is True


def test_ca_renewed_near_its_expiry(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path, now=T0)
    late = T0 + CA_LIFETIME - SERVING_LIFETIME
    b2 = ensure_certificates(tmp_path, now=late)
    assert b2.renewed is True
    assert b2.ca_pem != b1.ca_pem
    _cert(b2.cert_path).verify_directly_issued_by(_cert(b2.ca_path))


def test_unreadable_serving_cert_is_regenerated(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path, now=T0)
    b1.cert_path.write_bytes(b"garbage")
    b2 = ensure_certificates(tmp_path, now=T0)
    assert b2.renewed is True and b2.ca_pem == b1.ca_pem
    _cert(b2.cert_path).verify_directly_issued_by(_cert(b2.ca_path))


def test_mismatched_key_is_regenerated(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path, now=T0)
    b1.key_path.write_bytes((b1.ca_path.parent / "ca.key").read_bytes())
    assert ensure_certificates(tmp_path, now=T0).renewed is True


def test_serving_cert_from_other_ca_is_regenerated(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path / "a", now=T0)
    other = ensure_certificates(tmp_path / "b", now=T0)
    b1.cert_path.write_bytes(other.cert_path.read_bytes())
    b1.key_path.write_bytes(other.key_path.read_bytes())
    b2 = ensure_certificates(tmp_path / "a", now=T0)
    assert b2.renewed is True and b2.ca_pem == b1.ca_pem
    _cert(b2.cert_path).verify_directly_issued_by(_cert(b2.ca_path))


def test_unreadable_ca_regenerates_both(tmp_path: Path) -> None:
    b1 = ensure_certificates(tmp_path, now=T0)
    (b1.ca_path.parent / "ca.key").write_bytes(b"")
    b2 = ensure_certificates(tmp_path, now=T0)
    assert b2.renewed is True and b2.ca_pem != b1.ca_pem
    _cert(b2.cert_path).verify_directly_issued_by(_cert(b2.ca_path))


def test_chain_verifies_with_ssl(tmp_path: Path) -> None:
    b = ensure_certificates(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(b.cert_path, b.key_path)
    client = ssl.create_default_context(cadata=b.ca_pem.decode())
    assert client.verify_mode == ssl.CERT_REQUIRED
    # Handshake in memory.
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, obj, src, dst in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            dst.write(src.read())
        if all(done.values()):
            break
    assert all(done.values())
