"""Paper-style summary of a model over a phecode label space (1,000+ conditions): how many conditions it predicts
well, per phecode category, best and worst conditions, and the comorbidity structure.

`write_phecode_summary(out, diagnosis_report, risk_report, ...)` writes `phecodes/` beside the usual report:

* `thresholds.csv`: number of conditions with AUROC > 0.7 / 0.8 / 0.9 with a bootstrap CI (the count recomputed on
  every bootstrap replicate of `evaluate_diagnosis`, percentile interval), and the number whose CI lower bound
  is above the cut-off; the same counts for Harrell's C of the risk head (no replicates are kept for risk: point
  counts only).
* `categories.csv` + `forest_category_auroc.png` / `forest_category_cindex.png`: per phecode category the number of
  conditions, how many are defined, median [IQR], mean AUROC with its CI (mean over the category's conditions on
  every replicate) and the counts above each cut-off; mean Harrell's C per category with an interval from resampling
  the category's conditions (the risk report keeps no replicates, so this interval reflects the spread over
  conditions, not sampling of people; it says so in the column name).
* `top_bottom.csv`: the `top_n` best and worst conditions of each head.
* `comorbidity/`: `comorbidity_analysis` over the phecode space (observed vs predicted pairs), when labels and
  probabilities are given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .plots import forest_plot
from .formatting import markdown_table

CUTOFFS = (0.7, 0.8, 0.9)
__all__ = ["is_phecode_space", "category_table", "threshold_counts", "write_phecode_summary"]


def is_phecode_space(label_space) -> bool:
    """True when the label space's conditions are phecodes (what `anyecg build-targets` writes)."""
    return label_space is not None and len(label_space) > 0 and all(c.code_system == "phecode" for c in label_space)


def _categories(label_space, ids) -> list[str]:
    by_id = {c.id: (c.category or "uncategorised") for c in label_space} if label_space is not None else {}
    return [by_id.get(str(i), "uncategorised") for i in ids]


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return np.nan, np.nan
    a = (1 - level) / 2
    return float(np.quantile(samples, a)), float(np.quantile(samples, 1 - a))


def threshold_counts(report, metric: str, boot: np.ndarray | None = None, ci_level: float = 0.95) -> pd.DataFrame:
    """Conditions with `metric` above each cut-off: point count, bootstrap CI of the count, count with CI low above."""
    table = report.table
    defined = table["defined"].to_numpy(bool)
    value = table[metric].to_numpy(np.float64)
    rows = []
    for c in CUTOFFS:
        lo = hi = np.nan
        if boot is not None and boot.size:
            with np.errstate(invalid="ignore"):
                counts = np.sum((boot[:, defined] > c), axis=1).astype(np.float64)
            lo, hi = _interval(counts, ci_level)
        ci_low = table.get(f"{metric}_ci_low", pd.Series(np.nan, index=table.index)).to_numpy(np.float64)
        rows.append({"metric": metric, "cutoff": c, "n_conditions": int(defined.sum()),
                     "n_above": int(np.sum(value[defined] > c)), "n_above_ci_low": lo, "n_above_ci_high": hi,
                     "n_with_ci_low_above": int(np.sum(ci_low[defined] > c))})
    return pd.DataFrame(rows)


def category_table(report, label_space, metric: str, boot: np.ndarray | None = None, ci_level: float = 0.95,
                   seed: int = 0, n_resamples: int = 1000) -> pd.DataFrame:
    """Per phecode category: counts, median [IQR], mean of `metric` with an interval, counts above the cut-offs.

    With `boot` (bootstrap replicates `(B, K)` of the report) the interval is the percentile interval of the
    category mean over replicates; without, it comes from resampling the category's conditions (column
    `interval_over` says which).
    """
    table = report.table.assign(category=_categories(label_space, report.table["id"]))
    rng = np.random.default_rng(seed)
    rows = []
    for cat, part in table.groupby("category", sort=True):
        d = part[part["defined"]]
        v = d[metric].to_numpy(np.float64)
        row = {"category": cat, "name": cat, "n_conditions": len(part), "n_defined": len(d)}
        row[f"{metric}_median"] = float(np.median(v)) if len(v) else np.nan
        row[f"{metric}_q25"] = float(np.quantile(v, 0.25)) if len(v) else np.nan
        row[f"{metric}_q75"] = float(np.quantile(v, 0.75)) if len(v) else np.nan
        row[metric] = float(v.mean()) if len(v) else np.nan
        if boot is not None and len(v):
            cols = d.index.to_numpy()
            with np.errstate(all="ignore"):
                lo, hi = _interval(np.nanmean(boot[:, cols], axis=1), ci_level)
            over = "people (bootstrap replicates)"
        elif len(v) > 1:
            lo, hi = _interval(rng.choice(v, (n_resamples, len(v))).mean(axis=1), ci_level)
            over = "conditions of the category"
        else:
            lo = hi = np.nan
            over = ""
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"], row["interval_over"] = lo, hi, over
        for c in CUTOFFS:
            row[f"n_{metric}_gt_{c}"] = int(np.sum(v > c))
        rows.append(row)
    out = pd.DataFrame(rows)
    out["defined"] = out["n_defined"] > 0
    return out


def _top_bottom(report, head: str, metric: str, n: int) -> pd.DataFrame:
    cols = ["id", "name", metric, f"{metric}_ci_low", f"{metric}_ci_high"]
    top = report.top(n)[cols].assign(rank="top")
    bottom = report.bottom(n)[cols].assign(rank="bottom")
    return pd.concat([top, bottom]).assign(head=head).rename(columns={metric: "value", f"{metric}_ci_low": "ci_low",
                                                                      f"{metric}_ci_high": "ci_high"}).assign(metric=metric)


def write_phecode_summary(out_dir, diagnosis_report=None, risk_report=None, *, label_space=None, risk_label_space=None,
                          probs=None, labels=None, label_mask=None, top_n: int = 10, ci_level: float = 0.95) -> dict:
    """Write the phecode summary into `out_dir/phecodes/`; returns `{name: path}` (see the module docstring)."""
    out = Path(out_dir) / "phecodes"
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    counts, cats, extremes, md = [], [], [], ["# Phecode summary", ""]
    heads = (("diagnosis", diagnosis_report, label_space, "auroc", "AUROC"),
             ("risk", risk_report, risk_label_space, "harrell_c", "Harrell's C"))
    for head, report, space, metric, label in heads:
        if report is None:
            continue
        boot = getattr(report, "bootstrap_auroc", None) if metric == "auroc" else None  # risk keeps no replicates
        space = space if space is not None else report.label_space
        counts.append(threshold_counts(report, metric, boot, ci_level))
        cat = category_table(report, space, metric, boot, ci_level).assign(head=head)
        cats.append(cat)
        name = "forest_category_auroc" if metric == "auroc" else "forest_category_cindex"
        paths[name] = forest_plot(cat, out / f"{name}.png", metric=metric, label=f"Mean {label} per phecode category",
                                  max_conditions=60)
        extremes.append(_top_bottom(report, head, metric, top_n))
    if counts:
        frame = pd.concat(counts, ignore_index=True)
        paths["thresholds"] = out / "thresholds.csv"
        frame.to_csv(paths["thresholds"], index=False)
        shown = frame.assign(count=[f"{r.n_above} [{_fmt(r.n_above_ci_low)}, {_fmt(r.n_above_ci_high)}]"
                                    for r in frame.itertuples()])
        md += ["## Conditions above each cut-off", "",
               markdown_table(shown[["metric", "cutoff", "n_conditions", "count", "n_with_ci_low_above"]].astype(str)), ""]
    if cats:
        frame = pd.concat(cats, ignore_index=True).drop(columns=["name", "defined"])
        paths["categories"] = out / "categories.csv"
        frame.to_csv(paths["categories"], index=False)
        md += ["## Per phecode category (see categories.csv)", ""]
    if extremes:
        frame = pd.concat(extremes, ignore_index=True)
        paths["top_bottom"] = out / "top_bottom.csv"
        frame.to_csv(paths["top_bottom"], index=False)
        md += ["## Best and worst conditions", "",
               markdown_table(frame[["head", "rank", "id", "name", "metric", "value"]].round(3).astype(str)), ""]
    if probs is not None and labels is not None and label_space is not None and np.shape(probs)[1] >= 2:
        from .comorbidity import comorbidity_analysis

        res = comorbidity_analysis(probs, labels, names=label_space, label_mask=label_mask)
        res.save(out / "comorbidity")
        paths["comorbidity"] = out / "comorbidity"
        md += ["Comorbidity over the phecode space: comorbidity/ (pairs, network, co-occurrence tables).", ""]
    paths["markdown"] = out / "phecode_summary.md"
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    return paths


def _fmt(v) -> str:
    return "-" if not np.isfinite(v) else f"{v:g}"
