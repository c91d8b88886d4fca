"""Non-admin identities for integration tests: client certificates from the devenv's CA.

The devenv apiserver (``scripts/apiserver/main.go``) authenticates x509 client
certificates against ``<repo>/.devenv/apiserver/pki/ca.crt`` (``--client-ca-file``) and
authorizes with RBAC. A certificate signed by that CA whose subject is ``CN=<user>`` and
has no ``O`` is the user ``<user>`` with no groups but ``system:authenticated``, so it
can do only what RBAC grants that name (plus discovery and self-review, which the
bootstrap roles give every authenticated user).

:func:`mint_user_kubeconfig` makes the key, a CSR, signs the CSR with the CA (as
``kubectl certificate approve`` plus the signer would) and writes a kubeconfig for the
same apiserver as the admin kubeconfig. Pure file and crypto work; no apiserver call.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.devenv import REPO_ROOT

#: Where ``scripts/devenv up`` keeps the apiserver's PKI (``--client-ca-file`` is ca.crt).
DEVENV_PKI = REPO_ROOT / ".devenv" / "apiserver" / "pki"
CERT_LIFETIME = timedelta(hours=12)
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class ClientIdentity:
    user: str
    kubeconfig: Path
    cert_pem: bytes
    key_pem: bytes


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # main.go makes an ECDSA P-256 CA
        raise TypeError(f"unexpected CA key type {type(key).__name__}")
    return cert, key


def sign_client_csr(
    csr: x509.CertificateSigningRequest,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    now: datetime | None = None,
) -> x509.Certificate:
    """A client-auth certificate with the CSR's subject and key, signed by the CA."""
    if not csr.is_signature_valid:
        raise ValueError("CSR signature is invalid")
    now = now or datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def mint_user_kubeconfig(
    user: str,
    out_dir: Path,
    *,
    admin_kubeconfig: Path,
    pki_dir: Path = DEVENV_PKI,
    groups: tuple[str, ...] = (),
) -> ClientIdentity:
    """Write ``<out_dir>/<user>.kubeconfig`` for a certificate ``CN=<user>`` (``O=`` groups).

    The cluster entry (server URL and CA data) is copied from ``admin_kubeconfig``.
    Raises OSError when the devenv's PKI is missing (``scripts/devenv up`` not run).
    """
    ca_cert, ca_key = _load_ca(pki_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    names += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    cert = sign_client_csr(csr, ca_cert, ca_key)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devenv", "cluster": cluster}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert_pem),
                    "client-key-data": b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "devenv", "user": user}}],
        "current-context": user,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{user}.kubeconfig"
    path.write_text(json.dumps(kubeconfig, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return ClientIdentity(user=user, kubeconfig=path, cert_pem=cert_pem, key_pem=key_pem)
