"""Risk curves of one ECG: cumulative incidence over time per condition from a risk model, and their figure."""

from __future__ import annotations

import math

import numpy as np

from .plotting import _agg, save_figure


class NoRiskCurvesError(ValueError):
    """Risk curves cannot be drawn: the model has no risk head (diagnoses only), or its absolute risks are not
    available (Cox head without a fitted baseline hazard). The message says which."""


def risk_curves(model, feature_extractor, record, times=None, **extractor_kwargs) -> dict:
    """Cumulative incidence curves of one ECG on a fine time grid (years), from a model with a risk head.

    Returns `{"times": (T,), "incidence": (n_risk, T), "ids", "labels", "risk_scores"}`; raises
    `NoRiskCurvesError` for a model without a risk head or without absolute risks (unfitted Cox baseline)."""
    import torch

    if getattr(model, "risk_head", None) is None:
        raise NoRiskCurvesError(_NO_RISK_HEAD.format(name=type(model).__name__))
    cfg = model.config
    if times is None:
        end = max(cfg.risk_horizons)
        times = np.linspace(0.0, end, 101)
    batch = feature_extractor(record, return_tensors="pt", **extractor_kwargs)
    batch.pop("window_to_record", None)
    inputs = {k: batch[k][:1] for k in ("input_values", "lead_mask", "sample_mask") if batch.get(k) is not None}
    with torch.no_grad():
        out = model(**inputs, return_dict=True)
        inc = model.cumulative_incidence_at(out, [float(t) for t in times])
    if inc is None or torch.isnan(inc).all():
        raise NoRiskCurvesError(_NO_BASELINE)
    space = cfg.risk_label_space
    return {"times": np.asarray(times, dtype=np.float64), "incidence": inc[0].float().numpy(), "ids": space.ids,
            "labels": space.names, "risk_scores": out.risk_scores[0].float().numpy()}


_NO_RISK_HEAD = ("This model ({name}) has no risk head: it predicts current diagnoses only, so there are no risk "
                 "curves to draw. Risk heads come from fine-tuning on a cohort with follow-up "
                 "(AnyECGForRiskPrediction / AnyECGForHealthProfiling).")


_NO_BASELINE = ("This model's risk head has no fitted baseline hazard, so only relative risk scores exist, not "
                "absolute risks over time. Fit it with model.fit_baseline_hazard(...) on a cohort with follow-up.")


def plot_risk_curves(source, *, top_k: int = 5, title: str | None = None, dpi: int = 150, size=(8.0, 5.0), out=None):
    """Cumulative incidence over time for the conditions with the highest risk.

    Args:
        source: either the output of `risk_curves` (smooth curves), or a profile from the `ecg-profiling`
            pipeline (points at its horizons, joined by dashed straight lines from 0 at time 0).
        top_k (`int`): number of conditions drawn (highest risk at the last time).
        title (`str`, *optional*): figure title (default: the record id when known).
        dpi (`int`), size (`(w, h)` inches): the PNG is `round(w * dpi) x round(h * dpi)` pixels.
        out (path, *optional*): save there and close.

    Raises:
        NoRiskCurvesError: the profile has no risks (a diagnoses-only model such as ECGFounder) or no absolute
            risks (risk scores only). Nothing is drawn in that case.
    """
    if "incidence" in source:
        times = np.asarray(source["times"], dtype=np.float64)
        inc = np.asarray(source["incidence"], dtype=np.float64)
        labels = list(source["labels"])
        record = source.get("record")
        style = "-"
    else:
        risks = source.get("risks") or []
        if not risks:
            raise NoRiskCurvesError(_NO_RISK_HEAD.format(name="the model that made this profile"))
        hz = sorted({float(h) for r in risks for h in r["horizons"]})
        if not hz or all(v is None for r in risks for v in r["horizons"].values()):
            raise NoRiskCurvesError(_NO_BASELINE)
        times = np.array([0.0, *hz])
        inc = np.array([[0.0] + [np.nan if _get_h(r, h) is None else _get_h(r, h) for h in hz] for r in risks])
        labels = [r["label"] for r in risks]
        record = source.get("record")
        style = "--"  # straight lines between the reported horizons, not the model's curve
    last = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else -np.inf for row in inc])
    order = np.argsort(-last, kind="stable")[: max(1, top_k)]
    plt = _agg()
    w_px, h_px = round(size[0] * dpi), round(size[1] * dpi)
    fig = plt.figure(figsize=((w_px + 0.25) / dpi, (h_px + 0.25) / dpi), dpi=dpi)
    ax = fig.add_axes((0.09, 0.11, 0.62, 0.8))
    for i in order:
        ok = np.isfinite(inc[i])
        marker = "o" if ok.sum() <= 12 else None
        ax.plot(times[ok], 100 * inc[i][ok], ls=style, marker=marker, ms=4, lw=1.8, label=f"{labels[i]} ({100 * last[i]:.1f}%)")
    ax.set_xlabel("years after the ECG")
    ax.set_ylabel("cumulative incidence (%)")
    ax.set_xlim(0, times.max() * 1.02)
    ax.set_ylim(0, max(1.0, 100 * np.nanmax(inc[order]) * 1.15))
    ax.grid(True, alpha=0.3)
    ax.set_title(title or (f"Predicted risk, {record}" if record else "Predicted risk"), fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, title=f"top {len(order)} conditions", title_fontsize=8)
    fig.text(0.73, 0.04, "cause-specific cumulative incidence,\n1 - S(t | ECG); not competing-risks", fontsize=7, color="0.35")
    if out is not None:
        save_figure(fig, out)
        return None
    return fig


def _get_h(risk: dict, h: float):
    for k, v in risk["horizons"].items():
        if math.isclose(float(k), h, abs_tol=1e-9):
            return v
    return None
