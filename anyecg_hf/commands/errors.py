"""The error type of the `anyecg` subcommands (its own module, so that `cli.py` and `commands/*` do not import
each other)."""


class CLIError(Exception):
    """An error whose message is shown to the user as is (no traceback), with exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
