"""Evaluation of AnyECG / ECGFounder predictions: diagnosis metrics with bootstrap confidence intervals, survival
metrics, calibration, subgroup breakdowns, report folders and model cards.

```python
from anyecg_hf.evaluation import evaluate_diagnosis, evaluate_risk
rep = evaluate_diagnosis(y_true, y_prob, label_space, label_mask=m, n_bootstrap=1000, seed=0)
rep.table, rep.summary, rep.to_markdown(), rep.to_csv("auroc.csv"), rep.plot("forest.png")
```
"""

from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY = {
    "evaluate_diagnosis": ".classification",
    "select_threshold": ".thresholds",
    "thresholds_on": ".thresholds",
    "age_bands": ".subgroups",
    "evaluate_risk": ".survival",
    "DiagnosisReport": ".report",
    "RiskReport": ".report",
    "BootstrapSampler": ".bootstrap",
    "bootstrap_auroc_auprc": ".bootstrap",
    "weighted_auroc_auprc": ".bootstrap",
    "percentile_interval": ".bootstrap",
    "expected_calibration_error": ".calibration",
    "reliability_bins": ".calibration",
    "write_model_card": ".model_card",
    "model_card_section": ".model_card",
    "write_report": ".runner",
    "run_evaluation": ".runner",
    "run_evaluation_from_npz": ".runner",
    "multilabel_auroc": ".multilabel",
    "weighted_concordance": ".concordance",
    "trainer_compute_metrics": ".metrics",
    "metric_path": ".metrics",
    "load_metric": ".metrics",
    "METRICS": ".metrics",
    "cinc2021_challenge_score": ".challenge",
    "cinc2021_class_matrix": ".challenge",
    "cinc2021_weights": ".challenge",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
