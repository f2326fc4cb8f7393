"""Helpers the client tests share: a fake wire, a real dpmd on port 0, certificates.

This module has no tests of its own.
"""

from __future__ import annotations

import datetime
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from txaio import tx

from dpmd.client import DpmClient
from dpmd.client._twisted import ClientProtocol
from dpmd.client.cli import run
from dpmd.client.console import Console
from dpmd.client.options import build_parser
from dpmd.client.session import Session
from dpmd.config import build_config
from dpmd.server import DpmService
from dpmd.tap import build_service

ENDPOINT = "tcp:dpm.example:12083"


class RecordingLog:
    """Stands in for a txaio logger: keeps the formatted error lines."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, text: str, **fields: Any) -> None:
        self.errors.append(text.format(**fields))


class FakeServer:
    """The wire seen from the server's side: read requests, write answers."""

    def __init__(self) -> None:
        self.log = RecordingLog()
        self.session = Session(tx.with_config(), ENDPOINT, self.log)
        self.protocol = ClientProtocol(self.session, after_handshake=False)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.client = DpmClient(self.session)
        self._unanswered: list[dict[str, Any]] = []

    def requests(self) -> list[dict[str, Any]]:
        """The requests written since the last look."""
        lines = self.transport.value().splitlines()
        self.transport.clear()
        return [json.loads(text) for text in lines]

    def reply(self, result: Any = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer the oldest request not yet answered; returns that request."""
        self._unanswered += self.requests()
        request = self._unanswered.pop(0)
        if error is None:
            self.send({"id": request["id"], "result": result})
        else:
            self.send({"id": request["id"], "error": error})
        return request

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.dataReceived(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")


def short_directory(test: TestCase) -> Path:
    """A directory with a short path: AF_UNIX paths must fit in 108 bytes."""
    path = tempfile.mkdtemp(prefix="dpmc-")
    test.addCleanup(shutil.rmtree, path, True)
    return Path(path)


def start_server(test: TestCase, *listen: str, **values: Any) -> DpmService:
    """A real dpmd in this process, on the trial reactor; stopped after the test."""
    root = Path(test.mktemp()).absolute()
    root.mkdir()
    config = build_config(
        {"dataroot": str(root), "listen": list(listen or ["tcp:0:interface=127.0.0.1"]), **values},
        environ={},
    )
    service = build_service(config, reactor)
    service.startService()
    test.addCleanup(service.stopService)
    return service


def tcp_endpoint(service: DpmService, index: int = 0) -> str:
    return f"tcp:127.0.0.1:{service.ports[index].getHost().port}"


class LiveServerCase(TestCase):
    """A real dpmd on port 0 in this process, and a folder for the sources tests write."""

    def setUp(self) -> None:
        self.service = start_server(self)
        self.endpoint = tcp_endpoint(self.service)
        self.sources = Path(self.mktemp()).absolute()
        self.sources.mkdir()


class DpmctlCase(LiveServerCase):
    """``dpmctl`` run in this process against that server."""

    def dpmctl(self, *argv: str, stdin: str = "") -> Deferred[tuple[int, str, str]]:
        """``dpmctl`` in this process (the server shares its reactor)."""
        options = build_parser({"DPMCTL_CONNECT": self.endpoint}).parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        console = Console(out, err, options.json, False)
        finished = ensureDeferred(run(reactor, options, console, io.StringIO(stdin)))
        return finished.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))


@dataclass(frozen=True)
class Certificates:
    """PEM files of a test CA, a server certificate for ``localhost`` and a client's."""

    trust_roots: Path  # a directory holding the CA certificate, as ``trustRoots`` wants
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path
    other_trust_roots: Path  # a CA that signed nothing here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_certificate(certificate: x509.Certificate, path: Path) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _sign(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if names is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate valid for the name ``localhost`` only, a client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    (directory / "ca").mkdir()
    (directory / "other-ca").mkdir()
    _write_certificate(
        _sign("dpmd test CA", ca_key, "dpmd test CA", ca_key), directory / "ca/ca.pem"
    )
    (directory / "ca/README.txt").write_text("not a certificate: ignored\n")
    _write_certificate(
        _sign("other CA", other_key, "other CA", other_key), directory / "other-ca/ca.pem"
    )
    server = _sign("localhost", server_key, "dpmd test CA", ca_key, [x509.DNSName("localhost")])
    client = _sign("dpmctl test client", client_key, "dpmd test CA", ca_key, [])
    return Certificates(
        trust_roots=directory / "ca",
        server_certificate=_write_certificate(server, directory / "server.pem"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_certificate=_write_certificate(client, directory / "client.pem"),
        client_key=_write_key(client_key, directory / "client.key"),
        other_trust_roots=directory / "other-ca",
    )


def tls_listen(certificates: Certificates) -> str:
    """The server side of TLS as dpmd's configuration spells it."""
    return (
        f"ssl:0:interface=127.0.0.1:privateKey={certificates.server_key}"
        f":certKey={certificates.server_certificate}"
    )


def listen_requiring_client_certificates(service: DpmService, certificates: Certificates) -> Any:
    """Serve ``service``'s first listener also over TLS that demands a client certificate.

    dpmd's listen strings cannot ask for client certificates yet, so the test
    puts the real server's protocol factory behind a Twisted TLS port itself.
    """
    server = PrivateCertificate.loadPEM(
        certificates.server_certificate.read_bytes() + certificates.server_key.read_bytes()
    )
    ca = Certificate.loadPEM((certificates.trust_roots / "ca.pem").read_bytes())
    options = CertificateOptions(
        privateKey=server.privateKey.original,
        certificate=server.original,
        verify=True,
        caCerts=[ca.original],
        requireCertificate=True,
    )
    return SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(
        service.factories[0]
    )


def screen_lines(output: str, columns: int, lines: int = 24) -> list[str]:
    """What a terminal of this size shows after ``output``: each line, right-stripped.

    pyte is a VT100 emulator: cursor moves, erasures and wrapping happen as in
    a real terminal, so a stale or wrapped progress line is seen as a person
    would see it.
    """
    import pyte

    screen = pyte.Screen(columns, lines)
    stream = pyte.Stream(screen)
    stream.feed(output.replace("\n", "\r\n"))  # a terminal's output post-processing (onlcr)
    return [line.rstrip() for line in screen.display]


def screen_text(output: str, columns: int, lines: int = 24) -> list[str]:
    """``screen_lines`` without the blank lines at the bottom."""
    shown = screen_lines(output, columns, lines)
    while shown and not shown[-1]:
        shown.pop()
    return shown
