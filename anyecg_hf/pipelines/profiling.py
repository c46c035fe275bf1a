"""`pipeline("ecg-profiling")`: current diagnoses and future risks of one ECG, in one call."""

from __future__ import annotations

import math

import torch

from .base import ECGPipelineBase
from ..prediction.profiles import profile_records


class ECGProfilingPipeline(ECGPipelineBase):
    """Health profile of ECGs: diagnoses (probability, decision, code per condition of `config.label_space`) and,
    for models with a risk head, future risks (`risk_score` and absolute risk at each horizon, in years).

    ```python
    import anyecg_hf  # registers the ecg-* tasks
    from transformers import pipeline

    pipe = pipeline("ecg-profiling", model="path/or/hub-id")   # no model: the converted ECGFounder default
    pipe("HR06000.hea", top_k=5)
    # {"record": "HR06000", "diagnoses": [{"id", "label", "code_system", "code", "score", "threshold", "positive"}, ...],
    #  "risks": [{"id", "label", "code", "risk_score", "horizons": {1: 0.02, 5: 0.11, 10: 0.23}}, ...],
    #  "warnings": [...]}
    pipe(list_of_paths, batch_size=64)                         # a list of profiles
    ```

    The head comes from `config.architectures` (`AnyECGForDiagnosis`: diagnoses only and `risks == []`;
    `AnyECGForRiskPrediction`: risks only; `AnyECGForHealthProfiling`: both, plus `traits` when it has a
    regression head).

    Call arguments (besides those of `ECGPipelineBase`):
        top_k (`int`, *optional*): keep the `top_k` highest diagnoses and risks (default: all).
        threshold (`float`, *optional*): decision threshold for `positive`, replacing each condition's threshold of
            the label space.
        only_positive (`bool`, *optional*): keep only the positive diagnoses.
        horizons (list of float, *optional*): horizons (years) for absolute risks. Default `config.risk_horizons`;
            other times are computed from the model's baseline hazard (Cox: interpolated on its grid) or time bins.
    """

    def _check_model(self) -> None:
        if not (self.has_diagnosis_head or self.has_risk_head):
            raise ValueError(
                f"ecg-profiling needs a model with a diagnosis or risk head, but {self._model_description()} has neither "
                f"(config.architectures = {self.model.config.architectures}). Use pipeline('ecg-embedding') for ECG "
                "embeddings, or load a model saved from AnyECGForDiagnosis / AnyECGForHealthProfiling."
            )

    def _sanitize_task_parameters(self, top_k=None, threshold=None, horizons=None, only_positive=None, **kwargs):
        if kwargs:
            raise TypeError(f"ecg-profiling got unexpected arguments: {', '.join(sorted(kwargs))}.")
        forward, post = {}, {}
        if top_k is not None:
            post["top_k"] = int(top_k)
        if threshold is not None:
            post["threshold"] = float(threshold)
        if only_positive is not None:
            post["only_positive"] = bool(only_positive)
        if horizons is not None:
            hz = [float(h) for h in ([horizons] if isinstance(horizons, (int, float)) else horizons)]
            if not hz or any(not (h > 0 and math.isfinite(h)) for h in hz):
                raise ValueError(f"horizons must be positive numbers of years, got {horizons}.")
            forward["horizons"] = hz
            post["horizons"] = hz
        return forward, post

    def _custom_horizons(self, horizons):
        """`None` when `horizons` are all among `config.risk_horizons` (then columns are selected, not recomputed)."""
        if horizons is None:
            return None
        available = self.model.config.risk_horizons
        if all(any(math.isclose(h, a, abs_tol=1e-9) for a in available) for h in horizons):
            return None
        return list(horizons)

    def _run_model(self, inputs, horizons=None):
        named = self.model.named_outputs(self._call_model(inputs), horizons=self._custom_horizons(horizons))
        return {k: named.get(k) for k in ("probabilities", "risk_scores", "cumulative_incidence", "regression_outputs")
                if k in named}

    def _empty_outputs(self, batch, horizons=None):
        cfg = self.model.config
        nan = float("nan")
        out = {"probabilities": None, "risk_scores": None, "cumulative_incidence": None, "regression_outputs": None}
        if self.has_diagnosis_head:
            out["probabilities"] = torch.full((batch, cfg.num_labels), nan)
        if self.has_risk_head:
            n_risk = len(cfg.risk_label_space)
            n_h = len(self._custom_horizons(horizons) or cfg.risk_horizons)
            out["risk_scores"] = torch.full((batch, n_risk), nan)
            out["cumulative_incidence"] = torch.full((batch, n_risk, n_h), nan)
        if getattr(self.model, "regression_head", None) is not None:
            out["regression_outputs"] = torch.full((batch, len(cfg.regression_names)), nan)
        return out

    def postprocess(self, model_outputs, aggregation="mean", top_k=None, threshold=None, horizons=None, only_positive=False):
        meta = self._meta(model_outputs)
        if meta["error"]:
            return {"record": meta["record"], "diagnoses": [], "risks": [], "warnings": meta["warnings"],
                    "error": meta["error"], "source": meta["source"]}
        agg = {k: self._aggregate(self._gather(model_outputs, k), aggregation)
               for k in ("probabilities", "risk_scores", "cumulative_incidence", "regression_outputs")}
        custom = self._custom_horizons(horizons)
        if custom is not None:
            agg["horizons"] = custom
        warnings = meta["warnings"]
        profile = profile_records(agg, self.model.config, top_k=top_k, threshold=threshold, horizons=horizons,
                                  only_positive=only_positive, record=meta["record"], warnings=warnings)
        if meta["source"] is not None:
            profile["source"] = meta["source"]
        return profile
