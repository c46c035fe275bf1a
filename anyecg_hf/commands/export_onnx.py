"""`anyecg export-onnx MODEL OUT.onnx`: a saved AnyECG model (folder or Hub id, or an original ECGFounder `.pth`)
-> one ONNX file with a dynamic batch (and length), checked against PyTorch with ONNX Runtime."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-onnx",
        description="Export an AnyECG model to a single ONNX file. MODEL is a save_pretrained folder or Hub repo id "
        "(loaded with AutoModel, which returns the head named in config.architectures), or an original ECGFounder "
        ".pth file. The file's input is input_values (batch, leads, samples) with a dynamic batch and, unless "
        "--fixed-length, a dynamic length; its outputs are the model's output tensors (e.g. logits, pooler_output). "
        "Run it with anyecg_hf.runtime.OnnxECGModel or any ONNX Runtime.",
    )
    p.add_argument("model", help="model folder, Hub repo id, or ECGFounder .pth file")
    p.add_argument("output", help="ONNX file to write (e.g. model.onnx)")
    p.add_argument("--fixed-length", action="store_true", help="fix the number of samples to --num-samples")
    p.add_argument("--num-samples", type=int, default=None,
                   help="samples of the tracing example (default: config.num_samples, 5000)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--atol", type=float, default=1e-4, help="max-abs tolerance of that check (default 1e-4)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--trust-remote-code", action="store_true", help="passed to AutoModel.from_pretrained")
    p.set_defaults(func=run)


def load_model(name: str, revision: str | None = None, trust_remote_code: bool = False):
    """A model folder / Hub id through `AutoModel`, or an ECGFounder `.pth` through `from_ecgfounder`."""
    import anyecg_hf  # noqa: F401  registers AnyECG with the Auto classes

    if name.endswith((".pth", ".pt")):
        from ..modeling import AnyECGForDiagnosis

        return AnyECGForDiagnosis.from_ecgfounder(name)
    from ..modeling.loading import load_checked

    return load_checked(name, revision=revision, trust_remote_code=trust_remote_code)  # refuses missing/NaN weights


def run(args) -> int:
    import time

    from .errors import EXIT_MODEL, CLIError, check_model_argument

    if args.num_samples is not None and args.num_samples < 1:
        raise CLIError(f"--num-samples must be positive, got {args.num_samples}")
    check_model_argument(args.model, args.revision)
    from ..export import ONNXExportError, export_onnx

    try:
        model = load_model(args.model, revision=args.revision, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load {args.model}: {err}", code=EXIT_MODEL) from None
    start = time.perf_counter()
    try:
        path = export_onnx(
            model.float().cpu(), args.output, dynamic_length=not args.fixed_length, num_samples=args.num_samples,
            opset_version=args.opset, verify=not args.no_verify, atol=args.atol,
        )
    except ONNXExportError as err:
        raise CLIError(str(err)) from None
    size = path.stat().st_size / 2**20
    check = "not checked" if args.no_verify else f"ONNX Runtime matches PyTorch within {args.atol:g}"
    print(f"wrote {path} ({type(model).__name__}, {size:.1f} MiB, dynamic batch"
          f"{'' if args.fixed_length else ' and length'}) in {time.perf_counter() - start:.0f} s; {check}")
    return 0
