"""Helpers for the authentication tests (no tests here): a throw-away PKI and Ed25519 keys.

``Pki`` makes a CA, a server certificate for 127.0.0.1 and client certificates with the
``cryptography`` library, writing PEM files into a directory, as an administrator would with
openssl. EC P-256 keys keep generation fast.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_DAY = datetime.timedelta(days=1)


def name(**attributes: str) -> x509.Name:
    """An X.509 name from CN=..., O=..., C=... (given most specific first, as RFC 4514)."""
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "C": NameOID.COUNTRY_NAME}
    # an x509.Name lists the least specific attribute first
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in reversed(attributes.items())])


@dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """(certificate, key) PEM files."""
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ))
        return cert_path, key_path


class Pki:
    """A CA that issues server and client certificates."""

    def __init__(self, ca_name: str = "serouter test CA") -> None:
        self.ca = self._issue(name(CN=ca_name), None, ca=True)

    def _issue(
        self, subject: x509.Name, issuer: Issued | None, *, ca: bool = False,
        san: x509.GeneralName | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        else:
            assert issuer is not None
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        signer = issuer.key if issuer else key
        return Issued(builder.sign(signer, hashes.SHA256()), key)

    def server(self) -> Issued:
        return self._issue(name(CN="127.0.0.1"), self.ca,
                           san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))

    def client(self, **attributes: str) -> Issued:
        return self._issue(name(**attributes), self.ca)
