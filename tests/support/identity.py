"""Kubeconfigs for other identities of the devenv apiserver (RBAC and error tests).

The devenv apiserver trusts client certificates signed by its CA (``--client-ca-file``
is ``.devenv/apiserver/pki/ca.crt``, whose key is next to it): a certificate with
``CN=<user>`` and ``O=<group>`` authenticates as that user in those groups, with no
permissions until something binds them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.devenv import Devenv

PKI = Path(".devenv") / "apiserver" / "pki"


def mint_user_kubeconfig(
    devenv: Devenv, user: str, path: Path, *, groups: tuple[str, ...] = ()
) -> Path:
    """Write a kubeconfig at ``path`` for ``user`` (client certificate, one hour)."""
    pki = devenv.repo_root / PKI
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    admin = yaml.safe_load(devenv.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert.public_bytes(serialization.Encoding.PEM)),
                    "client-key-data": _b64(
                        key.private_bytes(
                            serialization.Encoding.PEM,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption(),
                        )
                    ),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
