"""Errors meant for people: each message says what went wrong and how to fix it."""


class JaxddError(Exception):
    """Base class of every error jaxdd raises on bad input or missing data.

    The CLI prints the message of a `JaxddError` on one line and exits with
    its `exit_code` (2 unless a subclass says otherwise); anything else is a
    bug and keeps its traceback.
    """

    exit_code: int = 2


class ConfigError(JaxddError, ValueError):
    """An argument or configuration value is invalid (the message names the fix)."""


class DataUnavailableError(JaxddError):
    """A dataset exists but cannot be read here (offline, not prepared, missing files)."""


class RunInterruptedError(JaxddError):
    """A run stopped on a signal (SIGTERM, Ctrl-C) after saving its state.

    Running the same command again resumes it.

    Attributes:
      signum: the signal that stopped it.
      exit_code: ``128 + signum``, the shell's status of a process ended by
        that signal (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
