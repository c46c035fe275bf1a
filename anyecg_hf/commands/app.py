"""`anyecg app --model M`: the Gradio web app on 127.0.0.1 (the same code as the Space's `app.py`)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        description="Start the Gradio web app locally (127.0.0.1 unless --host says otherwise). It is the same app "
        "as the Hugging Face Space's app.py. Uploaded files are deleted once their report is shown. Needs the "
        "extra: pip install -e '.[app]' in the clone. Exit codes: 0 stopped, 2 usage error or gradio missing, 3 the model "
        "could not be loaded.",
    )
    p.add_argument("--model", "-m", default=None, metavar="M",
                   help="model folder, Hub id or ECGFounder .pth (default: $ANYECG_MODEL, else the public ECGFounder)")
    p.add_argument("--revision", default=None, metavar="REV", help="Hub revision of the model")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32", help="compute precision")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--samples", default=None, metavar="DIR", help="folder of sample ECGs offered in the app")
    p.set_defaults(func=run)


def run(args) -> int:
    from .errors import EXIT_MODEL, CLIError, check_model_argument

    check_model_argument(args.model, args.revision)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CLIError("the web app needs Gradio: pip install -e '.[app]' (in the anyecg_hf clone)") from None
    from ..reporting.app import build_app, launch

    try:
        demo = build_app(args.model, revision=args.revision, precision=args.precision, samples_dir=args.samples)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load the model: {err}", code=EXIT_MODEL) from None
    launch(demo, host=args.host, port=args.port)
    return 0
