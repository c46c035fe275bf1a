"""`evaluate`-compatible metric modules shipped with anyecg_hf, and a `Trainer` `compute_metrics` helper.

```python
import evaluate
from anyecg_hf.evaluation import metric_path
auroc = evaluate.load(metric_path("multilabel_auroc"))
cindex = evaluate.load(metric_path("concordance_index"))
```
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["METRICS", "metric_path", "load_metric", "trainer_compute_metrics"]

METRICS = ("multilabel_auroc", "concordance_index")


def metric_path(name: str) -> str:
    """Folder of a metric module, to pass to `evaluate.load` (which loads `<folder>/<name>.py`)."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; available: {', '.join(METRICS)}.")
    return str(Path(__file__).resolve().parent / name)


def load_metric(name: str, **kwargs):
    """`evaluate.load(metric_path(name), **kwargs)`."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def trainer_compute_metrics(n_bootstrap: int = 0, seed: int = 0, label_names=None, per_label: bool = False):
    """A `compute_metrics` callable for `transformers.Trainer` on a multi-label diagnosis head.

    It reads the logits (the first element when the model returns a tuple) and the labels of the `EvalPrediction`;
    labels equal to -100 or NaN are treated as missing. Returns flat floats (`macro_auroc`, `micro_auroc`,
    `macro_auprc`, `micro_auprc`, `n_defined`, with CIs when `n_bootstrap > 0`) so that every logger accepts them;
    `per_label=True` adds `auroc/<label>` entries.
    """
    from ..classification import multilabel_auroc

    def compute_metrics(eval_pred):
        logits = eval_pred.predictions
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        labels = eval_pred.label_ids
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        res = multilabel_auroc(np.asarray(labels, dtype=np.float64), np.asarray(logits, dtype=np.float64),
                               n_bootstrap=n_bootstrap, seed=seed)
        out = {key: float(res[key]) for key in ("macro_auroc", "micro_auroc", "macro_auprc", "micro_auprc")}
        out["n_defined"] = float(res["n_defined"])
        if n_bootstrap > 0:
            for key in ("macro_auroc", "macro_auprc"):
                out[f"{key}_ci_low"], out[f"{key}_ci_high"] = float(res[f"{key}_ci_low"]), float(res[f"{key}_ci_high"])
        if per_label:
            names = label_names or [f"LABEL_{i}" for i in range(len(res["auroc"]))]
            out.update({f"auroc/{n}": float(v) for n, v in zip(names, res["auroc"])})
        return out

    return compute_metrics
