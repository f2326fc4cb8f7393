"""The one error of loading a configuration: it names the key and the problem."""

from __future__ import annotations


class ConfigError(Exception):
    """An unusable configuration value; the text names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        return f"configuration key '{self.key}': {self.problem}"
