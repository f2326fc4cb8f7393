"""``mtls:``: a TLS listener that admits only clients with a certificate from one CA.

    mtls:PORT:privateKey=KEY.pem:certKey=CERT.pem:caCert=CA.pem[:interface=ADDR][:backlog=N]
         [:handshakeTimeout=SECONDS]

The server presents ``certKey`` (``privateKey`` may hold both, as for
Twisted's ``ssl:``; further certificates in ``certKey`` are sent as the
chain) and requires a client certificate that verifies against ``caCert``
(one or more CA certificates in PEM).  TLS 1.2 is the oldest version
offered.  A client's identities are its certificate's subject common name
and its DNS subject alternative names (parsed by ``service_identity``);
the session decides what they may do (``dpmd.access``) once the handshake
is done.  ``interface`` defaults to every IPv4 address; an IPv6 address is
written with escaped colons, as in every Twisted endpoint string
(``interface=\\:\\:1``).  A client that has not completed the handshake
``handshakeTimeout`` seconds (10) after connecting is dropped, so that
connections that prove nothing cannot use up ``max_connections``.

It is registered as a Twisted endpoint-string plugin
(``twisted/plugins/dpmd_mtls.py``), so ``--listen`` and the ``listen`` key
take it like ``tcp:`` or ``ssl:``.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL.crypto import X509
from service_identity.exceptions import CertificateError
from service_identity.hazmat import DNSPattern
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from dpmd.access import IClientIdentities
from dpmd.logs import get_logger

log = get_logger(__name__)

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to complete the TLS handshake (``handshakeTimeout=``)."""

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def certificate_identities(certificate: X509) -> tuple[str, ...]:
    """The subject common names and DNS names of a certificate, in that order."""
    subject = certificate.to_cryptography().subject
    names = [str(name.value) for name in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        patterns = extract_patterns(certificate)
    except CertificateError:
        patterns = []
    for pattern in patterns:
        if isinstance(pattern, DNSPattern):
            names.append(pattern.pattern.decode("utf-8", "replace"))
    return tuple(dict.fromkeys(names))


@implementer(IClientIdentities)
class _AuthenticatedTLS(BufferingTLSTransport):
    """A TLS connection that tells its protocol who the verified client is.

    A client that connects and never completes the handshake would hold one
    of the server's ``max_connections`` without ever proving anything: it is
    dropped after the factory's ``handshake_timeout``.
    """

    factory: _AuthenticatedTLSFactory
    _deadline: Any = None

    def makeConnection(self, transport: Any) -> None:
        self._deadline = self.factory.clock.callLater(
            self.factory.handshake_timeout, self._handshake_expired
        )
        super().makeConnection(transport)

    def _handshake_expired(self) -> None:
        self._deadline = None
        if not self._handshakeDone:
            log.warn(
                "dropping {peer}: no TLS handshake within {seconds} s",
                peer=str(self.getPeer()),
                seconds=self.factory.handshake_timeout,
            )
            self.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        super().connectionLost(reason)

    def client_identities(self) -> tuple[str, ...]:
        certificate = self.getPeerCertificate()
        return () if certificate is None else certificate_identities(certificate)


class _AuthenticatedTLSFactory(TLSMemoryBIOFactory):
    protocol = _AuthenticatedTLS

    def __init__(
        self, options: Any, wrapped: IProtocolFactory, clock: Any, handshake_timeout: float
    ) -> None:
        super().__init__(options, False, wrapped, clock)
        self.clock = clock
        self.handshake_timeout = handshake_timeout

    def buildProtocol(self, addr: Any) -> Any:
        inner = self.wrappedFactory.buildProtocol(addr)
        return None if inner is None else self.protocol(self, inner)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ValueError(f"mtls: cannot read {what} {path}: {error.strerror}") from None


def _certificates(pem: bytes, path: str, what: str) -> list[ssl.Certificate]:
    blocks = _PEM_CERTIFICATE.findall(pem)
    if not blocks:
        raise ValueError(f"mtls: {what} {path} holds no PEM certificate")
    try:
        return [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as error:  # pyOpenSSL's errors carry OpenSSL's reason list
        raise ValueError(f"mtls: {what} {path} is not a valid certificate: {error}") from None


def mutual_tls_options(private_key: str, cert_key: str, ca_cert: str) -> ssl.CertificateOptions:
    """Server options: our certificate, client certificates required and checked, TLS ≥ 1.2."""
    key_pem = _read(private_key, "privateKey")
    cert_pem = _read(cert_key, "certKey") if cert_key != private_key else key_pem
    chain = _certificates(cert_pem, cert_key, "certKey")
    authorities = _certificates(_read(ca_cert, "caCert"), ca_cert, "caCert")
    try:
        ours = ssl.PrivateCertificate.loadPEM(chain[0].dumpPEM() + b"\n" + key_pem)
    except Exception as error:
        raise ValueError(f"mtls: privateKey {private_key} is not a usable key: {error}") from None
    return ssl.CertificateOptions(
        privateKey=ours.privateKey.original,
        certificate=ours.original,
        extraCertChain=[certificate.original for certificate in chain[1:]],
        trustRoot=ssl.trustRootFromCertificates(authorities),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


@implementer(IStreamServerEndpoint)
class MutualTLSServerEndpoint:
    """Listens on TCP and wraps every connection in mutually authenticated TLS."""

    def __init__(
        self,
        reactor: Any,
        port: int,
        options: ssl.CertificateOptions,
        interface: str = "",
        backlog: int = 50,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        endpoint = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
        self._tcp = endpoint(reactor, port, backlog, interface)
        self._reactor = reactor
        self._options = options
        self._handshake_timeout = handshake_timeout

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        factory = _AuthenticatedTLSFactory(
            self._options, protocolFactory, self._reactor, self._handshake_timeout
        )
        return self._tcp.listen(factory)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class MutualTLSParser:
    """The ``mtls:`` prefix of Twisted's endpoint strings."""

    prefix = "mtls"

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> Any:
        if len(args) != 1:
            raise ValueError("mtls: takes one port, as in mtls:12084:privateKey=…:caCert=…")
        known = {"privateKey", "certKey", "caCert", "interface", "backlog", "handshakeTimeout"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise ValueError(f"mtls: unknown parameter {unknown[0]!r} (known: {names})")
        values = {name: str(value) for name, value in kwargs.items()}
        return parse_mutual_tls(reactor, str(args[0]), **values)


def parse_mutual_tls(
    reactor: Any,
    port: str,
    privateKey: str = "",
    certKey: str = "",
    caCert: str = "",
    interface: str = "",
    backlog: str = "50",
    handshakeTimeout: str = str(HANDSHAKE_TIMEOUT),
) -> MutualTLSServerEndpoint:
    """The endpoint an ``mtls:`` string describes; ``ValueError`` says what is wrong with it."""
    missing = [name for name, value in (("privateKey", privateKey), ("caCert", caCert))
               if not value]  # fmt: skip
    if missing:
        raise ValueError(f"mtls: needs {' and '.join(f'{name}=FILE' for name in missing)}")
    try:
        number, depth = int(port), int(backlog)
    except ValueError:
        raise ValueError(f"mtls: port {port!r} and backlog must be integers") from None
    try:
        timeout = float(handshakeTimeout)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < float("inf"):
        raise ValueError(f"mtls: handshakeTimeout must be a positive number of seconds, "
                         f"not {handshakeTimeout!r}")  # fmt: skip
    options = mutual_tls_options(privateKey, certKey or privateKey, caCert)
    return MutualTLSServerEndpoint(reactor, number, options, interface, depth, timeout)
