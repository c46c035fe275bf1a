"""Model-agnostic evaluation runner: predicted arrays + labels in, a report folder out.

A report folder holds, for each evaluated task, the full table (CSV and markdown), a JSON summary, the figures
(PNG) and a `model_card_section.md` ready to paste into (or be merged by `write_model_card` into) a model card::

    report/
      report.md                    index: both markdown reports and links to the figures
      model_card_section.md        evaluation section for README.md
      diagnosis/  table.csv table.md summary.json forest_auroc.png calibration.png reliability_bins.csv
                  [subgroups.csv subgroup_summary.csv]
      risk/       table.csv table.md summary.json forest_cindex.png km_by_quartile.png calibration.png
                  calibration.csv km.csv
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .model_card import model_card_section

__all__ = ["write_report", "run_evaluation", "run_evaluation_from_npz"]


def write_report(out_dir, diagnosis_report=None, risk_report=None, *, top_n: int = 10, dataset_name: str | None = None,
                 max_conditions: int = 40) -> dict:
    """Write the tables, figures and model-card section of one or two reports into `out_dir`.

    Args:
        out_dir (`str` or `os.PathLike`): folder to create (existing files of the same names are replaced).
        diagnosis_report (`DiagnosisReport`, *optional*), risk_report (`RiskReport`, *optional*): at least one.
        top_n (`int`, *optional*, defaults to 10): rows of the best / worst tables of the model-card section.
        dataset_name (`str`, *optional*): evaluation cohort named in the section.
        max_conditions (`int`, *optional*, defaults to 40): conditions shown in the forest plots.

    Returns:
        `dict` mapping a short name (`"diagnosis_table"`, `"risk_km_plot"`, `"model_card_section"`, ...) to the
        written path.
    """
    if diagnosis_report is None and risk_report is None:
        raise ValueError("write_report needs a diagnosis_report, a risk_report or both.")
    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    index = ["# Evaluation report", ""]
    if diagnosis_report is not None:
        d = out / "diagnosis"
        d.mkdir(exist_ok=True)
        rep = diagnosis_report
        paths["diagnosis_table"] = rep.to_csv(d / "table.csv")
        paths["diagnosis_markdown"] = d / "table.md"
        markdown = rep.to_markdown(max_rows=None)
        paths["diagnosis_markdown"].write_text(markdown, encoding="utf-8")
        paths["diagnosis_summary"] = rep.to_json(d / "summary.json")
        paths["diagnosis_reliability_bins"] = rep.to_csv(d / "reliability_bins.csv", which="calibration")
        paths["diagnosis_forest_plot"] = rep.plot(d / "forest_auroc.png", max_conditions=max_conditions)
        paths["diagnosis_calibration_plot"] = rep.plot_calibration(d / "calibration.png")
        if rep.subgroups is not None:
            paths["diagnosis_subgroups"] = rep.to_csv(d / "subgroups.csv", which="subgroups")
            paths["diagnosis_subgroup_summary"] = rep.to_csv(d / "subgroup_summary.csv", which="subgroup_summary")
        index += [rep.to_markdown(max_rows=max_conditions), "",
                  "![AUROC per condition](diagnosis/forest_auroc.png)", "",
                  "![Reliability diagram](diagnosis/calibration.png)", ""]
    if risk_report is not None:
        r = out / "risk"
        r.mkdir(exist_ok=True)
        rep = risk_report
        paths["risk_table"] = rep.to_csv(r / "table.csv")
        paths["risk_markdown"] = r / "table.md"
        paths["risk_markdown"].write_text(rep.to_markdown(max_rows=None), encoding="utf-8")
        paths["risk_summary"] = rep.to_json(r / "summary.json")
        paths["risk_calibration"] = rep.to_csv(r / "calibration.csv", which="calibration")
        paths["risk_km"] = rep.to_csv(r / "km.csv", which="km")
        paths["risk_forest_plot"] = rep.plot(r / "forest_cindex.png", max_conditions=max_conditions)
        if rep.table["defined"].any():
            paths["risk_km_plot"] = rep.plot_km(r / "km_by_quartile.png")
            paths["risk_calibration_plot"] = rep.plot_calibration(r / "calibration.png")
        index += [rep.to_markdown(max_rows=max_conditions), "", "![C-index per condition](risk/forest_cindex.png)", ""]
        if "risk_km_plot" in paths:
            index += ["![Kaplan-Meier by predicted-risk quartile](risk/km_by_quartile.png)", "",
                      "![Calibration](risk/calibration.png)", ""]
    paths["model_card_section"] = out / "model_card_section.md"
    paths["model_card_section"].write_text(
        model_card_section(diagnosis_report, risk_report, top_n=top_n, dataset_name=dataset_name), encoding="utf-8")
    paths["index"] = out / "report.md"
    paths["index"].write_text("\n".join(index), encoding="utf-8")
    return paths


def run_evaluation(
    out_dir,
    *,
    y_true=None,
    y_prob=None,
    label_space=None,
    label_mask=None,
    patient_ids=None,
    subgroups=None,
    threshold_method="youden",
    times=None,
    events=None,
    risk_scores=None,
    cumulative_incidence=None,
    horizons=(1.0, 5.0, 10.0),
    risk_label_space=None,
    at_risk_mask=None,
    tau=None,
    train_times=None,
    train_events=None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    dataset_name: str | None = None,
    n_jobs: int = 1,
):
    """Evaluate diagnosis predictions (`y_true`, `y_prob`), risk predictions (`times`, `events`, `risk_scores`) or
    both, and write the report folder. Arguments are those of `evaluate_diagnosis` / `evaluate_risk`.

    Returns:
        `(diagnosis_report or None, risk_report or None, paths)`.
    """
    from .classification import evaluate_diagnosis
    from .survival import evaluate_risk

    diag = risk = None
    if (y_true is None) != (y_prob is None):
        raise ValueError("Give both y_true and y_prob for a diagnosis evaluation.")
    if y_true is not None:
        diag = evaluate_diagnosis(y_true, y_prob, label_space, label_mask=label_mask, patient_ids=patient_ids,
                                  n_bootstrap=n_bootstrap, seed=seed, threshold_method=threshold_method,
                                  subgroups=subgroups, n_jobs=n_jobs)
    risk_inputs = (times, events, risk_scores)
    if any(x is not None for x in risk_inputs) and not all(x is not None for x in risk_inputs):
        raise ValueError("A risk evaluation needs times, events and risk_scores.")
    if risk_scores is not None:
        risk = evaluate_risk(times, events, risk_scores, cumulative_incidence, horizons=horizons,
                             label_space=risk_label_space, at_risk_mask=at_risk_mask, tau=tau,
                             n_bootstrap=n_bootstrap, seed=seed, train_times=train_times, train_events=train_events)
    if diag is None and risk is None:
        raise ValueError("Nothing to evaluate: give y_true/y_prob and/or times/events/risk_scores.")
    paths = write_report(out_dir, diag, risk, dataset_name=dataset_name)
    return diag, risk, paths


_NPZ_KEYS = ("y_true", "y_prob", "label_mask", "patient_ids", "times", "events", "risk_scores", "cumulative_incidence",
             "at_risk_mask", "train_times", "train_events")


def run_evaluation_from_npz(npz_path, out_dir, label_space=None, risk_label_space=None, **kwargs):
    """`run_evaluation` on arrays saved with `numpy.savez` under the keys of `run_evaluation` (`y_true`, `y_prob`,
    `label_mask`, `patient_ids`, `times`, `events`, `risk_scores`, `cumulative_incidence`, `at_risk_mask`,
    `train_times`, `train_events`; `horizons` optional)."""
    path = os.fspath(npz_path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read predictions file {path}: {err}") from err
    unknown = sorted(set(data.files) - set(_NPZ_KEYS) - {"horizons"})
    if unknown:
        raise ValueError(f"{path}: unknown arrays {unknown}; expected some of {list(_NPZ_KEYS) + ['horizons']}.")
    arrays = {k: data[k] for k in _NPZ_KEYS if k in data.files}
    if "horizons" in data.files:
        kwargs.setdefault("horizons", data["horizons"].tolist())
    return run_evaluation(out_dir, label_space=label_space, risk_label_space=risk_label_space, **arrays, **kwargs)
