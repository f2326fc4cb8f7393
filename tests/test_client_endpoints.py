"""Endpoint strings: one reading for both connectors, Twisted's syntax."""

from __future__ import annotations

from twisted.internet.endpoints import clientFromString
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from dpmd.client.endpoints import (
    DEFAULT_ENDPOINT,
    TcpEndpoint,
    TlsEndpoint,
    UnixEndpoint,
    parse_endpoint,
)
from dpmd.client.errors import EndpointError


class ParseTests(SynchronousTestCase):
    def test_the_three_kinds(self) -> None:
        self.assertEqual(parse_endpoint(DEFAULT_ENDPOINT), TcpEndpoint("127.0.0.1", 12083))
        self.assertEqual(
            parse_endpoint("TCP:dpm.example:1:timeout=5"), TcpEndpoint("dpm.example", 1, 5)
        )
        self.assertEqual(parse_endpoint("unix:/run/dpm.sock"), UnixEndpoint("/run/dpm.sock"))
        self.assertEqual(
            parse_endpoint("tls:dpm:443:trustRoots=/ca:certificate=c.pem:privateKey=k.pem"),
            TlsEndpoint("dpm", 443, "/ca", "c.pem", "k.pem"),
        )
        self.assertEqual(parse_endpoint("tls:dpm:443"), TlsEndpoint("dpm", 443))

    def test_backslash_escapes_colon_and_equals(self) -> None:
        self.assertEqual(parse_endpoint(r"tcp:\:\:1:80"), TcpEndpoint("::1", 80))
        self.assertEqual(parse_endpoint(r"unix:/tmp/a\=b\:c"), UnixEndpoint("/tmp/a=b:c"))
        self.assertEqual(
            parse_endpoint(r"tls:h:1:trustRoots=/x\:y").trust_roots,  # type: ignore[union-attr]
            "/x:y",
        )

    def test_refusals_say_what_is_wrong_and_what_works(self) -> None:
        for description, problem in [
            ("ssl:h:1", "unknown kind 'ssl'"),
            ("h:1", "unknown kind 'h'"),
            ("kind=tcp:h:1", "unknown kind"),
            ("tcp:h", "missing port"),
            ("tcp::80", "missing host"),
            ("unix:", "missing path"),
            ("tcp:h:http", "port 'http'"),
            ("tcp:h:0", "port '0'"),
            ("tcp:h:65536", "port '65536'"),
            ("tcp:h:1:2", "unexpected field '2'"),
            ("tcp:h:1:bindAddress=x", "unknown parameter 'bindAddress'"),
            ("tcp:host=h:port=1", "unknown parameter 'host'"),
            ("unix:/p:trustRoots=/ca", "unknown parameter 'trustRoots'"),
            ("tcp:h:1:timeout=2.5", "timeout '2.5'"),
            ("tcp:h:1:timeout=0", "timeout '0'"),
            ("tls:h:1:privateKey=k.pem", "privateKey needs certificate"),
        ]:
            error = self.assertRaises(EndpointError, parse_endpoint, description)
            self.assertIn(repr(description), str(error))
            self.assertIn(problem, str(error))
            self.assertIn("tcp:HOST:PORT", str(error))

    def test_whatever_is_accepted_twisted_accepts_too(self) -> None:
        reactor = MemoryReactor()
        for description in [
            DEFAULT_ENDPOINT,
            "tcp:dpm.example:1:timeout=5",
            r"tcp:\:\:1:80",
            "unix:/run/dpm.sock:timeout=3",
            "tls:localhost:443",
        ]:
            parse_endpoint(description)
            clientFromString(reactor, description)
