"""`anyecg evaluate --model M --dataset D --split test --out report/`: run a model over a dataset split and write the
evaluation tables, plots and a model-card section (`anyecg_hf.evaluation`)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        description="Run a model (folder or Hub id) over one split of a dataset written by `anyecg build-dataset` and "
        "write per-condition tables with bootstrap confidence intervals, plots, a summary and a model-card section. "
        "The model's conditions are matched to the dataset's by id, code or name; conditions the dataset lacks are "
        "reported as undefined.",
    )
    p.add_argument("--model", required=True, help="model folder or Hub id (any AnyECG head)")
    p.add_argument("--dataset", required=True, help="dataset folder (Arrow or Parquet) or Hub dataset id")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", required=True, help="report folder (created)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples of the CIs (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", choices=("all", "start", "center"), default="all",
                   help="which preprocessed windows to use per record ('all' averages them)")
    p.add_argument("--num-proc", type=int, default=None, help="processes for preprocessing")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--subgroups", default="sex,age_band",
                   help="comma-separated subgroup columns (sex, age_band, site, ...; 'none' to skip)")
    p.set_defaults(func=run)


def _load_model(name):
    from transformers import AutoModel

    import anyecg_hf  # noqa: F401 - registers the AnyECG classes with AutoModel

    model = AutoModel.from_pretrained(name)
    if not (hasattr(model, "classifier") or getattr(model, "risk_head", None) is not None):
        raise ValueError(f"{name} is a bare backbone ({type(model).__name__}) with no diagnosis or risk head to evaluate; "
                         "its config.architectures must name a head class.")
    return model


def _feature_extractor(name, model):
    from ..processing import AnyECGFeatureExtractor

    try:
        return AnyECGFeatureExtractor.from_pretrained(name)
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


def run(args) -> int:
    import torch
    from torch.utils.data import DataLoader

    from .errors import CLIError
    from ..data import (
        ECGDataCollator,
        dataset_metadata,
        get_label_space,
        get_risk_label_space,
        is_prepared,
        load_ecg_dataset,
        prepare_dataset,
    )
    from ..evaluation.predictions import collect_predictions, evaluate_predictions

    try:
        model = _load_model(args.model)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load model {args.model}: {err}") from None
    try:
        ds = load_ecg_dataset(args.dataset, split=args.split)
    except (OSError, ValueError, FileNotFoundError) as err:
        raise CLIError(f"cannot load split {args.split!r} of {args.dataset}: {err}") from None
    if hasattr(ds, "keys"):
        raise CLIError(f"{args.dataset} has splits {list(ds)}; choose one with --split.")
    meta = dataset_metadata(ds)
    fe = _feature_extractor(args.model, model)
    if is_prepared(ds):
        prepared = (meta.get("prepared") or {}).get("feature_extractor", {})
        for key in ("sampling_rate", "num_samples", "lead_names"):
            if key in prepared and prepared[key] != getattr(fe, key):
                raise CLIError(f"{args.dataset} was preprocessed for {key}={prepared[key]!r} but the model expects "
                               f"{getattr(fe, key)!r}; evaluate on the raw dataset instead.")
    else:
        ds = prepare_dataset(ds, fe, num_proc=args.num_proc)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    config = model.config
    collator = ECGDataCollator(num_samples=config.num_samples, num_leads=config.in_channels,
                               sampling_rate=config.sampling_rate, window=args.window, train=False)
    dl = DataLoader(ds.with_format("numpy"), batch_size=args.batch_size, shuffle=False, collate_fn=collator)
    preds = collect_predictions(model, dl, progress=True)
    patients = list(ds["patient_id"]) if "patient_id" in ds.column_names else None
    names = [] if args.subgroups in (None, "", "none") else [s.strip() for s in args.subgroups.split(",")]
    try:
        result = evaluate_predictions(preds, config, get_label_space(ds), get_risk_label_space(ds),
                                      meta.get("regression_names"), patient_ids=patients, n_bootstrap=args.n_bootstrap,
                                      seed=args.seed, subgroups=_subgroups(ds, names))
    except ValueError as err:
        raise CLIError(f"evaluation failed: {err}") from None
    if result.diagnosis_report is None and result.risk_report is None and result.regression_table is None:
        raise CLIError(f"{args.dataset} [{args.split}] has no targets this model predicts (diagnosis labels for its "
                       "classifier, time_/event_ columns for its risk head).")
    out = Path(args.out)
    written = write_evaluation(out, result, model_name=args.model, dataset=f"{args.dataset} [{args.split}]")
    _write_predictions(out, ds, preds, config)
    print(f"wrote {out}: {', '.join(sorted(written))}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    return 0


def write_evaluation(out: Path, result, model_name: str, dataset: str) -> list[str]:
    """Tables, figures, summary and model-card section of an `EvaluationResult` (`anyecg_hf.evaluation.write_report`),
    plus `metrics.json` and, for a regression head, `regression.csv`."""
    from ..evaluation import write_report

    out.mkdir(parents=True, exist_ok=True)
    if result.diagnosis_report is not None or result.risk_report is not None:
        write_report(out, diagnosis_report=result.diagnosis_report, risk_report=result.risk_report,
                     dataset_name=dataset)
    if result.regression_table is not None and len(result.regression_table):
        result.regression_table.to_csv(out / "regression.csv", index=False)
    (out / "metrics.json").write_text(json.dumps({"model": model_name, "dataset": dataset, **result.metrics},
                                                 indent=1, default=float))
    return sorted(p.name for p in out.iterdir())


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
