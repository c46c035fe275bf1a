"""Diagnosis (multi-label classification) evaluation: per-condition AUROC / AUPRC with bootstrap confidence
intervals, an operating threshold with sensitivity, specificity, PPV, NPV and F1, calibration and subgroups.

Point estimates come from scikit-learn (`roc_auc_score`, `average_precision_score`, `roc_curve`,
`precision_recall_curve`). Confidence intervals are percentile intervals of a seeded bootstrap
computed by `anyecg_hf.evaluation.bootstrap` (vectorised over resamples, equal to scikit-learn on the same
resamples); with `patient_ids`, whole patients are resampled.

A condition whose evaluated rows hold no positive or no negative has no AUROC: its metrics are `NaN`, `defined` is
`False` and `undefined_reason` says why. It is never reported as 0.5 and never makes the evaluation fail.
A condition with fewer than `min_ci_positives` (default 10) positives gets no confidence interval (`ci_note` = "n too
small"): a percentile bootstrap over one or two positives gives intervals such as [1.000, 1.000] that look certain.

Operating thresholds chosen on the evaluated data itself make its sensitivity and specificity optimistic: pass
thresholds chosen on a validation split (`threshold_method=` an array, `threshold_split="validation"`); the table's
`threshold_source` column and `settings["threshold_split"]` say where each threshold came from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from .bootstrap import bootstrap_auroc_auprc, percentile_interval
from .calibration import expected_calibration_error, reliability_bins
from .multilabel import multilabel_auroc  # noqa: F401 - re-exported (its home before it had a module of its own)
from .report import DiagnosisReport
from .subgroups import age_bands, is_missing, subgroup_columns
from .thresholds import (  # noqa: F401 - select_threshold and THRESHOLD_METHODS are re-exported
    OPTIMISTIC,
    THRESHOLD_METHODS,
    confusion_metrics,
    select_threshold,
    threshold_spec,
    threshold_split_text,
)

__all__ = ["evaluate_diagnosis", "multilabel_auroc", "select_threshold", "age_bands", "THRESHOLD_METHODS"]

AUROC_CUTOFFS = (0.7, 0.8, 0.9)


# ----------------------------------------------------------------------------------------------- input checks
def _resolve_label_space(label_space, K: int):
    from anyecg_hf.modeling import LabelSpace

    if label_space is None:
        return LabelSpace.generic(K)
    if not isinstance(label_space, LabelSpace):
        label_space = LabelSpace.from_names(list(label_space))
    if len(label_space) != K:
        raise ValueError(f"The label space has {len(label_space)} conditions but the arrays have {K} columns.")
    return label_space


def _check_arrays(y_true, y_prob, label_mask):
    """Validate shapes and values; return float labels, probabilities and the boolean evaluation mask."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_prob.ndim == 1:
        y_prob = y_prob[:, None]
    if y_true.ndim != 2 or y_prob.ndim != 2:
        raise ValueError(
            f"y_true and y_prob must have shape (n_samples, n_conditions); got {y_true.shape} and {y_prob.shape}."
        )
    if y_true.shape != y_prob.shape:
        raise ValueError(f"Shape mismatch: y_true {y_true.shape} vs y_prob {y_prob.shape}.")
    if y_true.shape[0] == 0:
        raise ValueError("No samples to evaluate (0 rows).")
    # Missing labels (NaN, or negative such as the -100 of `ignore_index`) are excluded like a False label_mask.
    mask = np.isfinite(y_true) & (y_true >= 0)
    if label_mask is not None:
        label_mask = np.asarray(label_mask)
        if label_mask.ndim == 1:
            label_mask = label_mask[:, None]
        if label_mask.shape != y_true.shape:
            raise ValueError(f"label_mask has shape {label_mask.shape}, expected {y_true.shape}.")
        mask &= label_mask.astype(bool)
    bad_label = mask & ~np.isin(y_true, (0.0, 1.0))
    if bad_label.any():
        r, c = np.argwhere(bad_label)[0]
        raise ValueError(
            f"y_true must be 0/1 (or NaN / negative for missing); found {y_true[r, c]!r} at row {r}, "
            f"condition {c} ({int(bad_label.sum())} such entries)."
        )
    bad_prob = mask & ~np.isfinite(y_prob)
    if bad_prob.any():
        r, c = np.argwhere(bad_prob)[0]
        raise ValueError(
            f"y_prob has {int(bad_prob.sum())} NaN/inf value(s) among evaluated entries (first at row {r}, "
            f"condition {c}). Remove those rows or exclude them with label_mask."
        )
    out_of_range = mask & ((y_prob < 0) | (y_prob > 1))
    if out_of_range.any():
        r, c = np.argwhere(out_of_range)[0]
        raise ValueError(
            f"y_prob must be probabilities in [0, 1]; found {y_prob[r, c]!r} at row {r}, condition {c}. "
            "Apply a sigmoid to logits first."
        )
    return y_true, y_prob, mask


# ----------------------------------------------------------------------------------------------- core
def _per_condition(y_true, y_prob, mask, label_space, spec, n_bootstrap, seed, groups, ci_level, n_bins, n_jobs,
                   fixed_thresholds=None, min_ci_positives=10, threshold_split="given"):
    """Per-condition table, reliability bins and the bootstrap replicates (B, K) for the given rows."""
    K = y_true.shape[1]
    name, target, spec_thresholds = spec
    thresholds = fixed_thresholds if fixed_thresholds is not None else spec_thresholds
    # NaN in given thresholds (e.g. no positive in the validation split): chosen here with Youden's J, marked
    choose = "youden" if name in ("fixed", "label_space") else name
    rows, calib = [], []
    y_bool = y_true == 1
    n_pos_all = np.sum(mask & y_bool, axis=0)
    n_neg_all = np.sum(mask & ~y_bool, axis=0)
    defined = (n_pos_all > 0) & (n_neg_all > 0)
    for k, cond in enumerate(label_space):
        m = mask[:, k]
        y, p = y_bool[m, k].astype(np.int64), y_prob[m, k]
        n_pos, n_neg = int(n_pos_all[k]), int(n_neg_all[k])
        row = dict(
            id=cond.id, name=cond.name, code_system=cond.code_system, code=cond.code, n=n_pos + n_neg,
            n_pos=n_pos, n_neg=n_neg, prevalence=(n_pos / (n_pos + n_neg)) if n_pos + n_neg else np.nan,
            defined=bool(defined[k]),
            undefined_reason=("" if defined[k] else "no labelled samples" if n_pos + n_neg == 0
                              else "no positives" if n_pos == 0 else "no negatives"),
            auroc=np.nan, auroc_ci_low=np.nan, auroc_ci_high=np.nan,
            auprc=np.nan, auprc_ci_low=np.nan, auprc_ci_high=np.nan,
        )
        if defined[k]:
            row["auroc"] = float(roc_auc_score(y, p))
            row["auprc"] = float(average_precision_score(y, p))
        source = ""
        if thresholds is not None and (np.isfinite(thresholds[k]) or fixed_thresholds is not None):
            thr, source = float(thresholds[k]), threshold_split if np.isfinite(thresholds[k]) else ""
        elif defined[k]:
            thr, source = select_threshold(y, p, method=choose, target=target), OPTIMISTIC
        else:
            thr = np.nan
        row["threshold"], row["threshold_source"] = thr, source
        row.update(confusion_metrics(y, p, thr))
        row["brier"] = float(np.mean((p - y) ** 2)) if len(y) else np.nan
        row["ece"] = expected_calibration_error(y, p, n_bins) if len(y) else np.nan
        rows.append(row)
        if len(y):
            bins = reliability_bins(y, p, n_bins)
            bins.insert(0, "id", cond.id)
            calib.append(bins)
    table = pd.DataFrame(rows)
    boot_auc = boot_ap = None
    if n_bootstrap > 0 and defined.any():
        cols = np.flatnonzero(defined)
        a, ap, _ = bootstrap_auroc_auprc(
            y_bool[:, cols], y_prob[:, cols], label_mask=mask[:, cols], n_bootstrap=n_bootstrap, seed=seed,
            groups=groups, n_jobs=n_jobs,
        )
        boot_auc = np.full((n_bootstrap, K), np.nan)
        boot_ap = np.full((n_bootstrap, K), np.nan)
        boot_auc[:, cols], boot_ap[:, cols] = a, ap
        lo, hi, _ = percentile_interval(boot_auc, ci_level)
        table["auroc_ci_low"], table["auroc_ci_high"] = lo, hi
        lo, hi, _ = percentile_interval(boot_ap, ci_level)
        table["auprc_ci_low"], table["auprc_ci_high"] = lo, hi
    small = defined & (n_pos_all < min_ci_positives)
    table["ci_note"] = np.where(small, "n too small", "")
    table.loc[small, ["auroc_ci_low", "auroc_ci_high", "auprc_ci_low", "auprc_ci_high"]] = np.nan
    calibration = pd.concat(calib, ignore_index=True) if calib else pd.DataFrame()
    return table, calibration, boot_auc, boot_ap


def _summary(table, boot_auc, boot_ap, y_true, y_prob, mask, ci_level):
    d = table[table["defined"]]
    s = dict(
        n_conditions=int(len(table)),
        n_defined=int(len(d)),
        n_undefined=int(len(table) - len(d)),
        macro_auroc=float(d["auroc"].mean()) if len(d) else np.nan,
        macro_auprc=float(d["auprc"].mean()) if len(d) else np.nan,
        macro_ece=float(table["ece"].mean()) if table["ece"].notna().any() else np.nan,
    )
    for key, boot in (("macro_auroc", boot_auc), ("macro_auprc", boot_ap)):
        lo = hi = np.nan
        if boot is not None and len(d):
            with np.errstate(all="ignore"):
                per_resample = np.nanmean(boot[:, table["defined"].to_numpy()], axis=1)
            lo, hi, _ = percentile_interval(per_resample[:, None], ci_level)
            lo, hi = float(lo[0]), float(hi[0])
        s[f"{key}_ci_low"], s[f"{key}_ci_high"] = lo, hi
    y_flat, p_flat = y_true[mask], y_prob[mask]
    both = y_flat.size and 0 < y_flat.sum() < y_flat.size
    s["micro_auroc"] = float(roc_auc_score(y_flat, p_flat)) if both else np.nan
    s["micro_auprc"] = float(average_precision_score(y_flat, p_flat)) if both else np.nan
    for c in AUROC_CUTOFFS:
        s[f"n_auroc_gt_{c}"] = int(np.sum(d["auroc"] > c))
        s[f"n_auroc_ci_low_gt_{c}"] = int(np.sum(d["auroc_ci_low"] > c))
    return s


def evaluate_diagnosis(
    y_true,
    y_prob,
    label_space=None,
    label_mask=None,
    patient_ids=None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    threshold_method="youden",
    subgroups=None,
    ci_level: float = 0.95,
    n_bins: int = 10,
    subgroup_n_bootstrap: int | None = None,
    n_jobs: int = 1,
    min_ci_positives: int = 10,
    threshold_split: str | None = None,
) -> DiagnosisReport:
    """Evaluate multi-label diagnosis probabilities against labels.

    Args:
        y_true (array `(N, K)`): 1 = condition present, 0 = absent; `NaN` or a negative value (e.g. `-100`) marks a
            missing label, excluded like a `False` in `label_mask`.
        y_prob (array `(N, K)`): predicted probabilities in [0, 1] (apply a sigmoid to logits). `NaN` is an error
            unless the entry is excluded by `label_mask`.
        label_space (`LabelSpace`, list of names or `None`): the K conditions, in column order; `None` gives
            `LABEL_0 ... LABEL_{K-1}`.
        label_mask (bool array `(N, K)`, *optional*): which entries are evaluated (e.g. conditions not recorded at a
            site).
        patient_ids (array `(N,)`, *optional*): patient of each row; the bootstrap then resamples patients (all
            ECGs of a drawn patient together), as rows of one patient are not independent.
        n_bootstrap (`int`, *optional*, defaults to 1000): bootstrap resamples for the CIs; 0 disables them.
        seed (`int`, *optional*, defaults to 0): seed of the resamples (results are reproducible).
        threshold_method (*optional*, defaults to `"youden"`): how each condition's operating threshold is chosen:
            `"youden"`, `"balanced_accuracy"` (same point as Youden's), `"f1"`, `("sensitivity", 0.9)`,
            `("specificity", 0.95)` (all chosen on THIS data, so optimistic), `"label_space"` (the thresholds stored
            in the label space, 0.5 where unset), a float, or K thresholds chosen elsewhere (e.g. on validation data;
            `NaN` entries are chosen here with Youden's J and marked optimistic).
        subgroups (mapping or `DataFrame`, *optional*): subgroup variables, e.g. `{"sex": sex, "age_band":
            age_bands(age), "site": site}` (one value per row; `None`/`NaN` rows are left out of that variable).
            Each level gets the per-condition metrics at the overall thresholds.
        ci_level (`float`, *optional*, defaults to 0.95): confidence level of the percentile intervals.
        n_bins (`int`, *optional*, defaults to 10): bins of the reliability diagram and ECE.
        subgroup_n_bootstrap (`int`, *optional*): resamples for subgroup CIs (defaults to `n_bootstrap`).
        n_jobs (`int`, *optional*, defaults to 1): threads for the bootstrap (`-1` = all cores).
        min_ci_positives (`int`, *optional*, defaults to 10): conditions with fewer positives get no CI
            (`ci_note` = "n too small").
        threshold_split (`str`, *optional*): where given thresholds were chosen (e.g. `"validation"`), written to
            the table's `threshold_source` and to `settings["threshold_split"]`.

    Returns:
        `DiagnosisReport` with `.table` (one row per condition), `.summary`, `.calibration`, `.subgroups`,
        `.subgroup_summary` and `.to_markdown()`, `.to_csv()`, `.plot()`, `.plot_calibration()`.
    """
    y_true, y_prob, mask = _check_arrays(y_true, y_prob, label_mask)
    N, K = y_true.shape
    label_space = _resolve_label_space(label_space, K)
    if patient_ids is not None:
        patient_ids = np.asarray(patient_ids).reshape(-1)
        if patient_ids.shape != (N,):
            raise ValueError(f"patient_ids has {patient_ids.shape[0]} entries for {N} samples.")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must lie in (0, 1), got {ci_level}.")
    n_bootstrap = int(n_bootstrap)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}.")
    spec = threshold_spec(threshold_method, label_space, K)
    given = threshold_split or ("label space" if spec[0] == "label_space" else "given")

    table, calibration, boot_auc, boot_ap = _per_condition(
        y_true, y_prob, mask, label_space, spec, n_bootstrap, seed, patient_ids, ci_level, n_bins, n_jobs,
        min_ci_positives=min_ci_positives, threshold_split=given,
    )
    summary = dict(
        n_samples=int(N),
        n_patients=int(len(np.unique(patient_ids))) if patient_ids is not None else int(N),
        **_summary(table, boot_auc, boot_ap, y_true, y_prob, mask, ci_level),
    )
    settings = dict(
        n_bootstrap=n_bootstrap, seed=int(seed), ci_level=float(ci_level), ci_method="percentile bootstrap",
        resampling_unit="patient" if patient_ids is not None else "ECG",
        threshold_method=spec[0] if spec[1] is None else f"{spec[0]}>={spec[1]:g}", n_bins=int(n_bins),
        threshold_split=threshold_split_text(table["threshold_source"], given), min_ci_positives=int(min_ci_positives),
    )

    sub_rows, sub_summary = [], []
    sub_b = n_bootstrap if subgroup_n_bootstrap is None else int(subgroup_n_bootstrap)
    thresholds = table["threshold"].to_numpy(dtype=np.float64)
    for var, (values, levels) in subgroup_columns(subgroups, N).items():
        for level in levels:
            rows = np.array([not is_missing(v) and v == level for v in values])
            groups = patient_ids[rows] if patient_ids is not None else None
            sub_table, _, sb_auc, sb_ap = _per_condition(
                y_true[rows], y_prob[rows], mask[rows], label_space, spec, sub_b, seed, groups, ci_level, n_bins,
                n_jobs, fixed_thresholds=thresholds, min_ci_positives=min_ci_positives, threshold_split=given,
            )
            sub_table.insert(0, "level", str(level))
            sub_table.insert(0, "variable", var)
            sub_rows.append(sub_table)
            s = _summary(sub_table, sb_auc, sb_ap, y_true[rows], y_prob[rows], mask[rows], ci_level)
            sub_summary.append(dict(variable=var, level=str(level), n_samples=int(rows.sum()), **s))
    subgroup_table = pd.concat(sub_rows, ignore_index=True) if sub_rows else None
    subgroup_summary = pd.DataFrame(sub_summary) if sub_summary else None

    return DiagnosisReport(
        table=table,
        summary=summary,
        calibration=calibration,
        subgroups=subgroup_table,
        subgroup_summary=subgroup_summary,
        settings=settings,
        label_space=label_space,
        bootstrap_auroc=boot_auc,
        bootstrap_auprc=boot_ap,
    )
