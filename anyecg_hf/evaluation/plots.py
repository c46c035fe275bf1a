"""Figures of the evaluation reports, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

Every function writes one file (format from the extension: .png, .pdf, .svg) and returns its path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["forest_plot", "reliability_plot", "km_quartile_plot", "risk_calibration_plot"]


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _short(text, n=45) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _select_conditions(table, conditions, max_conditions, by):
    """Rows of `table` for the given ids/names, else the first `max_conditions` defined rows ranked by `by`."""
    if conditions is not None:
        wanted = [str(c) for c in conditions]
        rows = table[table["id"].astype(str).isin(wanted) | table["name"].astype(str).isin(wanted)]
        if rows.empty:
            raise ValueError(f"None of the conditions {wanted} is in the report.")
        return rows
    rows = table[table["defined"]]
    return rows.sort_values(by, ascending=False, kind="stable").head(max_conditions)


def forest_plot(table: pd.DataFrame, path, metric: str = "auroc", label: str = "AUROC", max_conditions: int = 40,
                sort_by: str | None = None, reference: float | None = 0.5) -> Path:
    """Per-condition point estimates with CI bars (`{metric}_ci_low`, `{metric}_ci_high`).

    With more than `max_conditions` defined conditions the best and the worst halves are shown, separated by a
    gap. Undefined conditions are left out (they are listed in the table).
    """
    rows = table[np.isfinite(table[metric].to_numpy(dtype=np.float64))]
    rows = rows.sort_values(sort_by or metric, ascending=False, kind="stable")
    omitted = 0
    if len(rows) > max_conditions:
        top = int(math.ceil(max_conditions / 2))
        omitted = len(rows) - max_conditions
        rows = pd.concat([rows.head(top), rows.tail(max_conditions - top)])
    n = len(rows)
    fig = _figure(7.0, 0.26 * max(n, 1) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    if n == 0:
        ax.text(0.5, 0.5, f"no condition with a defined {label}", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    y = np.arange(n)[::-1].astype(float)
    if omitted:
        y[int(math.ceil(max_conditions / 2)):] -= 1.0  # leave a gap between best and worst
    value = rows[metric].to_numpy(dtype=np.float64)
    low = rows.get(f"{metric}_ci_low", pd.Series(np.nan, index=rows.index)).to_numpy(dtype=np.float64)
    high = rows.get(f"{metric}_ci_high", pd.Series(np.nan, index=rows.index)).to_numpy(dtype=np.float64)
    has_ci = np.isfinite(low) & np.isfinite(high)
    err = np.vstack([np.where(has_ci, value - low, 0.0), np.where(has_ci, high - value, 0.0)])
    ax.errorbar(value, y, xerr=err, fmt="o", color="#1f4e79", ecolor="#7f9fbf", capsize=2, markersize=4)
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([_short(v) for v in rows["name"]], fontsize=7)
    ax.set_xlabel(f"{label} (95% CI)" if has_ci.any() else label)
    title = f"{label} per condition"
    if omitted:
        top = int(math.ceil(max_conditions / 2))
        title += f" (best {top} and worst {n - top}; {omitted} more in the table)"
    ax.set_title(title, fontsize=9)
    ax.set_ylim(y.min() - 0.8, y.max() + 0.8)
    return _save(fig, path)


def reliability_plot(calibration: pd.DataFrame, table: pd.DataFrame, path, conditions=None,
                     max_conditions: int = 6) -> Path:
    """Observed fraction of positives against mean predicted probability per bin (marker area ~ bin size)."""
    rows = _select_conditions(table, conditions, max_conditions, by="n_pos")
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect calibration")
    for cid, name, ece in zip(rows["id"], rows["name"], rows["ece"]):
        bins = calibration[(calibration["id"] == cid) & (calibration["count"] > 0)]
        if bins.empty:
            continue
        size = 10 + 60 * bins["count"] / bins["count"].max()
        (line,) = ax.plot(bins["mean_predicted"], bins["fraction_positive"], linewidth=1,
                          label=f"{_short(name, 30)} (ECE {ece:.3f})")
        ax.scatter(bins["mean_predicted"], bins["fraction_positive"], s=size, color=line.get_color())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Mean predicted probability")
    ax.set_ylabel("Observed fraction positive")
    ax.set_title("Reliability diagram", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")
    return _save(fig, path)


def _grid(n):
    cols = min(3, max(1, n))
    return int(math.ceil(n / cols)), cols


def km_quartile_plot(km: pd.DataFrame, table: pd.DataFrame, path, conditions=None, max_conditions: int = 6) -> Path:
    """Kaplan-Meier cumulative incidence (1 - S(t)) per predicted-risk quartile, one panel per condition."""
    rows = _select_conditions(table, conditions, max_conditions, by="n_events")
    nr, nc = _grid(len(rows))
    fig = _figure(4.2 * nc, 3.4 * nr)
    colors = ["#2c7bb6", "#abd9e9", "#fdae61", "#d7191c"]
    for i, (cid, name, c) in enumerate(zip(rows["id"], rows["name"], rows["harrell_c"])):
        ax = fig.add_subplot(nr, nc, i + 1)
        cur = km[km["id"] == cid]
        for q in sorted(cur["quartile"].unique()):
            part = cur[cur["quartile"] == q]
            ax.step(part["time"], part["cumulative_incidence"], where="post", color=colors[(int(q) - 1) % 4],
                    label=f"Q{int(q)}" + (" (highest risk)" if q == 4 else " (lowest)" if q == 1 else ""))
        subtitle = f"C = {c:.3f}" if np.isfinite(c) else "C undefined"
        ax.set_title(f"{_short(name, 35)}\n{subtitle}", fontsize=8)
        ax.set_xlabel("Years")
        ax.set_ylabel("Cumulative incidence")
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def risk_calibration_plot(calibration: pd.DataFrame, table: pd.DataFrame, path, horizon: float | None = None,
                          conditions=None, max_conditions: int = 6) -> Path:
    """Predicted cumulative incidence against the Kaplan-Meier estimate per predicted-risk decile."""
    if calibration.empty:
        fig = _figure(5, 2)
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no calibration (no cumulative incidence was given)", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    if horizon is None:
        horizon = float(calibration["horizon"].max())
    cal = calibration[np.isclose(calibration["horizon"], horizon)]
    rows = _select_conditions(table, conditions, max_conditions, by="n_events")
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    top = 0.0
    for cid, name in zip(rows["id"], rows["name"]):
        part = cal[cal["id"] == cid]
        if part.empty:
            continue
        ax.plot(part["mean_predicted"], part["observed"], marker="o", markersize=3, linewidth=1,
                label=_short(name, 30))
        top = max(top, float(np.nanmax(part[["mean_predicted", "observed"]].to_numpy())))
    top = min(1.0, max(top * 1.05, 0.05))
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, top * 1.02)
    ax.set_ylim(0, top * 1.02)
    ax.set_xlabel(f"Predicted risk at {horizon:g} years (decile mean)")
    ax.set_ylabel("Observed (1 - Kaplan-Meier)")
    ax.set_title(f"Calibration at {horizon:g} years", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")
    return _save(fig, path)
