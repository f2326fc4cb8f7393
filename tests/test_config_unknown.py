"""Unknown configuration keys: every one named at once, each with the nearest known key of
its own level, whether it came from the file or from the command line."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import ConfigError, build_config, read_config_file


class UnknownKeyTests(SynchronousTestCase):
    def refused(self, file_values: dict, overrides: dict | None = None) -> ConfigError:
        return self.assertRaises(ConfigError, build_config, file_values, overrides, environ={})

    def test_a_key_of_a_section_is_matched_within_the_section(self) -> None:
        error = self.refused({"limits.merg": 2})
        self.assertEqual(
            str(error),
            "unknown key in the configuration file: "
            "'limits.merg' is not allowed; did you mean 'limits.merge'?",
        )
        self.assertEqual(error.key, "limits.merg")

    def test_every_unknown_key_is_named_at_once(self) -> None:
        error = self.refused({"max_conections": 9, "limits.daq": 2, "watchdog.stal": 5,
                              "storage.reserv": "1%"})  # fmt: skip
        self.assertEqual(
            str(error),
            "unknown keys in the configuration file: "
            "'max_conections' is not allowed; did you mean 'max_connections'? "
            "'watchdog.stal' is not allowed; did you mean 'watchdog.stall'? "
            "'storage.reserv' is not allowed; did you mean 'storage.reserve'?",
        )
        self.assertEqual(error.key, "max_conections")

    def test_an_unknown_section_is_matched_against_the_top_level(self) -> None:
        self.assertIn("'limit' is not allowed; did you mean 'limits'?",
                      str(self.refused({"limit": {"daq": 2}})))  # fmt: skip
        self.assertIn("'limitz' is not allowed; did you mean 'limits'?",
                      str(self.refused({"limitz.daq": 2})))  # fmt: skip

    def test_a_key_like_none_lists_the_keys_of_its_level(self) -> None:
        self.assertEqual(
            str(self.refused({"limits.colour": 1})),
            "unknown key in the configuration file: 'limits.colour' is not allowed "
            "(allowed: limits.daq, limits.merge, limits.transfer)",
        )
        message = str(self.refused({"colour": 1}))
        self.assertIn("'colour' is not allowed (allowed: dataroot, create_dataroot, ", message)
        self.assertIn(" limits, ", message)
        self.assertNotIn("limits.daq", message)

    def test_the_command_line_layer_too(self) -> None:
        error = self.refused({"bogus": 1}, {"log_levl": "debug"})
        self.assertIn("unknown key in the configuration file: 'bogus' is not allowed", str(error))
        self.assertIn(
            "unknown key on the command line: 'log_levl' is not allowed; did you mean 'log_level'?",
            str(error),
        )
        self.assertNotIn("\n", str(error))

    def test_nested_yaml_keys_are_named_as_dotted_keys(self) -> None:
        path = Path(self.mktemp())
        path.write_text("limits:\n  merg: 2\n  daq: 1\ntransfer:\n  retrys: 3\n")
        error = self.refused(read_config_file(path))
        self.assertEqual(
            str(error),
            "unknown keys in the configuration file: "
            "'limits.merg' is not allowed; did you mean 'limits.merge'? "
            "'transfer.retrys' is not allowed; did you mean 'transfer.retries'?",
        )
