"""tests/support/identity.py: the minted client certificate is what the apiserver's x509
authenticator turns into ``user=CN, groups=O`` (checked here against a throw-away CA;
the integration tests use the devenv's)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.identity import mint_user_kubeconfig


def make_pki(tmp_path: Path) -> tuple[Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return pki, ca


def admin_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "admin.kubeconfig"
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "admin-cluster", "cluster": cluster}],
                "users": [{"name": "admin", "user": {"token": "secret"}}],
                "contexts": [],
            }
        )
    )
    return path


def test_minted_certificate_is_a_client_cert_for_the_user_only(tmp_path: Path) -> None:
    pki, ca = make_pki(tmp_path)
    who = mint_user_kubeconfig(
        "alice", tmp_path / "out", admin_kubeconfig=admin_kubeconfig(tmp_path), pki_dir=pki
    )
    cert = x509.load_pem_x509_certificate(who.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []  # no groups
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(who.key_pem, password=None)
    assert key.public_key() == cert.public_key()


def test_kubeconfig_reuses_the_cluster_and_carries_only_the_certificate(tmp_path: Path) -> None:
    pki, _ = make_pki(tmp_path)
    who = mint_user_kubeconfig(
        "bob",
        tmp_path / "out",
        admin_kubeconfig=admin_kubeconfig(tmp_path),
        pki_dir=pki,
        groups=("team",),
    )
    config = json.loads(who.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["current-context"] == "bob"
    user = config["users"][0]["user"]
    assert set(user) == {"client-certificate-data", "client-key-data"}  # no admin token
    assert base64.b64decode(user["client-certificate-data"]) == who.cert_pem
    cert = x509.load_pem_x509_certificate(who.cert_pem)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "team"
    ]
    assert who.kubeconfig.stat().st_mode & 0o777 == 0o600
