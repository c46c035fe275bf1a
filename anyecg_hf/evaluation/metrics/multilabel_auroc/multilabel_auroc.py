"""`evaluate` metric: multi-label AUROC and AUPRC per label and macro/micro, with seeded bootstrap CIs.

Load it with `evaluate.load(anyecg_hf.evaluation.metric_path("multilabel_auroc"))`.
"""

import datasets
import evaluate
import numpy as np

from anyecg_hf.evaluation.classification import multilabel_auroc

_DESCRIPTION = """
Multi-label area under the ROC curve (AUROC) and average precision (AUPRC) for ECG diagnosis: one value per
label (scikit-learn's `roc_auc_score` / `average_precision_score`), their macro average over labels with both
classes present, and the micro average over all labelled entries. With `n_bootstrap > 0`, percentile bootstrap
confidence intervals from a vectorised, seeded bootstrap (patient-level when `patient_ids` is given). A label without
positives or without negatives is undefined (NaN) and left out of the macro average; it is never counted as 0.5.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): scores per sample and label, shape (N, K); probabilities or logits
        (both metrics are rank-based).
    references (`list` of `list` of `float`): 0/1 labels, shape (N, K); NaN or a negative value (such as -100) marks
        a missing label.
    n_bootstrap (`int`, defaults to 0): bootstrap resamples for CIs (0: no CI).
    seed (`int`, defaults to 0): seed of the resamples.
    ci_level (`float`, defaults to 0.95): confidence level.
    patient_ids (`list`, optional): patient of each sample, for patient-level resampling.
    per_label (`bool`, defaults to True): also return the per-label lists.
    label_names (`list` of `str`, optional): names used as keys of `per_label_auroc`.
Returns:
    macro_auroc, macro_auroc_ci_low, macro_auroc_ci_high, micro_auroc, macro_auprc, macro_auprc_ci_low,
    macro_auprc_ci_high, micro_auprc, n_defined; with `per_label`: auroc, auroc_ci_low, auroc_ci_high, auprc,
    auprc_ci_low, auprc_ci_high (lists of length K, NaN where undefined).
Examples:
    >>> import evaluate
    >>> from anyecg_hf.evaluation import metric_path
    >>> metric = evaluate.load(metric_path("multilabel_auroc"))
    >>> out = metric.compute(predictions=[[0.9, 0.2], [0.1, 0.8], [0.7, 0.3]], references=[[1, 0], [0, 1], [0, 0]])
    >>> round(out["macro_auroc"], 3)
    1.0
"""

_CITATION = """
@article{efron1979bootstrap,
  title={Bootstrap methods: another look at the jackknife},
  author={Efron, Bradley},
  journal={The Annals of Statistics},
  year={1979}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelAuroc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"],
        )

    def _compute(self, predictions, references, n_bootstrap=0, seed=0, ci_level=0.95, patient_ids=None,
                 per_label=True, label_names=None):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.float64)
        res = multilabel_auroc(labels, scores, n_bootstrap=int(n_bootstrap), seed=int(seed), ci_level=ci_level,
                               patient_ids=None if patient_ids is None else np.asarray(patient_ids))
        out = {key: float(res[key]) for key in ("macro_auroc", "macro_auroc_ci_low", "macro_auroc_ci_high",
                                               "micro_auroc", "macro_auprc", "macro_auprc_ci_low",
                                               "macro_auprc_ci_high", "micro_auprc")}
        out["n_defined"] = int(res["n_defined"])
        if per_label:
            for key in ("auroc", "auroc_ci_low", "auroc_ci_high", "auprc", "auprc_ci_low", "auprc_ci_high"):
                out[key] = [float(v) for v in res[key]]
            if label_names is not None:
                out["per_label_auroc"] = {str(n): float(v) for n, v in zip(label_names, res["auroc"])}
        return out
