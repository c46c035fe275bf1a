"""The error type and exit codes of the `anyecg` subcommands (its own module, so that `cli.py` and `commands/*` do not
import each other)."""

import os

# Exit codes, the same in every subcommand (listed in `anyecg --help`).
EXIT_OK, EXIT_NO_INPUT, EXIT_USAGE, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES_HELP = """\
exit codes (every subcommand):
  0    done (profile/embed: some inputs may have been unreadable; they are listed)
  1    no input could be read
  2    usage error (bad option or argument, missing file, unknown --condition, ...)
  3    the model could not be loaded (missing folder, not cached while offline, not a model, ...)
  130  interrupted (Ctrl-C)
"""


class CLIError(Exception):
    """An error whose message is shown to the user as is (no traceback), with exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def check_model_argument(model, revision=None) -> None:
    """Before any heavy import or work: a `--model` that cannot be loaded fails now, with exit code 3 and a message
    naming it (a local-looking path is never sent to the Hub; an uncached Hub id or default model fails at once while
    offline). Local `.pth` checkpoints are converted later by `resolve_model`."""
    from ..prediction.default_model import (
        DefaultModelUnavailableError,
        ModelNotFoundError,
        check_default_model,
        check_model_source,
        is_default_model,
    )

    if is_default_model(model):
        try:
            check_default_model(revision)
        except DefaultModelUnavailableError as err:
            raise CLIError(str(err), code=EXIT_MODEL) from None
        return
    if not isinstance(model, str):
        return
    if model.lower().endswith((".pth", ".pt")) and os.path.isfile(os.path.expanduser(model)):
        return
    try:
        check_model_source(model, revision=revision)
    except ModelNotFoundError as err:
        raise CLIError(f"cannot load the model: {err}", code=EXIT_MODEL) from None
