"""The project's input errors. A leaf module: it imports nothing from the project, so every
layer may raise these.

`run.py` turns an `InputError` (and so a `ConfigError`) into one line `error: ...` and exit
status 2; any other exception keeps its traceback, because it is a bug, not bad input.
Both subclass ValueError, so library callers that catch ValueError keep working.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user (a flag, a file, a data set, a checkpoint), found before or while
    reading it; the message names the value and what was expected."""


class ConfigError(InputError):
    """A config field holds a value outside its contract.

    `ConfigError(field, value, expected)` reads "config.<field> must be <expected>, got <value!r>";
    `field` is the dotted path below `config` (e.g. "sampling.steps").
    """

    def __init__(self, field: str, value, expected: str):
        self.field, self.value, self.expected = field, value, expected
        super().__init__(f"config.{field} must be {expected}, got {value!r}")
