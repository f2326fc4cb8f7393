"""Configuration layers, validation and the shipped example file."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import KEYS, ConfigError, build_config, read_config_file

EXAMPLE = Path(__file__).parent.parent / "etc" / "dpmd.yaml"


class LayerTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = build_config(environ={}, cwd="/srv/data")
        self.assertEqual(config.dataroot, Path("/srv/data"))
        self.assertEqual(config.workspace, Path("/srv/data/dpm"))
        self.assertEqual(config.release_dir, Path("/srv/data/released"))
        self.assertEqual(config.listen, ("tcp:12083:interface=127.0.0.1",))
        self.assertEqual(
            (config.limits.daq, config.limits.merge, config.limits.transfer), (1, 1, 2)
        )
        self.assertEqual(config.max_line_bytes, 16 * 1024 * 1024)
        self.assertEqual((config.storage_interval, config.shutdown_timeout), (60.0, 30.0))
        self.assertEqual(config.log_level, "info")

    def test_dataroot_from_environment(self) -> None:
        config = build_config(environ={"DATAROOT": "/env/root"}, cwd="/cwd")
        self.assertEqual(config.workspace, Path("/env/root/dpm"))

    def test_file_beats_environment_and_command_line_beats_file(self) -> None:
        file_values = {"dataroot": "/file/root", "workspace": "ws", "limits.daq": 3}
        config = build_config(
            file_values, {"workspace": "/abs/ws"}, environ={"DATAROOT": "/env/root"}
        )
        self.assertEqual(config.dataroot, Path("/file/root"))
        self.assertEqual(config.workspace, Path("/abs/ws"))
        self.assertEqual(config.limits.daq, 3)

    def test_listen_from_command_line_replaces_the_list(self) -> None:
        config = build_config({"listen": ["tcp:1"]}, {"listen": ["unix:/a", "tcp:2"]}, environ={})
        self.assertEqual(config.listen, ("unix:/a:mode=600", "tcp:2"))  # see dpmd.access

    def test_log_level_names(self) -> None:
        self.assertEqual(build_config({"log_level": "WARNING"}, environ={}).log_level, "warn")


class BadValueTests(SynchronousTestCase):
    CASES = [
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"limits.bogus": 1}, "limits.bogus", "unknown key"),
        ({"workspace": 5}, "workspace", "must be a string, not an integer"),
        ({"workspace": ""}, "workspace", "must not be empty"),
        ({"workspace": None}, "workspace", "not null"),
        ({"dataroot": ["a"]}, "dataroot", "must be a string"),
        ({"release_dir": True}, "release_dir", "must be a string"),
        ({"listen": "tcp:1"}, "listen", "must be a list of strings"),
        ({"listen": []}, "listen", "at least one endpoint"),
        ({"listen": [1]}, "listen", "must be a string"),
        ({"log_level": "loud"}, "log_level", "must be one of"),
        ({"limits.daq": 0}, "limits.daq", "at least 1"),
        ({"limits.merge": -2}, "limits.merge", "at least 1"),
        ({"limits.transfer": 1.5}, "limits.transfer", "must be an integer"),
        ({"limits.daq": True}, "limits.daq", "not a boolean"),
        ({"max_line_bytes": 100}, "max_line_bytes", "at least 1024"),
        ({"max_line_bytes": "big"}, "max_line_bytes", "must be an integer"),
        ({"storage_interval": 0}, "storage_interval", "positive"),
        ({"storage_interval": float("nan")}, "storage_interval", "positive"),
        ({"shutdown_timeout": "30s"}, "shutdown_timeout", "number of seconds"),
        ({"shutdown_timeout": -1}, "shutdown_timeout", "positive"),
        ({"transfer.rsync": ""}, "transfer.rsync", "must not be empty"),
        ({"transfer.rsync_options": [1]}, "transfer.rsync_options", "must be a string"),
        ({"transfer.ssh": None}, "transfer.ssh", "not null"),
        ({"transfer.ssh_options": "-v"}, "transfer.ssh_options", "list of strings"),
        ({"transfer.timeout": 0}, "transfer.timeout", "positive"),
        ({"transfer.retries": -1}, "transfer.retries", "at least 0"),
        ({"transfer.retry_delay": "5"}, "transfer.retry_delay", "number of seconds"),
    ]

    def test_each_bad_value_names_its_key(self) -> None:
        for values, key, problem in self.CASES:
            with self.subTest(values=values):
                error = self.assertRaises(ConfigError, build_config, values, environ={})
                self.assertEqual(error.key, key)
                self.assertIn(problem, str(error))
                self.assertIn(f"'{key}'", str(error))
                self.assertNotIn("\n", str(error))

    def test_bad_command_line_value(self) -> None:
        error = self.assertRaises(ConfigError, build_config, {}, {"log_level": "x"}, environ={})
        self.assertEqual(error.key, "log_level")


class FileTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        Path(path).write_text(text)
        return path

    def test_nested_sections_become_dotted_keys(self) -> None:
        values = read_config_file(self.write("limits:\n  daq: 2\nworkspace: w\n"))
        self.assertEqual(values, {"limits.daq": 2, "workspace": "w"})

    def test_section_must_be_a_mapping(self) -> None:
        error = self.assertRaises(ConfigError, read_config_file, self.write("limits: 3\n"))
        self.assertEqual(error.key, "limits")

    def test_empty_file_is_all_defaults(self) -> None:
        self.assertEqual(read_config_file(self.write("")), {})

    def test_not_yaml(self) -> None:
        error = self.assertRaises(ConfigError, read_config_file, self.write("a: [1,\n"))
        self.assertIn("not valid YAML", str(error))

    def test_not_a_mapping(self) -> None:
        error = self.assertRaises(ConfigError, read_config_file, self.write("- 1\n"))
        self.assertIn("mapping", str(error))

    def test_missing_file(self) -> None:
        error = self.assertRaises(ConfigError, read_config_file, "/no/such/dpmd.yaml")
        self.assertIn("/no/such/dpmd.yaml", str(error))

    def test_example_file_documents_every_key_with_its_default(self) -> None:
        text = EXAMPLE.read_text()
        for key in KEYS:
            self.assertIn(key.name.split(".")[-1] + ":", text, f"{key.name} is not documented")
        shipped = build_config(read_config_file(EXAMPLE), environ={}, cwd="/r")
        self.assertEqual(shipped, build_config(environ={}, cwd="/r"))
