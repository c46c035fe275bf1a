"""The `anyecg` command line: one entry point, one module per subcommand in `anyecg_hf.commands`.

`COMMANDS` is the index: subcommand -> (module, one line for `anyecg --help`). Only the module of the subcommand
being run is imported (it defines `register(subparsers)`, which adds its options and sets `func`, a callable taking
the parsed args and returning an exit code), so `anyecg --help` and `--version` import neither torch nor
transformers. Adding a subcommand means adding a module and its line here.
Run as `anyecg ...`, `python -m anyecg_hf.cli ...` or `accelerate launch -m anyecg_hf.cli ...`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands.errors import EXIT_CODES_HELP, CLIError

__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]

COMMANDS = {
    "convert-ecgfounder": ("convert", "convert an original ECGFounder checkpoint to a Hugging Face model folder"),
    "profile": ("profile", "health profiles (diagnoses, risks) of ECG files or a whole archive"),
    "embed": ("embed", "ECG embeddings (pooled backbone features) of ECG files or a whole archive"),
    "plot": ("plot", "plot an ECG (3x4 + rhythm strip) with per-lead attributions for a condition"),
    "evaluate": ("evaluate", "evaluate a model on a dataset split (AUROC/AUPRC with CIs, C-index, calibration, "
                 "model-card section)"),
    "build-dataset": ("build_dataset", "build a fine-tuning dataset from a folder of ECG files and a label table"),
    "build-targets": ("build_targets", "build phecode diagnosis and risk targets from EHR extracts (diagnosis codes, "
                      "follow-up)"),
    "benchmark": ("benchmark", "reproduce a public benchmark table (PTB-XL: macro AUROC of six tasks beside the "
                  "published rows)"),
    "export-onnx": ("export_onnx", "export a model to ONNX (dynamic batch) and check it with ONNX Runtime"),
    "report": ("report", "HTML report per ECG (tracing, measurements, top conditions, quality, risk) + index page"),
    "app": ("app", "web app: upload an ECG (or pick a sample), see its report, download the rows (needs [app])"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser listing every subcommand; `command`'s module is imported and adds its options (the others are
    listed with their one-line help only)."""
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="anyecg",
        description="ECG foundation models (ECGFounder / AnyECG): profile, convert, evaluate, fine-tune data.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"anyecg_hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_line) in COMMANDS.items():
        if name == command:
            importlib.import_module(f"anyecg_hf.commands.{module}").register(_Listed(subparsers, help_line))
        else:
            subparsers.add_parser(name, help=help_line)
    return parser


class _Listed:
    """The subparsers action as a command module sees it: its parser gets the one-line help of `COMMANDS`."""

    def __init__(self, subparsers, help_line: str):
        self._subparsers, self._help = subparsers, help_line

    def add_parser(self, name, **kwargs):
        return self._subparsers.add_parser(name, help=self._help, **kwargs)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
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
    sys.exit(main())
