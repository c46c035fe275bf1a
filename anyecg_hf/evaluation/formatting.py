"""Formatting of evaluation results: numbers and confidence intervals, threshold rules, horizons, Markdown tables,
and JSON that writes NaN as null."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt(v, digits: int = 3) -> str:
    """A number with `digits` decimals, `"-"` when undefined."""
    return f"{float(v):.{digits}f}" if _finite(v) else "-"


def format_ci(value, low, high, digits: int = 3) -> str:
    """`0.812 [0.790, 0.833]`; `undefined` when the value is; the value alone when the interval is."""
    if not _finite(value):
        return "undefined"
    if _finite(low) and _finite(high):
        return f"{float(value):.{digits}f} [{float(low):.{digits}f}, {float(high):.{digits}f}]"
    return f"{float(value):.{digits}f}"


def threshold_rule(settings: dict) -> str:
    """`"youden, chosen on the validation split"`: the threshold rule and where it was applied, from a report's
    settings (`threshold_split` is absent from reports written before it existed)."""
    rule, split = settings.get("threshold_method", "youden"), settings.get("threshold_split")
    if rule in ("fixed", "label_space") and split in (None, "given", "label space"):
        return "given per condition" if rule == "fixed" else "the label space's thresholds"
    where = split or "the evaluated data (optimistic)"
    if where.startswith("evaluated data"):
        where = "the " + where
    elif where in ("validation", "train", "test"):
        where = f"the {where} split"
    return f"{'youden' if rule == 'fixed' else rule}, chosen on {where}"


def horizon_label(h: float) -> str:
    """Column suffix of a horizon in years: 1 -> `"1y"`, 2.5 -> `"2.5y"`."""
    return f"{float(h):g}y"


def _cell(v) -> str:
    text = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, align: dict | None = None) -> str:
    """A GitHub-flavoured markdown table of a DataFrame whose cells are already formatted strings."""
    align = align or {}
    cols = list(frame.columns)
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |"]
    lines.append("|" + "|".join(":---" if align.get(c, "l") == "l" else "---:" for c in cols) + "|")
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clean_json(obj):
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _prepare_path(path) -> Path:
    path = Path(os.fspath(path))
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return path
