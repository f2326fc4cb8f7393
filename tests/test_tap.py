"""``twistd dpmd`` options, and the log level they set."""

from __future__ import annotations

from pathlib import Path

from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from dpmd.logs import get_logger, set_log_level
from dpmd.tap import Options, load_config


class OptionsTests(SynchronousTestCase):
    def parse(self, *arguments: str) -> Options:
        options = Options()
        options.parseOptions(list(arguments))
        return options

    def test_listen_repeats(self) -> None:
        options = self.parse("--listen", "tcp:1", "--listen", "unix:/s")
        self.assertEqual(options.overrides(), {"listen": ["tcp:1", "unix:/s"]})

    def test_no_options_override_nothing(self) -> None:
        self.assertEqual(self.parse().overrides(), {})

    def test_command_line_beats_the_file(self) -> None:
        config_file = Path(self.mktemp())
        config_file.write_text(
            "dataroot: /d\nworkspace: from-file\nrelease_dir: out\nlog_level: error\n"
        )
        options = self.parse(
            "--config", str(config_file), "--workspace", "cli", "--log-level", "debug"
        )
        config = load_config(options)
        self.assertEqual(config.workspace, Path("/d/cli"))
        self.assertEqual(config.release_dir, Path("/d/out"))
        self.assertEqual(config.log_level, "debug")

    def test_unknown_option(self) -> None:
        self.assertRaises(usage.UsageError, self.parse, "--bogus")


class LogLevelTests(SynchronousTestCase):
    def test_level_filters_dpmd_events(self) -> None:
        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.addCleanup(set_log_level, "info")
        log = get_logger("dpmd.test")
        set_log_level("warn")
        log.info("hidden")
        log.warn("shown {n}", n=1)
        set_log_level("debug")
        log.debug("now shown")
        mine = [
            (e["log_level"], e["log_format"]) for e in seen if e["log_namespace"] == "dpmd.test"
        ]
        self.assertEqual(mine, [(LogLevel.warn, "shown {n}"), (LogLevel.debug, "now shown")])
