"""`evaluate` metric: Harrell's and Uno's concordance index for one risk score, with seeded bootstrap CIs.

Load it with `evaluate.load(anyecg_hf.evaluation.metric_path("concordance_index"))`.
"""

import datasets
import evaluate
import numpy as np

from anyecg_hf.evaluation.survival import evaluate_risk

_DESCRIPTION = """
Concordance index of a risk score against right-censored follow-up. Harrell's C is the fraction of comparable pairs
(the earlier time is an event) in which the earlier event has the higher risk, risk ties counting one half. Uno's C
(when `tau` is given) weights pairs by the inverse probability of censoring squared and only uses events before
`tau`. Both are computed by torchsurv; CIs are percentile intervals of a vectorised, seeded bootstrap. Higher
predictions mean HIGHER risk (the opposite of lifelines' `concordance_index`, which expects survival times).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): risk scores (higher = higher risk).
    references (`list` of `float`): follow-up times in years (> 0): time of the event, or of censoring.
    events (`list` of `int`): 1 if the event occurred at that time, 0 if censored.
    tau (`float`, optional): truncation time (years) for Uno's C; Uno's C is returned only when given.
    n_bootstrap (`int`, defaults to 0): bootstrap resamples for CIs (0: no CI).
    seed (`int`, defaults to 0): seed of the resamples.
    ci_level (`float`, defaults to 0.95): confidence level.
    train_times, train_events (`list`, optional): training cohort whose censoring distribution gives Uno's weights.
Returns:
    harrell_c, harrell_c_ci_low, harrell_c_ci_high, n, n_events; with `tau`: uno_c, uno_c_ci_low, uno_c_ci_high.
Examples:
    >>> import evaluate
    >>> from anyecg_hf.evaluation import metric_path
    >>> metric = evaluate.load(metric_path("concordance_index"))
    >>> metric.compute(predictions=[3.0, 2.0, 1.0], references=[1.0, 2.0, 3.0], events=[1, 1, 0])["harrell_c"]
    1.0
"""

_CITATION = """
@article{harrell1982evaluating,
  title={Evaluating the yield of medical tests},
  author={Harrell, Frank E and Califf, Robert M and Pryor, David B and Lee, Kerry L and Rosati, Robert A},
  journal={JAMA},
  year={1982}
}
@article{uno2011c,
  title={On the C-statistics for evaluating overall adequacy of risk prediction procedures with censored survival data},
  author={Uno, Hajime and Cai, Tianxi and Pencina, Michael J and D'Agostino, Ralph B and Wei, Lee-Jen},
  journal={Statistics in Medicine},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConcordanceIndex(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("float64"),
                    "events": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://github.com/Novartis/torchsurv"],
        )

    def _compute(self, predictions, references, events, tau=None, n_bootstrap=0, seed=0, ci_level=0.95,
                 train_times=None, train_events=None):
        risk = np.asarray(predictions, dtype=np.float64)
        times = np.asarray(references, dtype=np.float64)
        ev = np.asarray(events, dtype=np.float64)
        horizon = float(tau) if tau is not None else float(np.max(times))
        rep = evaluate_risk(times, ev, risk, horizons=[horizon], tau=horizon, n_bootstrap=int(n_bootstrap),
                            seed=int(seed), ci_level=ci_level, train_times=train_times, train_events=train_events)
        row = rep.table.iloc[0]
        out = {key: float(row[key]) for key in ("harrell_c", "harrell_c_ci_low", "harrell_c_ci_high")}
        out["n"], out["n_events"] = int(row["n"]), int(row["n_events"])
        if tau is not None:
            out.update({key: float(row[key]) for key in ("uno_c", "uno_c_ci_low", "uno_c_ci_high")})
        return out
