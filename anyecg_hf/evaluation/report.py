"""Report objects returned by `evaluate_diagnosis` / `evaluate_risk`: tables, summaries and their exports."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .formatting import (  # noqa: F401 - markdown_table, horizon_label, threshold_rule importable here as before
    _clean_json,
    _finite,
    _json_default,
    _prepare_path,
    fmt,
    format_ci,
    horizon_label,
    markdown_table,
    threshold_rule,
)

__all__ = ["DiagnosisReport", "RiskReport", "markdown_table", "format_ci", "horizon_label", "threshold_rule"]


# ----------------------------------------------------------------------------------------------- diagnosis
class _RankedConditions:
    """`ranked` / `top` / `bottom` over the defined conditions of a report's `table`, by `default_metric`."""

    default_metric = ""

    def ranked(self, by: str | None = None, ascending: bool = False) -> pd.DataFrame:
        """Defined conditions sorted by a metric column (default: the report's headline metric)."""
        d = self.table[self.table["defined"]]
        return d.sort_values(by or self.default_metric, ascending=ascending, kind="stable")

    def top(self, n: int = 10, by: str | None = None) -> pd.DataFrame:
        return self.ranked(by, ascending=False).head(n)

    def bottom(self, n: int = 10, by: str | None = None) -> pd.DataFrame:
        return self.ranked(by, ascending=True).head(n)


@dataclass
class DiagnosisReport(_RankedConditions):
    """Result of `evaluate_diagnosis`.

    Attributes:
        table (`pandas.DataFrame`): one row per condition: `id`, `name`, `code_system`, `code`, `n`, `n_pos`,
            `n_neg`, `prevalence`, `defined`, `undefined_reason`, `auroc`, `auroc_ci_low`, `auroc_ci_high`, `auprc`,
            `auprc_ci_low`, `auprc_ci_high`, `threshold`, `sensitivity`, `specificity`, `ppv`, `npv`, `f1`, `brier`,
            `ece`. Undefined metrics are `NaN`.
        summary (`dict`): counts, macro AUROC/AUPRC with CIs, micro AUROC/AUPRC, macro ECE and the number of
            conditions with AUROC (and with the CI's lower bound) above 0.7 / 0.8 / 0.9.
        calibration (`pandas.DataFrame`): reliability bins per condition (`id`, `bin`, `count`, `mean_predicted`,
            `fraction_positive`, ...).
        subgroups (`pandas.DataFrame` or `None`): the per-condition table for each subgroup level (columns
            `variable`, `level` first), at the overall thresholds.
        subgroup_summary (`pandas.DataFrame` or `None`): the summary per subgroup level.
        settings (`dict`): bootstrap size, seed, CI level and method, resampling unit, threshold method.
        label_space (`LabelSpace`): the evaluated conditions.
        bootstrap_auroc, bootstrap_auprc (array `(B, K)` or `None`): bootstrap replicates (`NaN` where undefined).
    """

    default_metric = "auroc"  # of `ranked` / `top` / `bottom`

    table: pd.DataFrame
    summary: dict
    calibration: pd.DataFrame
    subgroups: pd.DataFrame | None = None
    subgroup_summary: pd.DataFrame | None = None
    settings: dict = field(default_factory=dict)
    label_space: object = None
    bootstrap_auroc: np.ndarray | None = field(default=None, repr=False)
    bootstrap_auprc: np.ndarray | None = field(default=None, repr=False)

    kind = "diagnosis"

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"DiagnosisReport({s['n_conditions']} conditions, {s['n_defined']} defined, macro AUROC "
            f"{format_ci(s['macro_auroc'], s['macro_auroc_ci_low'], s['macro_auroc_ci_high'])})"
        )

    # -------------------------------------------------------------- text
    def summary_markdown(self, digits: int = 3) -> str:
        s, st = self.summary, self.settings
        level = int(round(100 * st.get("ci_level", 0.95)))
        ci = (
            f"{level}% {st.get('ci_method', 'bootstrap')} CIs from {st['n_bootstrap']} resamples of "
            f"{st.get('resampling_unit', 'ECG')}s (seed {st.get('seed')})"
            if st.get("n_bootstrap")
            else "no confidence intervals (n_bootstrap=0)"
        )
        cut = "; ".join(
            f"> {c}: {s[f'n_auroc_gt_{c}']} (CI lower bound > {c}: {s[f'n_auroc_ci_low_gt_{c}']})"
            for c in (0.7, 0.8, 0.9)
        )
        lines = [
            f"- Samples: {s['n_samples']} ({s['n_patients']} patients); conditions: {s['n_conditions']}, "
            f"{s['n_defined']} with both positives and negatives ({s['n_undefined']} undefined).",
            f"- Macro AUROC: {format_ci(s['macro_auroc'], s['macro_auroc_ci_low'], s['macro_auroc_ci_high'], digits)}; "
            f"micro AUROC: {fmt(s['micro_auroc'], digits)}.",
            f"- Macro AUPRC: {format_ci(s['macro_auprc'], s['macro_auprc_ci_low'], s['macro_auprc_ci_high'], digits)}; "
            f"micro AUPRC: {fmt(s['micro_auprc'], digits)}.",
            f"- Conditions with AUROC {cut}.",
            f"- Macro expected calibration error: {fmt(s['macro_ece'], digits)}.",
            f"- Thresholds: {threshold_rule(st)}; {ci}"
            + (f"; none for conditions with fewer than {st['min_ci_positives']} positives (n too small)."
               if st.get("n_bootstrap") and st.get("min_ci_positives") else "."),
        ]
        return "\n".join(lines)

    def formatted_table(self, rows: pd.DataFrame | None = None, digits: int = 3) -> pd.DataFrame:
        rows = self.table if rows is None else rows
        small = (rows["ci_note"] == "n too small").to_numpy() if "ci_note" in rows else np.zeros(len(rows), bool)

        def with_ci(v, lo, hi, ok, tiny, why=None):
            if not ok:
                return f"undefined ({why})" if why else "undefined"
            return f"{fmt(v, digits)} (n too small)" if tiny else format_ci(v, lo, hi, digits)

        out = pd.DataFrame(
            {
                "Condition": rows["name"],
                "Code": [("" if c is None or (isinstance(c, float) and math.isnan(c)) else c) for c in rows["code"]],
                "n+": rows["n_pos"],
                "n-": rows["n_neg"],
                "AUROC [CI]": [with_ci(v, lo, hi, ok, tiny, why) for v, lo, hi, ok, tiny, why in
                               zip(rows["auroc"], rows["auroc_ci_low"], rows["auroc_ci_high"], rows["defined"], small,
                                   rows["undefined_reason"])],
                "AUPRC [CI]": [with_ci(v, lo, hi, ok, tiny) for v, lo, hi, ok, tiny in
                               zip(rows["auprc"], rows["auprc_ci_low"], rows["auprc_ci_high"], rows["defined"], small)],
                "Threshold": [fmt(v, digits) for v in rows["threshold"]],
                "Sens": [fmt(v, digits) for v in rows["sensitivity"]],
                "Spec": [fmt(v, digits) for v in rows["specificity"]],
                "PPV": [fmt(v, digits) for v in rows["ppv"]],
                "NPV": [fmt(v, digits) for v in rows["npv"]],
                "F1": [fmt(v, digits) for v in rows["f1"]],
            }
        )
        return out

    def to_markdown(self, max_rows: int | None = 50, digits: int = 3, title: str | None = "Diagnosis evaluation",
                    sort_by: str | None = "auroc") -> str:
        """Summary bullets and the per-condition table (sorted by `sort_by`, at most `max_rows` rows)."""
        rows = self.table
        if sort_by is not None:
            rows = rows.sort_values(sort_by, ascending=False, kind="stable", na_position="last")
        more = ""
        if max_rows is not None and len(rows) > max_rows:
            more = f"\n\n_{len(rows) - max_rows} more conditions in the CSV table._"
            rows = rows.head(max_rows)
        parts = []
        if title:
            parts.append(f"## {title}\n")
        parts.append(self.summary_markdown(digits))
        parts.append("\n" + markdown_table(self.formatted_table(rows, digits),
                                            align={c: "r" for c in ("n+", "n-", "Threshold", "Sens", "Spec", "PPV",
                                                                    "NPV", "F1")}) + more)
        if self.subgroup_summary is not None:
            sub = self.subgroup_summary
            frame = pd.DataFrame(
                {
                    "Subgroup": sub["variable"],
                    "Level": sub["level"],
                    "Samples": sub["n_samples"],
                    "Defined conditions": sub["n_defined"],
                    "Macro AUROC [CI]": [
                        format_ci(v, lo, hi, digits)
                        for v, lo, hi in zip(sub["macro_auroc"], sub["macro_auroc_ci_low"], sub["macro_auroc_ci_high"])
                    ],
                    "Micro AUROC": [fmt(v, digits) for v in sub["micro_auroc"]],
                }
            )
            parts.append("\n### Subgroups\n\n" + markdown_table(frame))
        return "\n".join(parts) + "\n"

    # -------------------------------------------------------------- files
    def to_csv(self, path, which: str = "table") -> Path:
        """Write `table` (default), `subgroups` or `calibration` as CSV; returns the path."""
        frame = {"table": self.table, "subgroups": self.subgroups, "calibration": self.calibration,
                 "subgroup_summary": self.subgroup_summary}[which]
        if frame is None:
            raise ValueError(f"This report has no {which} (no subgroups were given).")
        path = _prepare_path(path)
        frame.to_csv(path, index=False)
        return path

    def to_dict(self) -> dict:
        return _clean_json({"kind": self.kind, "summary": self.summary, "settings": self.settings})

    def to_json(self, path) -> Path:
        path = _prepare_path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default), encoding="utf-8")
        return path

    def plot(self, path, max_conditions: int = 40, sort_by: str = "auroc"):
        """Forest plot of per-condition AUROC with CIs (top and bottom conditions when there are more than
        `max_conditions`); written to `path` (PNG/PDF/SVG by extension)."""
        from .plots import forest_plot

        return forest_plot(self.table, path, metric="auroc", label="AUROC", max_conditions=max_conditions,
                           sort_by=sort_by, reference=0.5)

    def plot_calibration(self, path, conditions=None, max_conditions: int = 6):
        """Reliability diagram of the most prevalent (or the given) conditions."""
        from .plots import reliability_plot

        return reliability_plot(self.calibration, self.table, path, conditions=conditions,
                                max_conditions=max_conditions)


# ----------------------------------------------------------------------------------------------- risk
@dataclass
class RiskReport(_RankedConditions):
    """Result of `evaluate_risk`.

    Attributes:
        table (`pandas.DataFrame`): one row per condition: `id`, `name`, `code_system`, `code`, `n`, `n_events`,
            `defined`, `undefined_reason`, `harrell_c` (+ `_ci_low`, `_ci_high`), `uno_c` (+ CI), `tau`, and per
            horizon `h`: `auc_{h}y` (+ CI), `brier_{h}y` (+ CI), `observed_{h}y`, `predicted_{h}y`, `oe_ratio_{h}y`,
            `calibration_error_{h}y`; then `ibs`.
        summary (`dict`): counts and means over defined conditions.
        calibration (`pandas.DataFrame`): per condition, horizon and predicted-risk decile: `n`, `mean_predicted`,
            `observed` (1 - Kaplan-Meier survival at the horizon).
        km (`pandas.DataFrame`): Kaplan-Meier cumulative incidence by predicted-risk quartile (`id`, `quartile`,
            `time`, `cumulative_incidence`, `n_at_risk`).
        settings (`dict`): horizons, tau, CI method, IPCW source, ...
        label_space (`LabelSpace`): the evaluated conditions.
    """

    default_metric = "harrell_c"  # of `ranked` / `top` / `bottom`

    table: pd.DataFrame
    summary: dict
    calibration: pd.DataFrame
    km: pd.DataFrame
    settings: dict = field(default_factory=dict)
    label_space: object = None

    kind = "risk"

    def __repr__(self) -> str:
        s = self.summary
        return f"RiskReport({s['n_conditions']} conditions, mean Harrell C {fmt(s.get('mean_harrell_c'))})"

    @property
    def horizons(self) -> list[float]:
        return list(self.settings.get("horizons", []))

    def summary_markdown(self, digits: int = 3) -> str:
        s, st = self.summary, self.settings
        lines = [
            f"- People: {s['n_samples']}; conditions: {s['n_conditions']} ({s['n_defined']} with events).",
            f"- Mean Harrell C: {fmt(s.get('mean_harrell_c'), digits)}; mean Uno C (tau = {st.get('tau_label')}): "
            f"{fmt(s.get('mean_uno_c'), digits)}; conditions with Harrell C > 0.7: {s.get('n_harrell_c_gt_0.7', 0)}.",
        ]
        for h in self.horizons:
            lab = horizon_label(h)
            lines.append(
                f"- {lab}: mean time-dependent AUROC {fmt(s.get(f'mean_auc_{lab}'), digits)}, mean Brier "
                f"{fmt(s.get(f'mean_brier_{lab}'), digits)}, mean observed/expected "
                f"{fmt(s.get(f'mean_oe_ratio_{lab}'), digits)}."
            )
        if _finite(s.get("mean_ibs")):
            lines.append(f"- Mean integrated Brier score ({st.get('ibs_range')}): {fmt(s.get('mean_ibs'), digits)}.")
        lines.append(
            f"- CIs: {st.get('ci_description')}. IPCW from the {st.get('ipcw_source')} censoring distribution. "
            "Cumulative incidence is 1 - S(t | x) under cause-specific hazards (competing deaths are censored)."
        )
        return "\n".join(lines)

    def formatted_table(self, rows: pd.DataFrame | None = None, digits: int = 3) -> pd.DataFrame:
        rows = self.table if rows is None else rows
        out = {
            "Condition": rows["name"],
            "n": rows["n"],
            "Events": rows["n_events"],
            "Harrell C [CI]": [format_ci(v, lo, hi, digits) if ok else f"undefined ({why})" for v, lo, hi, ok, why in
                               zip(rows["harrell_c"], rows["harrell_c_ci_low"], rows["harrell_c_ci_high"],
                                   rows["defined"], rows["undefined_reason"])],
            "Uno C [CI]": [format_ci(v, lo, hi, digits) for v, lo, hi in
                           zip(rows["uno_c"], rows["uno_c_ci_low"], rows["uno_c_ci_high"])],
        }
        for h in self.horizons:
            lab = horizon_label(h)
            out[f"AUROC {lab} [CI]"] = [format_ci(v, lo, hi, digits) for v, lo, hi in
                                        zip(rows[f"auc_{lab}"], rows[f"auc_{lab}_ci_low"], rows[f"auc_{lab}_ci_high"])]
            out[f"Brier {lab}"] = [fmt(v, digits) for v in rows[f"brier_{lab}"]]
        out["IBS"] = [fmt(v, digits) for v in rows["ibs"]]
        return pd.DataFrame(out)

    def to_markdown(self, max_rows: int | None = 50, digits: int = 3, title: str | None = "Risk evaluation",
                    sort_by: str | None = "harrell_c") -> str:
        rows = self.table
        if sort_by is not None:
            rows = rows.sort_values(sort_by, ascending=False, kind="stable", na_position="last")
        more = ""
        if max_rows is not None and len(rows) > max_rows:
            more = f"\n\n_{len(rows) - max_rows} more conditions in the CSV table._"
            rows = rows.head(max_rows)
        parts = [f"## {title}\n"] if title else []
        parts.append(self.summary_markdown(digits))
        parts.append("\n" + markdown_table(self.formatted_table(rows, digits), align={"n": "r", "Events": "r"}) + more)
        return "\n".join(parts) + "\n"

    def to_csv(self, path, which: str = "table") -> Path:
        """Write `table` (default), `calibration` or `km` as CSV; returns the path."""
        frame = {"table": self.table, "calibration": self.calibration, "km": self.km}[which]
        path = _prepare_path(path)
        frame.to_csv(path, index=False)
        return path

    def to_dict(self) -> dict:
        return _clean_json({"kind": self.kind, "summary": self.summary, "settings": self.settings})

    def to_json(self, path) -> Path:
        path = _prepare_path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default), encoding="utf-8")
        return path

    def plot(self, path, max_conditions: int = 40, metric: str = "harrell_c"):
        """Forest plot of per-condition C-index (`harrell_c` or `uno_c`) with CIs."""
        from .plots import forest_plot

        label = {"harrell_c": "Harrell's C", "uno_c": "Uno's C"}.get(metric, metric)
        return forest_plot(self.table, path, metric=metric, label=label, max_conditions=max_conditions,
                           sort_by=metric, reference=0.5)

    def plot_km(self, path, conditions=None, max_conditions: int = 6):
        """Kaplan-Meier cumulative incidence by predicted-risk quartile, one panel per condition."""
        from .plots import km_quartile_plot

        return km_quartile_plot(self.km, self.table, path, conditions=conditions, max_conditions=max_conditions)

    def plot_calibration(self, path, horizon: float | None = None, conditions=None, max_conditions: int = 6):
        """Predicted vs Kaplan-Meier observed risk per decile at `horizon` (default: the last usable one)."""
        from .plots import risk_calibration_plot

        return risk_calibration_plot(self.calibration, self.table, path, horizon=horizon, conditions=conditions,
                                     max_conditions=max_conditions)
