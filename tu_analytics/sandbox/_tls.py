"""The sandbox's own certificate authority and the broker's certificate (SASL_SSL listener).

Made once per sandbox directory with ``cryptography`` (no ``keytool`` round trips, which
cost a JVM start each): ``tls/ca.pem`` is what clients pass as ``ssl.ca.location``;
``tls/broker.pem`` holds the broker's key (PKCS#8, unencrypted, file mode 0600) and its
certificate chain, in the PEM keystore form Kafka reads (``ssl.keystore.type=PEM``); the
registry's https port uses the same certificate (``server-cert.pem``, ``server-key.pem``). The
certificate names 127.0.0.1 and localhost, so host-name verification stays on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from ._state import HOST, ca_path, tls_dir, write_private

VALID_DAYS = 3650


def broker_pem_path(root: Path) -> Path:
    return tls_dir(root) / "broker.pem"


def server_cert_path(root: Path) -> Path:
    """The same certificate chain alone, for the registry's https port (Quarkus)."""
    return tls_dir(root) / "server-cert.pem"


def server_key_path(root: Path) -> Path:
    return tls_dir(root) / "server-key.pem"


def ensure_certificates(root: Path) -> None:
    """Create the CA and the server certificate unless they all exist."""
    paths = (ca_path(root), broker_pem_path(root), server_cert_path(root), server_key_path(root))
    if all(p.exists() for p in paths):
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tu-analytics sandbox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    chain = cert.public_bytes(pem).decode() + ca_cert.public_bytes(pem).decode()
    write_private(broker_pem_path(root), key_pem + chain)
    write_private(server_cert_path(root), chain)
    write_private(server_key_path(root), key_pem)
    write_private(ca_path(root), ca_cert.public_bytes(pem).decode())
