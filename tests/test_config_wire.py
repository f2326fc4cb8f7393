"""Configuration keys of the wire and the door: bounds, confinement, access."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import ConfigError, build_config


class WireKeyTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = build_config(environ={}, cwd="/srv/data")
        self.assertEqual(config.release_allowed, (Path("/srv/data/released"), Path("/srv/data")))
        self.assertEqual(config.storage_max_age, 1.0)
        self.assertEqual(config.max_connections, 200)
        self.assertEqual(config.max_buffered_bytes, 64 << 20)
        self.assertEqual((config.access.control, config.access.read), ((), ()))

    def test_allowed_roots_are_relative_to_dataroot_and_normalised(self) -> None:
        config = build_config(
            {"release.allowed": ["in", "/archive/ingest/", "/x/../y"]}, environ={}, cwd="/d"
        )
        self.assertEqual(
            config.release_allowed,
            (Path("/d/released"), Path("/d/in"), Path("/archive/ingest"), Path("/y")),
        )

    def test_identities_are_compared_without_case(self) -> None:
        config = build_config({"access.control": ["OCM.Example.Org"]}, environ={})
        self.assertEqual(config.access.control, ("ocm.example.org",))

    def test_bad_values(self) -> None:
        cases = [
            ({"release.allowed": "/in"}, "release.allowed", "list of strings"),
            ({"storage.max_age": 0}, "storage.max_age", "positive"),
            ({"max_connections": 0}, "max_connections", "at least 1"),
            ({"max_buffered_bytes": 2048}, "max_buffered_bytes", "at least max_line_bytes"),
            ({"access.read": [" ocm"]}, "access.read", "spaces around it"),
            ({"access.control": ["a"], "access.read": ["A"]}, "access.read", "access.control too"),
        ]
        for values, key, problem in cases:
            with self.subTest(values=values):
                error = self.assertRaises(ConfigError, build_config, values, environ={})
                self.assertEqual(error.key, key)
                self.assertIn(problem, str(error))
