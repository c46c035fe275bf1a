"""`pipeline("ecg-classification")`: diagnoses only, in the format of `pipeline("audio-classification")`."""

from __future__ import annotations

import torch

from .base import ECGPipelineBase


class ECGClassificationPipeline(ECGPipelineBase):
    """Multi-label ECG classification: `[{"label": ..., "score": ...}, ...]`, highest score first, like
    `pipeline("audio-classification")`. Scores are independent sigmoid probabilities (a record can have several
    conditions), aggregated over the windows of a long record.

    ```python
    pipe = pipeline("ecg-classification", model="path/or/hub-id")
    pipe("HR06000.hea")                 # top 5
    pipe("HR06000.hea", top_k=None)     # all conditions
    pipe(array, sampling_rate=500)      # (leads, samples) array, leads in config.lead_names order
    ```

    Call arguments (besides those of `ECGPipelineBase`):
        top_k (`int` or `None`, defaults to 5): number of labels returned; `None` for all.
        threshold (`float`, *optional*): return only labels whose score is at least this.
        positive_only (`bool`, defaults to `False`): return only labels at or above their own decision threshold
            from the label space.
    An input that failed with `on_error="return"` gives `[{"label": None, "score": None, "error": message}]`.
    """

    def _check_model(self) -> None:
        if not self.has_diagnosis_head:
            raise ValueError(
                f"ecg-classification needs a model with a diagnosis head, but {self._model_description()} has none "
                f"(config.architectures = {self.model.config.architectures}). Use 'ecg-profiling' for risk models and "
                "'ecg-embedding' for the bare backbone."
            )

    def _sanitize_task_parameters(self, top_k="unset", threshold=None, positive_only=None, **kwargs):
        if kwargs:
            raise TypeError(f"ecg-classification got unexpected arguments: {', '.join(sorted(kwargs))}.")
        post = {}
        if top_k != "unset":
            post["top_k"] = None if top_k is None else int(top_k)
        if threshold is not None:
            post["threshold"] = float(threshold)
        if positive_only is not None:
            post["positive_only"] = bool(positive_only)
        return {}, post

    def _run_model(self, inputs):
        return {"probabilities": self.model.named_outputs(self._call_model(inputs))["probabilities"]}

    def _empty_outputs(self, batch):
        return {"probabilities": torch.full((batch, self.model.config.num_labels), float("nan"))}

    def postprocess(self, model_outputs, aggregation="mean", top_k=5, threshold=None, positive_only=False):
        meta = self._meta(model_outputs)
        if meta["error"]:
            return [{"label": None, "score": None, "error": meta["error"], "record": meta["record"]}]
        probs = self._aggregate(self._gather(model_outputs, "probabilities"), aggregation)
        space = self.model.config.label_space
        order = sorted(range(len(space)), key=lambda i: (-probs[i], i))
        results = []
        for i in order:
            score = float(probs[i])
            if threshold is not None and not score >= threshold:
                continue
            if positive_only and not score >= space[i].decision_threshold:
                continue
            results.append({"label": space[i].name, "score": score})
        return results if top_k is None else results[:top_k]
