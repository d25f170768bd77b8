"""A TLS listener that asks for client certificates and verifies them against a CA.

Twisted's ``ssl:`` endpoint strings have no option for a client CA, so a listener with
``tls_ca`` is built here from the same string (port, interface, backlog, privateKey, certKey,
extraCertChain, dhParameters) plus the CA. The TLS handshake fails for a certificate that does
not chain to the CA; with ``tls_client_cert = "required"`` also for a client without one.
"""

from __future__ import annotations

from cryptography import x509
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.python.filepath import FilePath

from serouter.config import ListenerConfig, split_endpoint


def _certificates(path: str) -> list[crypto.X509]:
    with open(path, "rb") as file:
        found = x509.load_pem_x509_certificates(file.read())
    return [crypto.X509.from_cryptography(certificate) for certificate in found]


def client_certificate_options(listener: ListenerConfig) -> ssl.CertificateOptions:
    """The TLS settings of ``listener`` (an ``ssl:`` endpoint with ``tls_ca``)."""
    assert listener.tls_ca is not None
    _args, kw = split_endpoint(listener.endpoint)
    key_path = kw.get("privateKey", "server.pem")
    with open(key_path, "rb") as file:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, file.read())
    own = _certificates(kw.get("certKey", key_path))[0]
    chain = _certificates(kw["extraCertChain"]) if "extraCertChain" in kw else None
    dh = kw.get("dhParameters")
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=own,
        extraCertChain=chain,
        dhParameters=(
            ssl.DiffieHellmanParameters.fromFile(FilePath(dh))  # type: ignore[no-untyped-call]
            if dh else None
        ),
        verify=True,
        caCerts=_certificates(listener.tls_ca),
        requireCertificate=listener.tls_client_cert == "required",
    )


def client_certificate_endpoint(reactor: object, listener: ListenerConfig) -> SSL4ServerEndpoint:
    """The listening endpoint for ``listener``, verifying client certificates."""
    args, kw = split_endpoint(listener.endpoint)
    port = int(args[1] if len(args) > 1 else kw["port"])
    return SSL4ServerEndpoint(  # type: ignore[no-untyped-call]
        reactor,
        port,
        client_certificate_options(listener),
        backlog=int(kw.get("backlog", 50)),
        interface=kw.get("interface", ""),
    )
