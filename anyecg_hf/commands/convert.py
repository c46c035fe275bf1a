"""`anyecg convert-ecgfounder IN OUT_DIR`: an original ECGFounder `.pth` (file or Hub repo id) -> a
`save_pretrained` folder (config.json, model.safetensors, preprocessor_config.json)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-ecgfounder",
        description="Convert an original ECGFounder .pth checkpoint (a local file, a folder holding it, or a Hub repo "
        "id such as PKUDigitalHealth/ECGFounder) into a folder that AutoModel.from_pretrained and "
        "pipeline('ecg-profiling') load directly.",
    )
    p.add_argument("checkpoint", help="ECGFounder .pth file, folder, or Hub repo id")
    p.add_argument("out_dir", help="output folder (created)")
    p.add_argument("--leads", type=int, choices=(12, 1), default=None,
                   help="12- or 1-lead checkpoint (default: inferred; picks the file name for a repo id/folder)")
    p.add_argument("--filename", default=None, help="checkpoint file name inside a folder or Hub repo")
    p.add_argument("--labels", default=None, help="label table (CSV/JSON) replacing the 150 ECGFounder labels")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling if weights_only loading refuses the file (only for files you trust)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also push the converted model to this Hub repo")
    p.set_defaults(func=run)


def run(args) -> int:
    from .errors import CLIError
    from ..modeling import AnyECGForDiagnosis, LabelSpace

    try:
        label_space = LabelSpace.load(args.labels) if args.labels else None
        model = AnyECGForDiagnosis.from_ecgfounder(
            args.checkpoint,
            filename=args.filename,
            num_leads=args.leads,
            label_space=label_space,
            trust_checkpoint=args.trust_checkpoint,
        )
    except (ValueError, OSError) as err:
        raise CLIError(str(err)) from None
    model.save_pretrained(args.out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out_dir}: {model.config.in_channels}-lead ECGFounder, {model.config.num_labels} labels, "
          f"{n_params / 1e6:.1f} M parameters")
    if args.push_to_hub:
        model.push_to_hub(args.push_to_hub)
        print(f"pushed to {args.push_to_hub}")
    return 0
