"""Webhook CA and serving certificate management (actors/certs.py)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from actors.certs import CA_LIFETIME, SERVING_LIFETIME, ensure_certificates

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
