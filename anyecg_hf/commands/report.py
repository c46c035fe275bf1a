"""`anyecg report PATHS --out report/`: one self-contained HTML page per ECG and an index page."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_CODES = """\
exit codes:
  0  every input was reported; or some were unreadable (listed on the index page and on stderr) but at least one
     page was written
  1  no input could be read
  2  usage error (no ECG files found, bad option)
  3  the model could not be loaded (e.g. the default model is not cached and the machine is offline)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        description="Write OUT/index.html and one self-contained page per ECG: the 12-lead tracing, the cart's "
        "measurements when the file has them, the top conditions with probability, threshold and decision, the "
        "signal-quality flags per lead, risk curves for models with a risk head, and the model's id, revision and "
        "precision. Pages inline their images and styles and load nothing from the network. Research use only, "
        "not a medical device.",
        epilog=EXIT_CODES + "\nexample:\n  anyecg report examples/ecg --model ./my-model --out report/\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="ECG files and/or folders (walked recursively)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created; pages are replaced)")
    p.add_argument("--model", "-m", default=None, metavar="M",
                   help="model folder, Hub id or ECGFounder .pth (default: the public 12-lead ECGFounder)")
    p.add_argument("--revision", default=None, metavar="REV", help="Hub revision of the model")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                   help="compute precision (default fp32; see anyecg profile --help)")
    p.add_argument("--top-k", type=int, default=10, metavar="K", help="conditions listed per page (default 10)")
    p.add_argument("--input-format", default=None, metavar="FMT", help="read every input as this format")
    p.add_argument("--sampling-rate", type=float, default=None, metavar="HZ", help="rate of inputs that do not state it")
    p.set_defaults(func=run)


def run(args) -> int:
    from .errors import EXIT_MODEL, CLIError, check_model_argument

    if args.top_k < 1:
        raise CLIError("--top-k must be >= 1")
    missing = [p for p in args.paths if not os.path.exists(p) and not os.path.exists(p + ".hea")]
    if len(missing) == len(args.paths):
        raise CLIError(f"no such file or folder: {', '.join(missing[:5])}")
    check_model_argument(args.model, args.revision)
    from ..reporting.report import ECGReporter

    try:
        reporter = ECGReporter.from_pretrained(args.model, revision=args.revision, device=args.device,
                                               precision=args.precision, top_k=args.top_k)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load the model: {err}", code=EXIT_MODEL) from None
    read_kwargs = {k: v for k, v in (("format", args.input_format), ("sampling_rate", args.sampling_rate)) if v}
    result = reporter.write_folder(args.paths, args.out, read_kwargs=read_kwargs)
    for err in result["errors"]:
        print(f"anyecg report: skipped {err['file']}: {err['message']}", file=sys.stderr)
    if not result["pages"] and not result["errors"]:
        raise CLIError("no ECG files found")
    print(f"wrote {len(result['pages'])} report(s) and {result['index']}")
    return 0 if result["pages"] else 1
