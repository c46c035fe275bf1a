"""`anyecg plot FILE --out ecg.png`: the 12-lead ECG on ECG paper, with the model's per-lead attributions for one
condition, and optionally the risk curves."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        description="Plot one ECG file on ECG paper (25 mm/s, 10 mm/mV; standard 3x4 layout with a lead II rhythm "
        "strip). With a model (default: the converted public ECGFounder), the title lists the top diagnoses and an "
        "overlay shows which parts of which leads drive the score of --condition (integrated gradients; red raises, "
        "blue lowers the score). --risk-curves also writes the cumulative incidence curves of a model with a risk "
        "head. Exit codes: 0 written, 1 unreadable input, 2 usage error (e.g. a --condition the model does not "
        "have), 3 the model could not be loaded.",
    )
    p.add_argument("file", help="ECG file (any format anyecg reads: WFDB .hea, MUSE/Philips/HL7 XML, DICOM, SCP, EDF, CSV, ...)")
    p.add_argument("--out", "-o", required=True, help="output image (.png, .svg or .pdf)")
    p.add_argument("--model", "-m", default=None,
                   help="model folder or Hub id (default: PKUDigitalHealth/ECGFounder, converted and cached on first use)")
    p.add_argument("--revision", default=None, help="Hub revision of the model")
    p.add_argument("--condition", "-c", default=None,
                   help="condition to attribute: id, name (case-insensitive) or code (default: the top-scoring one)")
    p.add_argument("--method", choices=("ig", "ixg", "none"), default="ig",
                   help="attribution: integrated gradients (default), input x gradient, or none (no overlay)")
    p.add_argument("--steps", type=int, default=32, help="integration steps of integrated gradients (default 32)")
    p.add_argument("--no-model", action="store_true", help="plot the ECG only: no model, no predictions, no overlay")
    p.add_argument("--risk-curves", action="store_true",
                   help="also write the risk curves to <out stem>_risk<ext> (models with a risk head)")
    p.add_argument("--top-k", type=int, default=5, help="diagnoses listed in the title and risk curves drawn (default 5)")
    p.add_argument("--start", type=float, default=0.0, help="first second shown (10 s are shown)")
    p.add_argument("--layout", choices=("auto", "3x4", "stack"), default="auto", help="lead layout (default auto)")
    p.add_argument("--no-filter", action="store_true", help="draw the raw signal (no 0.5 Hz display high-pass)")
    p.add_argument("--dpi", type=int, default=150, help="resolution (default 150)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cpu)")
    p.add_argument("--input-format", dest="input_format", default=None,
                   help="force the input format (default: detected); as in profile/embed/report")
    p.add_argument("--format", dest="input_format_deprecated", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def risk_path(out: str) -> str:
    stem, ext = os.path.splitext(out)
    return f"{stem}_risk{ext or '.png'}"


def _check_condition(source, condition) -> None:
    """`--condition` must name a condition of the model (id, name or code): checked on its config.json, before the
    weights are loaded and the model runs."""
    from ..attribution import resolve_condition
    from ..modeling import AnyECGConfig

    config = AnyECGConfig.from_pretrained(source)
    outputs = ["risk"] if list(config.architectures or []) == ["AnyECGForRiskPrediction"] else ["diagnosis", "risk"]
    errors = []
    for output in outputs:
        try:
            resolve_condition(config, condition, output)
            return
        except ValueError as err:
            errors.append(str(err))
    raise ValueError(errors[0])


def run(args) -> int:
    from .errors import EXIT_MODEL, CLIError, check_model_argument

    if getattr(args, "input_format_deprecated", None):
        print("anyecg plot: --format is deprecated for the input format; use --input-format", file=sys.stderr)
        args.input_format = args.input_format or args.input_format_deprecated
    if not args.no_model:
        check_model_argument(args.model, args.revision)
    from ..io import ECGReadError, read_ecg
    from ..plotting import plot_ecg
    from ..risk_plots import NoRiskCurvesError, plot_risk_curves, risk_curves

    try:
        record = read_ecg(args.file, format=args.input_format)
    except (ECGReadError, OSError, ImportError) as err:
        print(f"anyecg plot: cannot read {args.file}: {err}", file=sys.stderr)
        return 1
    if args.no_model:
        plot_ecg(record, layout=args.layout, start=args.start, filtered=not args.no_filter, dpi=args.dpi, out=args.out)
        print(f"wrote {args.out}")
        return 0

    from ..attribution import explain_record
    from ..pipelines.profiling import ECGProfilingPipeline
    from ..prediction import load_model_and_extractor, resolve_model

    try:
        source = resolve_model(args.model, revision=args.revision)
    except (OSError, ValueError) as err:
        raise CLIError(str(err), code=EXIT_MODEL) from None
    if args.condition is not None and args.method != "none":
        try:
            _check_condition(source, args.condition)
        except ValueError as err:
            raise CLIError(f"--condition: {err}") from None
        except OSError as err:
            raise CLIError(str(err), code=EXIT_MODEL) from None
    try:
        model, extractor = load_model_and_extractor(source, device=args.device or "cpu", revision=args.revision)
        pipe = ECGProfilingPipeline(model=model, feature_extractor=extractor, device=model.device)
    except (OSError, ValueError) as err:
        raise CLIError(str(err), code=EXIT_MODEL) from None
    profile = pipe(record, top_k=args.top_k, windowing="first")
    lines = []
    if profile["diagnoses"]:
        lines.append("; ".join(f"{d['label']} {100 * d['score']:.0f}%{' (+)' if d['positive'] else ''}" for d in profile["diagnoses"])
                     + "   [(+) = at or above the condition's decision threshold]")
    if profile["risks"]:
        lines.append("risk: " + "; ".join(
            f"{r['label']} {_fmt_risk(r)}" for r in profile["risks"][: args.top_k]))
    attributions = None
    if args.method != "none":
        output = "diagnosis" if profile["diagnoses"] or getattr(model, "classifier", None) is not None else "risk"
        try:
            attributions = explain_record(model, extractor, record, args.condition, steps=args.steps, output=output,
                                          method="integrated_gradients" if args.method == "ig" else "input_x_gradient")
        except ValueError as err:
            raise CLIError(str(err)) from None
    title = f"{record.record_id}  |  model: {_model_name(model, args.model)}"
    subtitle = f"{record.num_leads} leads, {record.sampling_rate:g} Hz, {record.duration:.1f} s   " + "   ".join(lines)
    plot_ecg(record, attributions=attributions, title=title, subtitle=subtitle, layout=args.layout,
             start=args.start, filtered=not args.no_filter, dpi=args.dpi, out=args.out)
    print(f"wrote {args.out}")
    if attributions is not None:
        share = sorted(zip(attributions["lead_names"], attributions["lead_importance"]), key=lambda t: -t[1])[:3]
        print(f"attribution ({attributions['method'].replace('_', ' ')}) for {attributions['label']} "
              f"(score {attributions['score']:.3f}); top leads: " + ", ".join(f"{n} {100 * s:.0f}%" for n, s in share))
    for w in profile["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.risk_curves:
        try:
            curves = risk_curves(model, extractor, record)
            curves["record"] = record.record_id
            path = risk_path(args.out)
            plot_risk_curves(curves, top_k=args.top_k, dpi=args.dpi, out=path)
            print(f"wrote {path}")
        except NoRiskCurvesError as err:
            print(f"anyecg plot: no risk curves: {err}", file=sys.stderr)
    return 0


def _fmt_risk(r: dict) -> str:
    vals = [(h, v) for h, v in r["horizons"].items() if v is not None]
    if vals:
        h, v = vals[-1]
        return f"{100 * v:.1f}% at {h} y"
    return f"score {r['risk_score']:.2f}" if r.get("risk_score") is not None else "n/a"


def _model_name(model, arg) -> str:
    if arg:
        return os.path.basename(os.path.normpath(str(arg))) if os.path.exists(str(arg)) else str(arg)
    return "ECGFounder (12-lead, default)"
