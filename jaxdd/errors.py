"""Errors meant for people: each message says what went wrong and how to fix it."""


class JaxddError(Exception):
    """Base class of every error jaxdd raises on bad input or missing data.

    The CLI prints the message of a `JaxddError` on one line and exits with
    status 2; anything else is a bug and keeps its traceback.
    """


class ConfigError(JaxddError, ValueError):
    """An argument or configuration value is invalid (the message names the fix)."""


class DataUnavailableError(JaxddError):
    """A dataset exists but cannot be read here (offline, not prepared, missing files)."""
