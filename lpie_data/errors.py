"""Exceptions raised by the lpie libraries.

The libraries never print or exit; commands turn these into a message and a non-zero exit.
"""


class LpieError(Exception):
    """Base of every error lpie reports to a user; the message names the file or key at fault."""


class DataError(LpieError):
    """Bad input data: a missing, corrupt or inconsistent file."""


class ConfigError(LpieError):
    """A bad configuration or recipe: unknown key, wrong type, value out of range."""


class OutputError(LpieError):
    """An output location that cannot be used (exists with other arguments, not writable)."""
