"""`anyecg evaluate --model M --dataset D --split test --out report/`: run a model over a dataset split and write the
evaluation tables, plots and a model-card section (`anyecg_hf.evaluation`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..runtime.precision import add_precision_argument, precision_from_args, precision_label, resolve_precision

# --windowing (profile's vocabulary) -> the collator's window; --window all/start/center is the deprecated spelling
_WINDOWING = {"sliding": "all", "first": "start", "center": "center"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        description="Run a model (folder or Hub id) over one split of a dataset written by `anyecg build-dataset` and "
        "write per-condition tables with bootstrap confidence intervals, plots, a summary and a model-card section. "
        "The dataset's conditions are matched to the model's outputs by id, code or name (and, with --label-map, "
        "through a crosswalk); only matched conditions are evaluated, the unmatched ones are printed and listed in "
        "the report (label_matching.csv).",
    )
    p.add_argument("--model", required=True, help="model folder or Hub id (any AnyECG head)")
    p.add_argument("--dataset", required=True, help="dataset folder (Arrow or Parquet) or Hub dataset id")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", required=True, help="report folder (created)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples of the CIs (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--windowing", choices=tuple(_WINDOWING), default=None,
                   help="windows per record, as in profile/embed: sliding (default: every window, scores averaged), "
                   "first, center")
    p.add_argument("--window", choices=tuple(_WINDOWING.values()), default=None,
                   help=argparse.SUPPRESS)  # deprecated spelling of --windowing (all/start/center)
    p.add_argument("--num-proc", type=int, default=None, help="processes for preprocessing")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_precision_argument(p)
    p.add_argument("--threshold-split", default="validation",
                   help="split on which each condition's operating threshold (Youden's J) is chosen (default: "
                   "validation); without it the thresholds are chosen on the evaluated split and marked optimistic")
    p.add_argument("--subgroups", default="sex,age_band",
                   help="comma-separated subgroup columns (sex, age_band, site, ...; 'none' to skip)")
    p.add_argument("--label-map", default=None, metavar="snomed|ptbxl|MAP.csv",
                   help="match the dataset's conditions to the model's labels through a crosswalk as well: 'snomed' "
                   "(ECGFounder labels -> CinC SNOMED-CT codes), 'ptbxl' (-> PTB-XL statements and classes) or a CSV "
                   "with label, code[, tier] columns; see docs/evaluation.md")
    p.add_argument("--label-aggregate", choices=("max", "mean"), default="max",
                   help="with --label-map: several model labels for one dataset condition are combined by their max "
                   "(default: the condition is present if any label implying it is) or mean probability")
    p.set_defaults(func=run)


def _load_model(name):
    import anyecg_hf  # noqa: F401 - registers the AnyECG classes with AutoModel
    from ..modeling.loading import load_checked
    from ..prediction import resolve_model

    model = load_checked(resolve_model(name))  # missing / non-finite weights refused in one line (ValueError)
    if not (hasattr(model, "classifier") or getattr(model, "risk_head", None) is not None):
        raise ValueError(f"{name} is a bare backbone ({type(model).__name__}) with no diagnosis or risk head to evaluate; "
                         "its config.architectures must name a head class.")
    return model


def _feature_extractor(name, model):
    from ..processing import AnyECGFeatureExtractor

    try:
        return AnyECGFeatureExtractor.from_pretrained(getattr(model, "name_or_path", None) or name)
    except (OSError, ValueError):
        return AnyECGFeatureExtractor.from_model_config(model.config)


def _subgroups(ds, names):
    import numpy as np

    out = {}
    for name in names:
        if name == "age_band" and "age" in ds.column_names:
            from ..evaluation import age_bands

            ages = np.array([np.nan if a is None else a for a in ds["age"]], dtype=float)
            out["age_band"] = age_bands(ages)
        elif name in ds.column_names and name != "age_band":
            values = list(ds[name])
            if any(v not in (None, "") for v in values):
                out[name] = [None if v in ("", None) else v for v in values]
    return out or None


def _threshold_split(args):
    """The split thresholds are chosen on, or `None` (absent, or the evaluated split itself)."""
    from ..data import load_ecg_dataset

    if not args.threshold_split or args.threshold_split == args.split:
        return None
    try:
        val = load_ecg_dataset(args.dataset, split=args.threshold_split)
    except (OSError, ValueError, KeyError):
        return None
    return None if hasattr(val, "keys") or len(val) == 0 else val


def _window(args) -> str:
    if args.window is not None:
        print("anyecg evaluate: --window is deprecated; use --windowing sliding|first|center", file=sys.stderr)
        return args.window
    return _WINDOWING[args.windowing or "sliding"]


def run(args) -> int:
    from .errors import EXIT_MODEL, CLIError, check_model_argument

    check_model_argument(args.model)  # before torch is imported: a missing folder fails at once
    window = _window(args)
    import torch
    from torch.utils.data import DataLoader

    from ..data import (
        ECGDataCollator,
        dataset_metadata,
        get_label_space,
        get_risk_label_space,
        is_prepared,
        load_ecg_dataset,
        prepare_dataset,
    )
    from ..evaluation.label_matching import match_label_spaces
    from ..evaluation.predictions import collect_predictions, evaluate_predictions

    try:
        model = _load_model(args.model)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load model {args.model}: {err}", code=EXIT_MODEL) from None
    try:
        ds = load_ecg_dataset(args.dataset, split=args.split)
    except (OSError, ValueError, FileNotFoundError) as err:
        raise CLIError(f"cannot load split {args.split!r} of {args.dataset}: {err}") from None
    if hasattr(ds, "keys"):
        raise CLIError(f"{args.dataset} has splits {list(ds)}; choose one with --split.")
    meta = dataset_metadata(ds)
    fe = _feature_extractor(args.model, model)
    config = model.config
    from ..ehr.dataset import condition_index

    def prepared(split_ds):
        if not is_prepared(split_ds):
            return prepare_dataset(split_ds, fe, num_proc=args.num_proc)
        done = (dataset_metadata(split_ds).get("prepared") or {}).get("feature_extractor", {})
        for key in ("sampling_rate", "num_samples", "lead_names"):
            if key in done and done[key] != getattr(fe, key):
                raise CLIError(f"{args.dataset} was preprocessed for {key}={done[key]!r} but the model expects "
                               f"{getattr(fe, key)!r}; evaluate on the raw dataset instead.")
        return split_ds

    def loader(split_ds):
        collator = ECGDataCollator(num_samples=config.num_samples, num_leads=config.in_channels,
                                   sampling_rate=config.sampling_rate, window=window, train=False,
                                   ehr_index=condition_index(split_ds))
        return DataLoader(split_ds.with_format("numpy"), batch_size=args.batch_size, shuffle=False, collate_fn=collator)

    ds = prepared(ds)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        compute = resolve_precision(precision_from_args(args), device)
    except ValueError as err:
        raise CLIError(f"--precision: {err}") from None
    model.to(device)
    dl = loader(ds)
    data_space = get_label_space(ds)
    match = None
    if hasattr(model, "classifier") and data_space is not None:
        match = (_crosswalk(args, config.label_space, data_space) if args.label_map
                 else match_label_spaces(config.label_space, data_space))
        print(match.summary())
    # a loss only means something when the label columns are the model's outputs, in order
    preds = collect_predictions(model, dl, progress=True, compute_loss=match is None or match.is_identity,
                                precision=compute)
    val_preds = None
    if match is not None and match.pairs:
        val = _threshold_split(args)
        if val is not None:
            val_preds = collect_predictions(model, loader(prepared(val)), progress=True, compute_loss=False,
                                            precision=compute)
            print(f"thresholds: Youden's J on the {args.threshold_split} split ({len(val)} records)")
        else:
            print(f"thresholds: chosen on the {args.split} split itself (optimistic: {args.dataset} has no "
                  f"{args.threshold_split!r} split)")
    patients = list(ds["patient_id"]) if "patient_id" in ds.column_names else None
    names = [] if args.subgroups in (None, "", "none") else [s.strip() for s in args.subgroups.split(",")]
    # through a crosswalk, each matched dataset condition gets the max (or mean) of its model labels' probabilities
    derive = getattr(match, "derive", lambda p: p)
    try:
        result = evaluate_predictions(derive(preds), config, data_space, get_risk_label_space(ds),
                                      meta.get("regression_names"), patient_ids=patients, n_bootstrap=args.n_bootstrap,
                                      seed=args.seed, subgroups=_subgroups(ds, names), label_match=match,
                                      validation_preds=derive(val_preds))
    except ValueError as err:
        raise CLIError(f"evaluation failed: {err}") from None
    if hasattr(match, "derive") and result.diagnosis_report is not None:
        _crosswalk_results(result, derive(preds), match)
    if result.diagnosis_report is None and result.risk_report is None and result.regression_table is None:
        unmatched = (f" None of its {len(data_space)} label columns matches one of the model's "
                     f"{len(config.label_space)} conditions by id, code or name." if match is not None and not match.pairs
                     else "")
        raise CLIError(f"{args.dataset} [{args.split}] has no targets this model predicts (diagnosis labels for its "
                       f"classifier, time_/event_ columns for its risk head).{unmatched}")
    out = Path(args.out)
    written = write_evaluation(out, result, model_name=args.model, dataset=f"{args.dataset} [{args.split}]",
                               precision=precision_label(compute))
    written += _phecode_summary(out, result, preds, config)
    _write_predictions(out, ds, preds, config)
    print(f"wrote {out}: {', '.join(sorted(written))}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    return 0


def write_evaluation(out: Path, result, model_name: str, dataset: str, precision: str = "fp32") -> list[str]:
    """Tables, figures, summary and model-card section of an `EvaluationResult` (`anyecg_hf.evaluation.write_report`),
    plus `metrics.json` and, for a regression head, `regression.csv`; `precision` (the model's compute precision)
    goes into `metrics.json` and the model-card section."""
    from ..evaluation import write_report

    out.mkdir(parents=True, exist_ok=True)
    if result.diagnosis_report is not None or result.risk_report is not None:
        write_report(out, diagnosis_report=result.diagnosis_report, risk_report=result.risk_report,
                     dataset_name=dataset)
    if result.regression_table is not None and len(result.regression_table):
        result.regression_table.to_csv(out / "regression.csv", index=False)
    summary = {"model": model_name, "dataset": dataset, "precision": precision, **result.metrics}
    match = result.label_match
    if match is not None:
        match.to_frame().to_csv(out / "label_matching.csv", index=False)
        summary["label_matching"] = match.to_dict()
        index = out / "report.md"
        if index.exists():
            text = index.read_text(encoding="utf-8")
            index.write_text(text.replace("# Evaluation report\n", "# Evaluation report\n\n## Label matching\n\n"
                                          + match.summary().replace("\n", "\n\n")
                                          + "\n\nEvery pair: [label_matching.csv](label_matching.csv).\n", 1),
                             encoding="utf-8")
        section = out / "model_card_section.md"
        if section.exists() and (match.unmatched_dataset or match.unmatched_model or hasattr(match, "model_card_line")):
            line = match.model_card_line() + " " if hasattr(match, "model_card_line") else ""
            with section.open("a", encoding="utf-8") as f:
                f.write("\n\n**Label matching.** " + line + match.summary().replace("\n", " ") + "\n")
    section = out / "model_card_section.md"
    if section.exists():
        with section.open("a", encoding="utf-8") as f:
            f.write(f"\n\n**Precision.** Predictions computed in {precision} "
                    f"({'float32, the default' if precision == 'fp32' else 'autocast, opt-in'}).\n")
    (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    return sorted(p.name for p in out.iterdir())


def _crosswalk(args, model_space, data_space):
    """`--label-map`: a `CrosswalkMatch` (anyecg_hf.evaluation.crosswalk_match); a bad map is a CLI error."""
    from ..evaluation.crosswalk_match import crosswalk_match
    from .errors import CLIError

    try:
        return crosswalk_match(model_space, data_space, args.label_map, args.label_aggregate)
    except (ValueError, KeyError, OSError) as err:
        raise CLIError(f"--label-map {args.label_map}: {err}") from None


def _crosswalk_results(result, preds: dict, match) -> None:
    """One table row per dataset condition (tier, unmatched ones as undefined) and, on SNOMED-coded data with CinC
    2021 scored classes, the Challenge score at the report's thresholds (0.5 where none was chosen)."""
    import numpy as np

    from ..evaluation.challenge import challenge_score_of_columns
    from ..evaluation.crosswalk_match import complete_table

    table = result.diagnosis_report.table
    cols = match.data_index
    conds = [match.data_space[j] for j in cols]
    if "labels" in preds and all(c.code_system == "SNOMED-CT" for c in conds):
        thresholds = np.nan_to_num(table["threshold"].to_numpy(dtype=float), nan=0.5)
        score = challenge_score_of_columns(preds["labels"][:, cols], preds["diagnosis_probs"], [c.code for c in conds],
                                           thresholds)
        if score is not None:
            result.metrics["cinc2021_challenge_score"] = float(score)
    complete_table(result.diagnosis_report, match)


def _write_predictions(out: Path, ds, preds: dict, config) -> None:
    import pandas as pd

    frame = pd.DataFrame({"record_id": list(ds["record_id"])})
    if "diagnosis_probs" in preds:
        for j, c in enumerate(config.label_space):
            frame[f"prob_{c.id}"] = preds["diagnosis_probs"][:, j]
    if "risk_scores" in preds and getattr(config, "risk_label_space", None) is not None:
        for j, c in enumerate(config.risk_label_space):
            frame[f"risk_{c.id}"] = preds["risk_scores"][:, j]
    frame.to_parquet(out / "predictions.parquet", index=False)


def _phecode_summary(out: Path, result, preds: dict, config) -> list[str]:
    """Over a phecode label space (`anyecg build-targets`): `phecodes/` (counts above AUROC cut-offs, categories,
    forest plots, top/bottom, comorbidity; `anyecg_hf.evaluation.phecode_summary`)."""
    from ..evaluation.phecode_summary import is_phecode_space, write_phecode_summary

    diag_space = config.label_space if result.diagnosis_report is not None else None
    risk_space = getattr(config, "risk_label_space", None) if result.risk_report is not None else None
    if not (is_phecode_space(diag_space) or is_phecode_space(risk_space)):
        return []
    labels = preds.get("labels")
    write_phecode_summary(out, result.diagnosis_report if is_phecode_space(diag_space) else None,
                          result.risk_report if is_phecode_space(risk_space) else None, label_space=diag_space,
                          risk_label_space=risk_space, probs=preds.get("diagnosis_probs") if labels is not None else None,
                          labels=labels, label_mask=preds.get("label_mask"))
    return ["phecodes"]
