"""README's *Metrics* section: its configuration is dpmd's, its scrape job points at it,
and its shell line runs as written against a real server with that configuration."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from dpmd.config import build_config, read_config_file
from dpmd.metrics.daqs import DaqTally
from dpmd.metrics.families import STAGES, RpcMetrics, StageMetrics, StateCollector
from dpmd.model import StorageStatus
from tests.rpcclient import start_server
from tests.test_doc_examples import port_is_free

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index("\n## Metrics\n")
    end = text.index("\n## ", start + 1)
    return BLOCK.findall(text[start:end])


class ReadmeMetrics(TestCase):
    def setUp(self) -> None:
        blocks = section_blocks()
        self.assertEqual([language for language, _ in blocks], ["yaml", "yaml", "sh"])
        (_, self.configuration), (_, self.scrape_job), (_, self.command) = blocks
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    def listen(self) -> str:
        path = self.root / "dpmd.yaml"
        path.write_text(self.configuration)
        config = build_config(read_config_file(path), environ={}, cwd=str(self.root))
        assert config.metrics_listen is not None
        return config.metrics_listen

    def test_the_scrape_job_targets_the_configured_listener(self) -> None:
        listen = self.listen()
        self.assertEqual(listen, "tcp:9108:interface=127.0.0.1")
        job = yaml.safe_load(self.scrape_job)["scrape_configs"][0]
        self.assertEqual(job["job_name"], "dpmd")
        self.assertEqual(job["static_configs"][0]["targets"], ["127.0.0.1:9108"])
        self.assertNotIn("metrics_path", job)  # Prometheus's default: /metrics

    @inlineCallbacks
    def test_the_shell_line_runs_as_written(self) -> None:
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed")
        listen, command = self.listen(), self.command.strip()
        if not port_is_free(9108):  # the example's port is taken: the same line on another
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            listen = listen.replace("9108", str(port))
            command = command.replace("9108", str(port))
        yield start_server(self, self.root, **{"metrics.listen": listen})
        out, err, code = yield getProcessOutputAndValue("/bin/sh", ["-c", command],
                                                        reactor=reactor)  # fmt: skip
        self.assertEqual((code, err), (0, b""))
        lines = out.decode().splitlines()
        self.assertEqual(lines, ["dpmd_queue_depth 0.0", "dpmd_queue_oldest_age_seconds 0.0"])

    @inlineCallbacks
    def test_curl_gets_the_format_the_section_names(self) -> None:
        """A plain ``curl`` gets the Prometheus text format; OpenMetrics is served to a
        request whose ``Accept`` names it, as Prometheus's does."""
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield start_server(self, self.root, **{"metrics.listen": f"tcp:{port}:interface=127.0.0.1"})
        prometheus = (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,"
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )  # what Prometheus 3 sends
        types = {}
        for name, headers in (("curl", []), ("prometheus", ["-H", f"Accept: {prometheus}"])):
            out, err, code = yield getProcessOutputAndValue(
                "curl", ["-s", "-o", "/dev/null", "-w", "%{content_type}", *headers,
                         f"http://127.0.0.1:{port}/metrics"], reactor=reactor,
            )  # fmt: skip
            self.assertEqual((code, err), (0, b""))
            types[name] = out.decode()
        self.assertTrue(types["curl"].startswith("text/plain; version=0.0.4"), types)
        self.assertTrue(types["prometheus"].startswith("application/openmetrics-text; "
                                                       "version=1.0.0"), types)  # fmt: skip
        section = " ".join(README.read_text().split("\n## Metrics\n")[1].split("\n## ")[0].split())
        self.assertIn("for a plain `curl`", section)
        self.assertIn("(`text/plain; version=0.0.4`)", section)
        self.assertIn("OpenMetrics (`application/openmetrics-text; version=1.0.0`)", section)

    def test_the_table_names_every_metric(self) -> None:
        registry = CollectorRegistry()
        StageMetrics(registry)
        RpcMetrics(registry, ["/daq/QueueDaq"])
        sample = StorageStatus("/w", 100, 50, 40, 0.0)
        registry.register(StateCollector(DaqTally(), Clock(), lambda: (sample, 5), list, "1"))
        text = README.read_text()
        table = text[text.index("\n## Metrics\n"):text.index("[`etc/grafana-dpmd.json`]")]
        documented = set(re.findall(r"`(dpmd_\w+)`", table))
        exposed = set()
        for family in registry.collect():
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
        self.assertEqual(sorted(exposed - documented), [])
        self.assertEqual(sorted(documented - exposed), [])
        for stage in STAGES:
            self.assertIn(f"`{stage}`", table)
