"""Failures of a merge, each carrying the exit code the program reports.

The exit code tells the caller (an operator or the server) what to fix: the
command line, the specification, a source file, or the output location.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SPECIFICATION = 3
EXIT_SOURCE = 4
EXIT_OUTPUT = 5


class MergeError(Exception):
    """Any failure that ends a merge; the message is meant for a human."""

    exit_code = EXIT_FAILURE


class UsageError(MergeError):
    """Bad command line: options, the specification path, the --resolve file."""

    exit_code = EXIT_USAGE


class SpecError(MergeError):
    """The specification is invalid, or its rules cannot be applied to a source."""

    exit_code = EXIT_SPECIFICATION


class SourceError(MergeError):
    """A source is missing, unreadable, not FITS, or needs --resolve."""

    exit_code = EXIT_SOURCE


class OutputError(MergeError):
    """The product cannot be written: no space, no permission, no directory."""

    exit_code = EXIT_OUTPUT
