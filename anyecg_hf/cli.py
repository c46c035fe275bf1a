"""The `anyecg` command line: one entry point, one module per subcommand in `anyecg_hf.commands`.

Each module in `COMMANDS` defines `register(subparsers)` that adds its subparser and sets `func` (a callable taking
the parsed args and returning an exit code). Adding a subcommand means adding a module and its name here.
Run as `anyecg ...`, `python -m anyecg_hf.cli ...` or `accelerate launch -m anyecg_hf.cli ...`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "convert",  # convert-ecgfounder
    "profile",  # profile (+ archive-scale options)
    "embed",
    "plot",
    "evaluate",
    "build_dataset",
    "build_targets",
    "export_onnx",
    "report",  # report (HTML per ECG, issue 22)
    "app",  # web app (Gradio, extra [app])
)


class CLIError(Exception):
    """An error whose message is shown to the user as is (no traceback), with exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="anyecg",
        description="ECG foundation models (ECGFounder / AnyECG): profile, convert, evaluate, fine-tune data.",
    )
    parser.add_argument("--version", action="version", version=f"anyecg_hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"anyecg_hf.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"anyecg_hf.commands.{name}":
                continue  # subcommand not shipped in this build
            raise
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.raw_argv = argv  # for commands that relaunch themselves (profile/embed --processes)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"anyecg {args.command}: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Re-import under the package name so that `CLIError` raised by subcommands is this module's class.
    from anyecg_hf.cli import main as _main

    sys.exit(_main())
