"""The PTB-XL benchmark table (Strodthoff et al. 2020): our macro AUROC per task beside the published rows.

`PUBLISHED_MACRO_AUROC` holds the test-fold (fold 10) macro AUROC point estimates of the paper's models, as listed
in the leaderboard of https://github.com/helme/ecg_ptbxl_benchmarking (README, sections 1-6; paper: "Deep Learning
for ECG Analysis: Benchmarks and Insights from PTB-XL", IEEE JBHI 25(5), 2021, doi:10.1109/jbhi.2020.3022989).
The benchmark's macro AUROC is the unweighted mean of the per-label AUROCs over the task's labels.
"""

from __future__ import annotations

import pandas as pd

TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")

PUBLISHED_MACRO_AUROC = {
    "inception1d": (0.925, 0.931, 0.930, 0.921, 0.899, 0.953),
    "xresnet1d101": (0.925, 0.937, 0.929, 0.928, 0.896, 0.957),
    "resnet1d_wang": (0.919, 0.936, 0.928, 0.930, 0.880, 0.946),
    "fcn_wang": (0.918, 0.926, 0.927, 0.925, 0.869, 0.931),
    "lstm_bidir": (0.914, 0.932, 0.923, 0.921, 0.876, 0.949),
    "lstm": (0.907, 0.927, 0.928, 0.927, 0.851, 0.953),
    "Wavelet+NN": (0.849, 0.855, 0.859, 0.874, 0.757, 0.890),
}
REFERENCE_SOURCE = "Strodthoff et al. 2020 (helme/ecg_ptbxl_benchmarking leaderboard), test fold 10"


def benchmark_table(ours: dict, model_name: str = "this model") -> pd.DataFrame:
    """One row per model: `model`, `source`, one macro-AUROC column per task, and for our row how many of each
    task's labels were scored (`<task>_labels`, e.g. `"17/23"`; zero-shot evaluation scores only the labels the
    crosswalk reaches, so such a number is not the benchmark's).

    Args:
        ours (`dict`): task -> `{"macro_auroc": float, "n_scored": int, "n_labels": int}` (tasks left out are NaN).
    """
    row = {"model": model_name, "source": "this run"}
    for task in TASKS:
        r = ours.get(task) or {}
        row[task] = r.get("macro_auroc", float("nan"))
        row[f"{task}_labels"] = f"{r['n_scored']}/{r['n_labels']}" if "n_labels" in r else ""
    rows = [row] + [{"model": m, "source": REFERENCE_SOURCE, **dict(zip(TASKS, v))}
                    for m, v in PUBLISHED_MACRO_AUROC.items()]
    return pd.DataFrame(rows, columns=["model", "source", *TASKS, *(f"{t}_labels" for t in TASKS)])


def format_benchmark_table(table: pd.DataFrame) -> str:
    """A markdown table: model, the six tasks (3 decimals; ours with the scored-label counts)."""
    head = "| model | " + " | ".join(TASKS) + " |"
    lines = [head, "|" + "---|" * (len(TASKS) + 1)]
    for r in table.itertuples(index=False):
        d = r._asdict()
        cells = []
        for t in TASKS:
            v = d[t]
            text = "-" if pd.isna(v) else f"{v:.3f}"
            if isinstance(d.get(f"{t}_labels"), str) and d[f"{t}_labels"]:
                text += f" ({d[f'{t}_labels']})"
            cells.append(text)
        lines.append(f"| {d['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
