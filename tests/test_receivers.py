"""Where a product may go: strict hosts, and local receivers confined to allowed roots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import build_config
from dpmd.daq.admission.rules import server_problems
from dpmd.locations import (
    RemoteFile,
    host_problem,
    location_problem,
    resolved_confinement_problem,
    split_location,
)
from dpmd.spec import parse_specification


def specification(*receivers: dict[str, Any], location: str = "/data/a.fits") -> Any:
    return parse_specification(
        {
            "id": "R.1",
            "sources": [{"type": "fitsFile", "sourceName": "s", "location": location}],
            "target": {"fileId": "R.1"},
            "receivers": [{"type": "olasReceiver", **receiver} for receiver in receivers],
        }
    )


class HostTests(SynchronousTestCase):
    def test_accepted_hosts(self) -> None:
        for host in ["fcs", "wdt.hq.eso.org", "fcs-1", "ins_ws", "10.0.0.7", "[2001:db8::7]",
                     "[fe80::1%eth0]", "fcs.example.org."]:  # fmt: skip
            with self.subTest(host=host):
                self.assertIsNone(host_problem(host))

    def test_refused_hosts_name_the_problem(self) -> None:
        cases = {
            "rx/evil": "contains '/'",
            "rx:out": "contains ':'",
            "2001:db8::7": "must be written in brackets: [2001:db8::7]",
            "a b": "contains a space",
            "a\tb": "control characters",
            "-oProxyCommand=x": "could be read as an option",
            "": "host is empty",
            "[nonsense]": "not a valid IPv6 address",
            "[::1": "unclosed '['",
            "300.1.1.1": "not a valid IPv4 address",
            "bad!name": "is not a host name",
            "-x.y": "option",
            "a..b": "is not a host name",
            "x" * 64: "is not a host name",
        }
        for host, problem in cases.items():
            with self.subTest(host=host):
                self.assertIn(problem, host_problem(host) or "")

    def test_users_are_user_names(self) -> None:
        self.assertIsNone(host_problem("fcs", "op"))
        self.assertIn("not a user name", host_problem("fcs", "o p") or "")
        self.assertIn("option", host_problem("fcs", "-l") or "")


class LocationTests(SynchronousTestCase):
    def test_bracketed_ipv6_locations(self) -> None:
        remote = split_location("op@[2001:db8::7]:/d/a.fits")
        self.assertEqual(remote, RemoteFile("2001:db8::7", "/d/a.fits", "op"))
        assert isinstance(remote, RemoteFile)
        self.assertEqual(remote.rsync_argument, "op@[2001:db8::7]:/d/a.fits")
        self.assertEqual(remote.login, "op@2001:db8::7")  # ssh takes the address bare

    def test_loopback_in_brackets_is_this_host(self) -> None:
        """``[::1]:/x.fits`` was refused as 'remote path ':1]:/x.fits' is not absolute'."""
        self.assertEqual(split_location("[::1]:/x.fits"), "/x.fits")
        self.assertIsNone(location_problem("[::1]:/x.fits"))
        self.assertEqual(split_location("127.0.0.2:/x.fits"), "/x.fits")

    def test_malformed_remote_locations(self) -> None:
        self.assertIn("not a valid IPv6", location_problem("[zz]:/x.fits") or "")
        self.assertIn("'..' segment", location_problem("fcs:/a/../etc/passwd") or "")
        self.assertIn("not absolute", location_problem("fcs:a.fits") or "")


class ConfinementTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.config = build_config({"dataroot": str(self.root)}, environ={})

    def problems(self, *receivers: dict[str, Any], config: Any = None) -> list[str]:
        return server_problems(specification(*receivers), config or self.config)

    def test_receivers_under_dataroot_and_release_dir_are_accepted(self) -> None:
        self.assertEqual(self.problems({"path": str(self.root / "olas")}), [])
        self.assertEqual(self.problems({"path": str(self.root)}), [])
        self.assertEqual(self.problems({"host": "localhost", "path": str(self.root / "x")}), [])
        outside = build_config(
            {"dataroot": str(self.root), "release_dir": "/srv/out"}, environ={}
        )
        self.assertEqual(self.problems({"path": "/srv/out/sub"}, config=outside), [])

    def test_etc_and_root_are_refused_naming_receiver_and_roots(self) -> None:
        for path in ["/etc", "/", "/srv"]:
            with self.subTest(path=path):
                [problem] = self.problems({"path": path})
                self.assertIn("$.receivers[0]", problem)
                self.assertIn(f"path {path!r} is not under a directory receivers may use", problem)
                self.assertIn(f"release.allowed: {self.root / 'released'}, {self.root}", problem)

    def test_dot_dot_segments_are_refused(self) -> None:
        [problem] = self.problems({"path": f"{self.root}/olas/../../../etc"})
        self.assertIn("has a '..' segment", problem)

    def test_a_prefix_that_is_not_a_parent_is_refused(self) -> None:
        [problem] = self.problems({"path": f"{self.root}-evil/in"})
        self.assertIn("is not under a directory receivers may use", problem)

    def test_the_workspace_is_refused(self) -> None:
        [problem] = self.problems({"path": str(self.config.workspace / "daqs")})
        self.assertIn("inside the workspace", problem)

    def test_an_added_root_and_each_receiver_named(self) -> None:
        config = build_config(
            {"dataroot": str(self.root), "release.allowed": [".", "/archive/ingest"]}, environ={}
        )
        problems = self.problems(
            {"path": "/archive/ingest/in"}, {"path": "/etc"}, {"host": "rx/evil", "path": "/o"},
            config=config,
        )  # fmt: skip
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(problems[0].startswith("$.receivers[1]: path '/etc'"))
        self.assertTrue(problems[1].startswith("$.receivers[2]: host 'rx/evil' contains '/'"))

    def test_remote_receivers_are_not_confined(self) -> None:
        self.assertEqual(self.problems({"host": "archive.example.org", "path": "/in"}), [])

    def test_a_link_out_of_a_root_is_caught_when_resolved(self) -> None:
        (self.root / "sneaky").symlink_to("/etc")
        path = str(self.root / "sneaky")
        self.assertEqual(self.problems({"path": path}), [])  # as written it is inside
        problem = resolved_confinement_problem(
            path, self.config.release_allowed, self.config.workspace
        )
        self.assertIn("'/etc' is not under", problem or "")
